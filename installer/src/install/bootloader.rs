//! The boot loader phase: the plan's loader for this disk and the firmware the installer
//! booted with (`bootloader::choose`), installed by the new system's own tools.

use anyhow::{Context, Result};

use super::{Install, Where};
use crate::bootloader::{self, Spec};

pub fn run(inst: &mut Install) -> Result<()> {
    let Where::Disk { uefi, .. } = &inst.place else { return Ok(()) };
    let Some(kind) = bootloader::choose(inst.plan().bootloader, &inst.plan().layout, *uefi) else {
        log::info!("bootloader=none: the new system brings its own");
        return Ok(());
    };
    let disk = inst.disks.first().map(|(d, _)| d.clone()).context("no target disk")?;
    let root = inst.root_fs()?;
    let esp = inst.plan().layout.partitions.iter().find(|p| p.kind == crate::plan::PartKind::Esp).and_then(|p| p.mountpoint.as_ref()).map(std::path::PathBuf::from);
    let spec = Spec { kind, disk, esp, root, cmdline: inst.cmdline(), timeout: 1 };
    let mounts = crate::packages::chroot::Mounts::setup(&crate::packages::extract::Root::open(&inst.root)?)?;
    bootloader::install(&inst.root, &spec)?;
    drop(mounts);
    super::raid::mirror_esp(inst)
}
