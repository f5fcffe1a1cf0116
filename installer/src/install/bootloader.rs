//! The boot loader phase: the plan's loader for this disk and the firmware the installer
//! booted with (`bootloader::choose`), installed by the new system's own tools.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{Install, Where};
use crate::bootloader::{self, Spec};
use crate::disk::Disk;

pub fn run(inst: &mut Install) -> Result<()> {
    let Where::Disk { uefi, target, .. } = &inst.place else { return Ok(()) };
    let Some(kind) = bootloader::choose(inst.plan().bootloader, &inst.plan().layout, *uefi) else {
        log::info!("bootloader=none: the new system brings its own");
        return Ok(());
    };
    let disks: Vec<PathBuf> = inst.target_disks().map(|(d, _)| d.to_path_buf()).collect();
    anyhow::ensure!(!disks.is_empty(), "no target disk");
    // An image build's disk is the build VM's: its names mean nothing on the hosts the
    // image goes to, so the kernel's name stays (what a cloud VM's first disk is called).
    let install_devices = if target.is_some() { disks.iter().map(|d| d.display().to_string()).collect() } else { stable_names(&disks, &known_disks()) };
    let root = inst.root_fs()?;
    let esp = inst.plan().layout.partitions.iter().find(|p| p.kind == crate::plan::PartKind::Esp).and_then(|p| p.mountpoint.as_ref()).map(PathBuf::from);
    let spec = Spec { kind, disks, install_devices, esp, root, cmdline: inst.cmdline(), timeout: 1 };
    let mounts = crate::packages::chroot::Mounts::setup(&crate::packages::extract::Root::open(&inst.root)?)?;
    bootloader::install(&inst.root, &spec)?;
    drop(mounts);
    super::raid::mirror_esp(inst)
}

/// Each disk's first `/dev/disk/by-id/` name among the `known` disks (as udev will make it
/// in the new system), or its kernel name when it has none.
fn stable_names(disks: &[PathBuf], known: &[Disk]) -> Vec<String> {
    disks
        .iter()
        .map(|d| match known.iter().find(|k| &k.path == d).and_then(|k| k.by_id.first()) {
            Some(id) => format!("/dev/disk/by-id/{id}"),
            None => d.display().to_string(),
        })
        .collect()
}

/// The machine's disks now; none (so kernel names) with a warning if they cannot be read.
fn known_disks() -> Vec<Disk> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    crate::disk::inventory(Path::new("/sys"), &mountinfo).unwrap_or_else(|e| {
        log::warn!("listing the disks for grub-pc's install devices: {e:#}; naming them by kernel name");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::select::tests::disk;

    #[test]
    fn grub_pc_gets_each_disks_by_id_name_and_the_kernel_name_only_without_one() {
        let mut no_serial = disk("vdb", 1 << 30, "x");
        no_serial.by_id.clear();
        let known = [disk("vda", 1 << 30, "grub-a"), no_serial];
        let names = stable_names(&["/dev/vda".into(), "/dev/vdb".into(), "/dev/vdc".into()], &known);
        assert_eq!(names, ["/dev/disk/by-id/virtio-grub-a", "/dev/vdb", "/dev/vdc"]);
    }
}
