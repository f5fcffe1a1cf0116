//! Host side: which modules go into an initramfs.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use super::{normalize, ModuleIndex};

/// The modules every initramfs carries when they exist in the tree: what common virtual and
/// physical machines need to reach their disks and network, and the filesystems we make
/// (and, besides these, [`crate::crypt::MODULES`] for encrypted partitions and
/// [`crate::md::MODULES`] for arrays).
pub const DEFAULT_MODULES: &[&str] = &[
    // buses and storage
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
    "virtio_rng",
    "virtio_console",
    "sd_mod",
    "sr_mod",
    "ahci",
    "ata_piix",
    "nvme",
    "mptspi",
    "vmw_pvscsi",
    "hv_storvsc",
    "xen_blkfront",
    "usb_storage",
    "uas",
    "xhci_pci",
    "ehci_pci",
    // network
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    "r8169",
    "tg3",
    "bnx2",
    "vmxnet3",
    "hv_netvsc",
    "xen_netfront",
    "ena",
    "af_packet",
    // filesystems
    "ext4",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_iso8859_1",
    "nls_utf8",
    "efivarfs",
];

/// The modules an install of `layout` needs beyond [`DEFAULT_MODULES`]: those too large
/// to carry in every initramfs (btrfs with its RAID and compression code, about 1 MiB
/// compressed), added when the payload's plan uses them.
pub fn for_layout(layout: &crate::plan::Layout) -> Vec<String> {
    let mut out = Vec::new();
    if layout.uses_btrfs() {
        out.extend(crate::fs::btrfs::MODULES.iter().map(|m| m.to_string()));
    }
    out
}

/// The chosen modules, closed under dependencies.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub modules: BTreeSet<String>,
    /// Default modules that this tree does not have (neither loadable nor built in).
    pub absent_defaults: Vec<String>,
}

/// Chooses modules: the default set (if `defaults`), every name in `extra` (each must
/// exist), and `detected` names; then adds every dependency.
pub fn select(index: &ModuleIndex, defaults: bool, extra: &[String], detected: &[String]) -> Result<Selection> {
    let mut selection = Selection::default();
    let mut wanted: Vec<String> = Vec::new();
    if defaults {
        for name in DEFAULT_MODULES.iter().chain(crate::crypt::MODULES).chain(crate::md::MODULES) {
            if index.lookup(name).is_empty() && !index.is_builtin(name) {
                selection.absent_defaults.push(name.to_string());
            } else {
                wanted.push(name.to_string());
            }
        }
    }
    wanted.extend(detected.iter().cloned());
    let order = index.load_order(&wanted)?;
    selection.modules.extend(order);
    for name in extra {
        let order = index.load_order(std::slice::from_ref(name)).with_context(|| format!("--module {name}"))?;
        selection.modules.extend(order);
    }
    Ok(selection)
}

/// The modules the running host's devices and mounted filesystems use, found the way
/// mkinitcpio's autodetect does: every device modalias in `sysfs`, and every filesystem type
/// in `mounts` (the text of /proc/self/mounts), resolved against `index`.
pub fn autodetect(index: &ModuleIndex, sysfs: &Path, mounts: &str) -> Result<Vec<String>> {
    let mut found = BTreeSet::new();
    for alias in &super::device_modaliases(sysfs)? {
        found.extend(index.match_modalias(alias));
    }
    for line in mounts.lines() {
        if let Some(fstype) = line.split_whitespace().nth(2) {
            found.extend(index.lookup(fstype));
            found.extend(index.lookup(&format!("fs-{fstype}")));
        }
    }
    Ok(found.into_iter().map(|m| normalize(&m)).collect())
}
