//! `anemos disks`: the disk inventory of this host, as the init would see it.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::DisksArgs;

pub fn run(args: DisksArgs) -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let disks = installer::disk::inventory(Path::new("/sys"), &mountinfo)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&disks).context("rendering JSON")?);
        return Ok(());
    }
    if disks.is_empty() {
        println!("no disks");
    }
    for d in &disks {
        println!("{}", installer::disk::describe(d));
    }
    Ok(())
}
