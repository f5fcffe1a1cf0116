//! A project on its way to a payload — the one path every command that makes a payload
//! takes (`pack`, `pxe`, `image`, `test`, `deploy`): the IMGBUILD checked with the
//! command line's overrides (`--format`, `--mirror`), the secrets its templates use
//! revealed once, the build and packing times taken once, then as many payloads as there
//! are hosts, each with a token of its own.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use installer::imgbuild::{check, CheckOptions};
use installer::plan::Plan;
use installer::{payload, secrets};

use crate::cli::ProjectArgs;
use crate::serve::ImageServer;

/// The check options the project's command-line arguments give.
pub fn options(args: &ProjectArgs) -> CheckOptions {
    let p = &args.options;
    let mut o = CheckOptions { format_override: p.format.clone(), identity: p.identity.clone(), ..CheckOptions::default() };
    if !p.inputs.is_empty() {
        o.inputs = p.inputs.clone();
    }
    o.mirror_override = p.mirror.as_ref().map(|m| (m.clone(), p.security_mirror.clone()));
    o.image_override = p.image.as_ref().map(|i| (i.clone(), p.image_sha256.clone()));
    o.for_boot = p.for_boot;
    o
}

/// A project whose check passed: its plan, not yet its secrets.
pub struct Checked {
    pub dir: PathBuf,
    pub plan: Plan,
    identity: Option<PathBuf>,
    /// Whether `--image` (relative to the working directory) rather than `image=`
    /// (relative to the project) named the image.
    image_from_command_line: bool,
}

/// Checks the project, printing every diagnostic; fails on any error.
pub fn check_project(args: &ProjectArgs) -> Result<Checked> {
    let checked = check(&args.dir, &options(args));
    crate::cmd::check::report(&checked, &args.dir)?;
    let plan = checked.plan.context("the check gave no plan")?;
    Ok(Checked { dir: args.dir.clone(), plan, identity: args.options.identity.clone(), image_from_command_line: args.options.image.is_some() })
}

impl Checked {
    /// Reveals the secrets the templates use (on this workstation only: age identities,
    /// plain files, `secrets_command`) and takes the payload's times.
    pub fn reveal(self) -> Result<Project> {
        let command = self.plan.variables.get("secrets_command").map(String::as_str).filter(|c| !c.trim().is_empty());
        let secrets = secrets::reveal(&self.dir, &self.plan.secrets, command, self.identity.as_deref())?;
        let build_time = payload::build_time(&self.dir, &self.plan)?;
        let packed_at = payload::packed_at()?;
        Ok(Project { dir: self.dir, plan: self.plan, secrets, build_time, packed_at, image_from_command_line: self.image_from_command_line })
    }
}

/// A checked project with its secrets revealed.
pub struct Project {
    pub dir: PathBuf,
    pub plan: Plan,
    secrets: BTreeMap<String, Vec<u8>>,
    /// The newest input's modification time (seconds since the epoch).
    pub build_time: u64,
    /// This workstation's clock when the project was revealed (or SOURCE_DATE_EPOCH).
    pub packed_at: u64,
    image_from_command_line: bool,
}

impl Project {
    /// Checks and reveals in one step.
    pub fn load(args: &ProjectArgs) -> Result<Project> {
        check_project(args)?.reveal()
    }

    /// The payload of the project's plan, with `token` for the event endpoint if given.
    pub fn payload(&self, token: Option<String>) -> Result<Vec<u8>> {
        self.payload_of(&self.plan, token)
    }

    /// The payload of `plan` (the project's plan, adapted: e.g. a build VM's mirror).
    pub fn payload_of(&self, plan: &Plan, token: Option<String>) -> Result<Vec<u8>> {
        payload::pack(&self.dir, plan, &self.secrets, &self.extras(token))
    }

    /// The payload archive, uncompressed (directory builds unpack it on this host).
    pub fn archive(&self, token: Option<String>) -> Result<installer::initramfs::Archive> {
        payload::archive(&self.dir, &self.plan, &self.secrets, &self.extras(token))
    }

    /// The image file the plan names, if it names a local one (not a URL).
    pub fn local_image(&self) -> Option<PathBuf> {
        let img = self.plan.image.as_ref().filter(|i| !i.is_url())?;
        let path = PathBuf::from(&img.location);
        Some(if self.image_from_command_line || path.is_absolute() { path } else { self.dir.join(path) })
    }

    /// Serves a local image on `bind` and pins its SHA-256 in the plan (checking a pin the
    /// project gave); the caller puts the URL each installer reaches it by into that
    /// installer's plan ([`Project::with_image_at`]). `None` for a URL or no image.
    pub fn serve_image(&mut self, bind: std::net::SocketAddr) -> Result<Option<ImageServer>> {
        let Some(file) = self.local_image() else { return Ok(None) };
        let pin = self.plan.image.as_ref().and_then(|i| i.sha256.clone());
        let server = ImageServer::start(&file, pin.as_deref(), bind)?;
        if let Some(img) = self.plan.image.as_mut() {
            img.sha256 = Some(server.sha256.clone());
        }
        Ok(Some(server))
    }

    /// The plan with its image at `url`.
    pub fn with_image_at(&self, url: String) -> Plan {
        let mut plan = self.plan.clone();
        if let Some(img) = plan.image.as_mut() {
            img.location = url;
        }
        plan
    }

    /// Refuses a local image where nothing can serve it (a payload for another machine).
    pub fn require_image_url(&self, command: &str) -> Result<()> {
        if let Some(file) = self.local_image() {
            anyhow::bail!("{command} writes a payload for a machine this command does not talk to: the image {} must be an http(s) URL there (with its SHA-256); `anemos deploy`, `image` and `test` serve a local image themselves", file.display());
        }
        Ok(())
    }

    /// Keeps the revealed values out of every log line this process writes from now on
    /// (directory builds run the install, provision() included, in this process).
    pub fn redact_in_logs(&self) {
        for (name, value) in &self.secrets {
            installer::redact::register(name, value);
        }
    }

    fn extras(&self, token: Option<String>) -> payload::Extras {
        payload::Extras { token, build_time: Some(self.build_time), packed_at: Some(self.packed_at) }
    }
}
