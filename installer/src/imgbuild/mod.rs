//! The IMGBUILD project on the workstation: sourcing the file ([`eval`]), mapping its lines
//! ([`prescan`]), validating it into a [`Plan`] ([`validate`]) and checking the input trees,
//! templates and secrets beside it ([`inputs`]). [`check`] runs all of it and returns every
//! problem at once; `anemos check` prints that, `anemos pack` packs the plan.

pub mod diag;
pub mod eval;
mod inputs;
pub mod prescan;
pub mod validate;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::plan::Plan;
use diag::{Diagnostics, Location};

/// How to check a project.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// `--format`: replaces the IMGBUILD's `format` (makeimg 0.14's override).
    pub format_override: Option<String>,
    /// Input directories relative to the project, in order (later ones win). Default `files`.
    pub inputs: Vec<String>,
    /// The root of the building host's configuration (mirror discovery): `/`.
    pub host_root: PathBuf,
    /// The age identity file (see [`crate::secrets::identity_path`]).
    pub identity: Option<PathBuf>,
    /// `--mirror URL` and `--security-mirror URL`: the package mirror from the command line
    /// (e.g. a local caching proxy), in place of the IMGBUILD's or the host's.
    pub mirror_override: Option<(String, Option<String>)>,
    /// `--image FILE|URL` and `--image-sha256 HEX`, in place of the IMGBUILD's `image=`.
    pub image_override: Option<(String, Option<String>)>,
    /// A disk image to boot whatever `format` says (`anemos test`; `--format` still wins).
    pub for_boot: Option<validate::ForBoot>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { format_override: None, inputs: vec!["files".into()], host_root: PathBuf::from("/"), identity: None, mirror_override: None, image_override: None, for_boot: None }
    }
}

/// The result of a check: the plan when there was no error, and every diagnostic.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub ok: bool,
    pub plan: Option<Plan>,
    pub diagnostics: Diagnostics,
}

/// Checks the project in `project`: the IMGBUILD, its input trees, templates and secrets.
pub fn check(project: &Path, opts: &CheckOptions) -> Checked {
    let mut diags = Diagnostics::default();
    let plan = check_into(project, opts, &mut diags);
    let plan = plan.filter(|_| !diags.has_errors());
    Checked { ok: plan.is_some(), plan, diagnostics: diags }
}

fn check_into(project: &Path, opts: &CheckOptions, diags: &mut Diagnostics) -> Option<Plan> {
    let file = project.join("IMGBUILD");
    let text = match std::fs::read(&file) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => {
            let msg = format!("cannot read {}: {e} (a project is a directory with an IMGBUILD)", file.display());
            diags.error(Location::File { path: "IMGBUILD".into(), line: None, column: None }, msg);
            return None;
        }
    };
    let pre = prescan::scan(&text);
    let evaluated = eval::evaluate(project, &pre, diags)?;
    let mut cx = validate::Ctx { vars: &evaluated.variables, pre: &pre, diags };
    let mirror_override = opts.mirror_override.as_ref().map(|(m, s)| (m.as_str(), s.as_deref()));
    let image_override = opts.image_override.as_ref().map(|(l, s)| (l.as_str(), s.as_deref()));
    let vin = validate::Inputs { format_override: opts.format_override.as_deref(), host_root: &opts.host_root, mirror_override, image_override, for_boot: opts.for_boot };
    let plan = validate::validate(&mut cx, &vin, &evaluated.functions);
    let imgbuild_secrets = plan.as_ref().map(|p| validate::encrypt::secret_uses(&cx, &p.layout)).unwrap_or_default();
    let found = inputs::check_inputs(project, opts, &mut cx, imgbuild_secrets);
    validate::unknown_variables(&mut cx, &|name| found.template_vars.contains(name));
    let mut plan = plan?;
    // A local image named in the IMGBUILD is relative to the project (one given with
    // --image, to the working directory).
    if let Some(img) = plan.image.as_ref().filter(|i| !i.is_url()) {
        let path = if opts.image_override.is_some() { PathBuf::from(&img.location) } else { project.join(&img.location) };
        if !path.is_file() {
            let what = if opts.image_override.is_some() { "--image" } else { "image" };
            cx.error("image", format!("{what}={}: no such file ({}); build it with `anemos build`", img.location, path.display()));
        }
    }
    plan.inputs = found.trees;
    plan.secrets = found.secrets;
    plan.project_files = inputs::project_files(project, &plan.target, cx.diags);
    Some(plan).filter(|_| !cx.diags.has_errors())
}
