//! `anemos pack DIR -o FILE`: check the project, reveal the secrets its templates use (on
//! this workstation only), and write the payload the initramfs builder appends. The file is
//! written under a temporary name and renamed, so a failure never leaves half a payload;
//! it is mode 0600 because it holds revealed secrets.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use installer::imgbuild::check;
use installer::{payload, secrets};

use crate::cli::PackArgs;
use crate::cmd::check::{options, report};

pub fn run(args: PackArgs) -> Result<()> {
    let dir = &args.project.dir;
    let checked = check(dir, &options(&args.project));
    report(&checked, dir)?;
    let plan = checked.plan.context("the check gave no plan")?;
    let command = plan.variables.get("secrets_command").map(String::as_str).filter(|c| !c.trim().is_empty());
    let revealed = secrets::reveal(dir, &plan.secrets, command, args.project.identity.as_deref())?;
    let bytes = payload::pack(dir, &plan, &revealed, &payload::Extras::default())?;
    write_atomic(&args.output, &bytes)?;
    println!(
        "wrote {}: {} for {} ({} input trees, {} secrets)",
        args.output.display(),
        installer::disk::human_size(bytes.len() as u64),
        plan.imgname,
        plan.inputs.len(),
        plan.secrets.len()
    );
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.anemos-new", name.to_string_lossy()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing the payload to {}", path.display()))
}
