//! `format dir` and `format tar`: the install pipeline run natively into a directory (as
//! root: the target's maintainer scripts and provision() run in a chroot), then archived by
//! the local tar(1) for `tar`, as makeimg does.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use installer::initramfs::{Archive, Node};
use installer::install::{Install, Where};
use installer::payload::Payload;
use installer::plan::Format;

use crate::image::ImageRequest;
use crate::private::{create_new, Scratch};
use crate::project::Project;

pub fn build(req: &ImageRequest, project: &Project) -> Result<(PathBuf, Vec<(String, u64)>)> {
    let plan = &project.plan;
    let root = req.output_dir.join(&plan.imgname);
    if root.exists() {
        bail!("{} already exists; remove it or choose another output directory", root.display());
    }
    if plan.image.is_some() {
        bail!("image= installs onto disks (format raw, or a machine); a {} build runs the packages itself: drop image= or --image", plan.format);
    }
    let phases = match install_natively(project, &root, &req.output_dir, Where::Directory) {
        Ok(p) => p,
        Err(e) => return Err(e.context(format!("the image was not built; {} is left for inspection", root.display()))),
    };
    match &plan.format {
        Format::Tar { compression } => {
            let out = req.output_dir.join(format!("{}.tar.{}", plan.imgname, compression.suffix()));
            let status = std::process::Command::new("tar").args(["--numeric-owner", "--xattrs", "--acls", "-C"]).arg(&root).arg("-caf").arg(&out).arg(".").status().context("running tar")?;
            if !status.success() {
                bail!("tar failed ({status}) writing {}", out.display());
            }
            std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
            Ok((out, phases))
        }
        _ => Ok((root, phases)),
    }
}

/// Runs the install pipeline on this host into `root` (a directory build, or an image
/// build), with the payload unpacked in a private scratch directory beside `near`, and
/// every secret value kept out of this process's log. Needs root: the target's maintainer
/// scripts and provision() run in a chroot. Returns each phase's time.
pub fn install_natively(project: &Project, root: &Path, near: &Path, place: Where) -> Result<Vec<(String, u64)>> {
    if !rustix::process::geteuid().is_root() {
        bail!("building {} natively needs root (the new system's scripts run in a chroot); run as root, or build format raw", project.plan.imgname);
    }
    // Private and removed on every way out: the unpacked payload holds the secrets.
    let work = Scratch::new(near, ".anemos-work")?;
    project.redact_in_logs();
    unpack(&project.archive(None)?, work.path())?;
    let payload = Payload::load(work.path())?.context("the payload did not unpack")?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log_reader = log.clone();
    let mut inst = Install::new(payload, root, place, Box::new(move || log_reader.lock().map(|l| l.clone()).unwrap_or_default()));
    let mut phases = Vec::new();
    for (phase, run) in inst.phases() {
        let name = phase.name();
        let t = Instant::now();
        eprintln!("anemos: {name} …");
        run(&mut inst).with_context(|| format!("phase {name}"))?;
        let ms = t.elapsed().as_millis() as u64;
        if let Ok(mut l) = log.lock() {
            l.push_str(&format!("phase {name} done in {:.1} s\n", ms as f64 / 1000.0));
        }
        eprintln!("anemos: {name} done in {:.1} s", ms as f64 / 1000.0);
        phases.push((name.to_string(), ms));
    }
    Ok(phases)
}

/// Writes an archive's members under `dir` (the payload, for the same loader the init uses);
/// every file is created with its own mode (secrets 0600 from the first byte).
fn unpack(archive: &Archive, dir: &Path) -> Result<()> {
    for path in archive.paths() {
        let dest = dir.join(path);
        match archive.get(path) {
            Some(Node::Dir { mode }) => {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dest)?;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(*mode))?;
            }
            Some(Node::File { mode, data }) => {
                if let Some(p) = dest.parent() {
                    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(p)?;
                }
                std::io::Write::write_all(&mut create_new(&dest, *mode)?, data).with_context(|| format!("writing {}", dest.display()))?;
            }
            Some(Node::Symlink { target }) => {
                if let Some(p) = dest.parent() {
                    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(p)?;
                }
                std::os::unix::fs::symlink(target, &dest)?;
            }
            Some(other) => bail!("unexpected member {path} in a payload: {other:?}"),
            None => {}
        }
    }
    Ok(())
}
