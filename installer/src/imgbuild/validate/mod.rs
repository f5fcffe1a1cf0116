//! Validation: the evaluated IMGBUILD variables become a typed [`Plan`]. Every check adds
//! to one [`Diagnostics`] and goes on, so that all problems are reported in one run; the plan
//! exists only when there was no error. The variables and their meanings are in
//! `docs/IMGBUILD.5.md`; [`VARIABLES`] is the list the "did you mean" suggestions use.

mod disks;
pub mod encrypt;
mod format;
mod image;
mod layout;
mod mirror;
mod network;
mod raid;
mod simple;
mod storage;
mod subvolumes;
mod volumes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::diag::{did_you_mean, Diagnostics, Location};
use super::prescan::Prescan;
use crate::plan::*;

pub use crate::plan::parse::parse_size;
pub use format::{parse_format, ForBoot};
pub use mirror::host_mirror;

/// Every IMGBUILD variable anemos knows: makeimg's and ours.
pub const VARIABLES: &[&str] = &[
    "imgname",
    "target",
    "debian_suite",
    "packages",
    "format",
    "hostconf",
    "disk",
    "table",
    "partitions",
    "encrypt",
    "volume_group",
    "volumes",
    "raid",
    "subvolumes",
    "preserve",
    "mounts",
    "bootloader",
    "kernel_cmdline",
    "mirror",
    "security_mirror",
    "proxy",
    "hostname",
    "network",
    "on_success",
    "on_failure",
    "status_port",
    "secrets_command",
    "layout_seed",
    "test_marker",
    "image",
    "image_sha256",
    "image_secrets",
];

/// The variables and where they came from, plus the diagnostics being collected.
pub struct Ctx<'a> {
    pub vars: &'a BTreeMap<String, String>,
    pub pre: &'a Prescan,
    pub diags: &'a mut Diagnostics,
}

impl Ctx<'_> {
    /// The value of `name`, if set and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    pub fn loc(&self, name: &str) -> Location {
        Location::Imgbuild { line: self.pre.line_of(name) }
    }

    /// The location of a line `offset` lines into `name`'s value.
    pub fn loc_within(&self, name: &str, offset: usize) -> Location {
        let value = self.vars.get(name).map(String::as_str).unwrap_or("");
        Location::Imgbuild { line: self.pre.line_within(name, value, offset) }
    }

    pub fn error(&mut self, name: &str, msg: impl Into<String>) {
        let loc = self.loc(name);
        self.diags.error(loc, msg);
    }

    pub fn warn(&mut self, name: &str, msg: impl Into<String>) {
        let loc = self.loc(name);
        self.diags.warn(loc, msg);
    }

    pub fn error_within(&mut self, name: &str, offset: usize, msg: impl Into<String>) {
        let loc = self.loc_within(name, offset);
        self.diags.error(loc, msg);
    }

    /// Each item of the list variable `name` parsed by `parse`, with its line offset, and
    /// whether every one parsed; a line that does not is reported on its line
    /// (`name: "LINE": why`), the others are kept so later rules still see them.
    pub fn parse_lines<T>(&mut self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> (Vec<(usize, T)>, bool) {
        let mut out = Vec::new();
        let mut ok = true;
        for (offset, line) in self.lines(name) {
            match parse(&line) {
                Ok(v) => out.push((offset, v)),
                Err(msg) => {
                    self.error_within(name, offset, format!("{name}: {line:?}: {msg}"));
                    ok = false;
                }
            }
        }
        (out, ok)
    }

    /// The items of a list variable: its non-blank lines that are not `#` comments, trimmed,
    /// each with its line offset inside the value.
    pub fn lines(&self, name: &str) -> Vec<(usize, String)> {
        let value = self.vars.get(name).map(String::as_str).unwrap_or("");
        value.split('\n').enumerate().map(|(i, l)| (i, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#')).map(|(i, l)| (i, l.to_string())).collect()
    }
}

/// What validation needs besides the variables.
pub struct Inputs<'a> {
    /// `--format`, overriding the IMGBUILD's `format`.
    pub format_override: Option<&'a str>,
    /// Where the building host's package-manager configuration lives (`/`).
    pub host_root: &'a Path,
    /// `--mirror` (and `--security-mirror`), overriding the IMGBUILD's and the host's.
    pub mirror_override: Option<(&'a str, Option<&'a str>)>,
    /// `--image` (and `--image-sha256`), overriding the IMGBUILD's `image=`.
    pub image_override: Option<(&'a str, Option<&'a str>)>,
    /// A disk image to boot (`anemos test`), whatever the format says.
    pub for_boot: Option<ForBoot>,
}

/// Validates the variables into a plan without its input trees, secrets and project files
/// (the caller adds those). `None` when there was any error.
pub fn validate(cx: &mut Ctx<'_>, inputs: &Inputs<'_>, functions: &BTreeSet<String>) -> Option<Plan> {
    let imgname = simple::imgname(cx);
    let hostname = simple::hostname(cx, imgname.as_deref());
    let target = simple::target(cx);
    let packages = simple::packages(cx);
    let fmt = format::format(cx, inputs.format_override).map(|f| match inputs.for_boot {
        Some(b) if inputs.format_override.is_none() => format::for_boot(f, b),
        _ => f,
    });
    let explicit = fmt.as_ref().is_some_and(|f| f.1 != FormatOrigin::Default);
    let layout = layout::layout(cx, fmt.as_ref().map(|f| &f.0), fmt.as_ref().and_then(|f| f.2), explicit);
    let disks = disks::disks(cx);
    let preserve = disks::preserve(cx, &disks);
    let mounts = disks::mounts(cx);
    if let Some(l) = &layout {
        disks::unique_mountpoints(cx, l, &preserve, &mounts);
    }
    let bootloader = match (simple::bootloader_value(cx), &layout) {
        (Ok(value), Some(l)) => simple::bootloader(cx, l, value),
        _ => None,
    };
    let kernel_cmdline = simple::kernel_cmdline(cx);
    let mirror = target.as_ref().and_then(|t| mirror::mirror(cx, t, inputs.host_root, inputs.mirror_override));
    let image = image::image(cx, inputs.image_override);
    if let Some(l) = &layout {
        storage::fits(cx, l, target.as_ref(), fmt.as_ref().map(|f| &f.0), bootloader);
        storage::disks_fit(cx, l, disks.len());
    }
    let proxy = simple::proxy(cx);
    let network = network::network(cx);
    let (on_success, on_failure, status_port) = simple::lifecycle(cx);
    let hostconf = simple::hostconf(cx);
    simple::secrets_command(cx);
    let functions = simple::functions(cx, functions);
    let (format, format_origin, _) = fmt?;
    Some(Plan {
        version: PLAN_VERSION,
        imgname: imgname?,
        hostname: hostname?,
        target: target?,
        packages,
        format,
        format_origin,
        disk: disks.first().cloned(),
        other_disks: disks.iter().skip(1).cloned().collect(),
        layout: layout?,
        preserve: preserve?,
        mounts: mounts?,
        bootloader: bootloader?,
        kernel_cmdline,
        mirror: mirror?,
        image: image?,
        proxy: proxy?,
        network: network?,
        on_success: on_success?,
        on_failure: on_failure?,
        status_port: status_port?,
        hostconf: hostconf?,
        functions,
        inputs: Vec::new(),
        secrets: Vec::new(),
        project_files: Vec::new(),
        variables: cx.vars.clone(),
    })
    .filter(|_| !cx.diags.has_errors())
}

/// Warns about variables anemos does not know, unless a template uses them.
pub fn unknown_variables(cx: &mut Ctx<'_>, used_by_templates: &dyn Fn(&str) -> bool) {
    let unknown: Vec<String> = cx.vars.keys().filter(|k| !VARIABLES.contains(&k.as_str()) && !used_by_templates(k)).cloned().collect();
    for name in unknown {
        let msg = match did_you_mean(&name, VARIABLES) {
            Some(m) => format!("unknown variable {name:?}; did you mean {m:?}?"),
            None => format!("variable {name:?} is not an IMGBUILD variable and no template uses it"),
        };
        cx.warn(&name, msg);
    }
}
