//! `anemos pack DIR -o FILE`: check the project, reveal the secrets its templates use (on
//! this workstation only), and write the payload the initramfs builder appends. The file is
//! written under a temporary name and renamed, so a failure never leaves half a payload;
//! it is mode 0600 because it holds revealed secrets.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use installer::imgbuild::check;
use installer::plan::Plan;
use installer::{payload, secrets};

use crate::cli::{PackArgs, ProjectArgs};
use crate::cmd::check::{options, report};

/// A checked project, packed.
pub struct Packed {
    pub plan: Plan,
    /// The payload archive (zstd-compressed newc).
    pub bytes: Vec<u8>,
    /// The build time it records (seconds since the epoch).
    pub build_time: u64,
}

/// Checks the project (failing on any error), reveals the secrets its templates use and
/// packs the payload with its build time and, for deploys and PXE, a token.
pub fn pack_project(project: &ProjectArgs, token: Option<String>) -> Result<Packed> {
    let dir = &project.dir;
    let checked = check(dir, &options(project));
    report(&checked, dir)?;
    let plan = checked.plan.context("the check gave no plan")?;
    let command = plan.variables.get("secrets_command").map(String::as_str).filter(|c| !c.trim().is_empty());
    let revealed = secrets::reveal(dir, &plan.secrets, command, project.identity.as_deref())?;
    let build_time = payload::build_time(dir, &plan)?;
    let bytes = payload::pack(dir, &plan, &revealed, &payload::Extras { token, build_time: Some(build_time) })?;
    Ok(Packed { plan, bytes, build_time })
}

pub fn run(args: PackArgs) -> Result<()> {
    let packed = pack_project(&args.project, None)?;
    write_atomic(&args.output, &packed.bytes, 0o600).context("writing the payload")?;
    let plan = &packed.plan;
    println!(
        "wrote {}: {} for {} ({} input trees, {} secrets; built {})",
        args.output.display(),
        installer::disk::human_size(packed.bytes.len() as u64),
        plan.imgname,
        plan.inputs.len(),
        plan.secrets.len(),
        installer::clock::format(installer::clock::from_unix(packed.build_time))
    );
    Ok(())
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename,
/// with `mode`: readers see the old file or the whole new one, never a part.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.anemos-new", name.to_string_lossy()));
    let result = (|| -> Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have taken bits away from `mode`; the file must have exactly it.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}
