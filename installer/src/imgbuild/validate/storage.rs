//! What the rest of the plan must allow when the layout goes beyond plain partitions
//! (`encrypt=`, `volume_group=`, `raid=`): a target whose initramfs can open them, an
//! install onto disks (by the package path or from an image, whose initramfs each host
//! makes again), a boot loader that can read the kernels (GRUB: an unencrypted `/boot`),
//! and as many disks as the arrays need.

use super::Ctx;
use crate::packages::profile;
use crate::plan::*;

pub fn fits(cx: &mut Ctx<'_>, layout: &Layout, target: Option<&Target>, format: Option<&Format>, bootloader: Option<Bootloader>) {
    let profile = target.map(profile::of);
    let used = [
        ("encrypt", !layout.encrypted.is_empty(), profile.map(|p| p.unlock), "cryptsetup-initramfs"),
        ("volume_group", layout.volume_group.is_some(), profile.map(|p| p.lvm), "lvm2"),
        ("raid", !layout.raid.is_empty(), profile.map(|p| p.raid), "mdadm"),
    ];
    for (var, _, package, tool) in used.into_iter().filter(|u| u.1) {
        if let (Some(p), Some(None)) = (profile, package) {
            cx.error(var, format!("{var}= is not supported for target {} yet (debian only: its initramfs opens them with {tool})", p.name));
        }
        if let Some(f) = format.filter(|f| !matches!(f, Format::Raw { .. })) {
            cx.error(var, format!("{var}= needs a disk (format raw, or an install on a machine), not format {f}"));
        }
    }
    btrfs_fits(cx, layout, profile);
    // GRUB reads /boot (or / holding it) through arrays, volume groups and btrfs, but not
    // LUKS2 (the GRUB of Debian 12 opens no Argon2 keyslot).
    if layout.boot_encrypted() && bootloader.is_some_and(|b| b != Bootloader::SystemdBoot) {
        let what = if layout.holder_of("/boot").is_some() { "an encrypted /boot" } else { "an encrypted / without a /boot of its own" };
        cx.error(
            "encrypt",
            format!("{what} needs bootloader=systemd-boot (it boots the kernel from the esp); for GRUB, mount an unencrypted partition or array at /boot (GRUB cannot open a LUKS2 keyslot)"),
        );
    }
}

/// btrfs (`partitions=`/`volumes=` file system btrfs, `subvolumes=`): a target that
/// installs btrfs-progs for it. (GRUB reads a btrfs `/`, subvolumes
/// included, also on an array or a logical volume; `fits` keeps it off an encrypted one.)
fn btrfs_fits(cx: &mut Ctx<'_>, layout: &Layout, profile: Option<&profile::Profile>) {
    if !layout.uses_btrfs() {
        return;
    }
    let var = if cx.get("subvolumes").is_some() { "subvolumes" } else { "partitions" };
    if let Some(p) = profile.filter(|p| p.btrfs.is_none()) {
        cx.error(var, format!("btrfs is not supported for target {} yet (debian only)", p.name));
    }
}

/// `raid=` and the number of disks in `disk=`: arrays need two or more (RAID1 and RAID10
/// mirror, RAID0 stripes), and several disks need arrays to put on them.
pub fn disks_fit(cx: &mut Ctx<'_>, layout: &Layout, disks: usize) {
    if !layout.raid.is_empty() && disks < 2 {
        cx.error("raid", format!("raid= makes arrays across the disks of disk=, which names {disks}: list two or more (disk=\"serial:A serial:B\")"));
    }
    if layout.raid.is_empty() && disks > 1 {
        cx.error("disk", format!("disk= names {disks} disks but raid= is empty: say which partitions become arrays across them (raid=\"root raid1\")"));
    }
}
