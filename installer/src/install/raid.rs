//! What a layout over several disks (`raid=`) needs in the new system: `mdadm.conf` naming
//! its arrays (the system phase, before its initramfs is built), a unit that starts the
//! arrays a missing disk left inactive, and an esp on every disk.
//! Each disk's esp is a copy with the same volume id, so the fstab line mounts whichever
//! disk is there; the boot loader phase copies the installed esp onto the others, and a
//! dpkg hook in the new system does it again after every package change (kernels,
//! initramfs images, systemd-boot), so either disk boots the current system alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::Install;
use crate::files::root::RootDir;
use crate::mount::{mount_all, MountSpec};

const MIRROR_SCRIPT: &str = "usr/local/sbin/anemos-esp-mirror";
const MIRROR_HOOK: &str = "etc/apt/apt.conf.d/99anemos-esp-mirror";
const DEGRADED_SCRIPT: &str = "usr/local/sbin/anemos-md-run-degraded";
const DEGRADED_UNIT: &str = "etc/systemd/system/anemos-md-run-degraded.service";

/// Starts the arrays a missing disk left inactive. Debian's initramfs starts an array
/// degraded only while it waits for `/` on it, and after the switch to the new root its
/// udev rules no longer start an array whose members the initramfs already gathered: an
/// array for /srv (or a volume group) would stay inactive and the boot would stop in
/// emergency mode on its first boot without a disk after the first.
const DEGRADED: &str = r#"#!/bin/sh
# Written by anemos for raid=: starts, degraded, every md array still inactive once udev
# has settled and a late disk had 10 seconds to appear, so its file systems mount with a
# disk missing. Put a replacement disk back with mdadm --add.
inactive() { awk '$2 == ":" && $3 == "inactive" { print $1 }' /proc/mdstat; }
udevadm settle --timeout=60 || true
[ -n "$(inactive)" ] || exit 0
sleep 10
for md in $(inactive); do
    echo "anemos: starting /dev/$md degraded: one of its disks is missing" >&2
    mdadm --run "/dev/$md" || true
done
"#;

const DEGRADED_SERVICE: &str = "[Unit]
Description=Start RAID arrays a missing disk left inactive (anemos)
DefaultDependencies=no
After=systemd-udev-trigger.service
Before=shutdown.target
Conflicts=shutdown.target
ConditionPathExists=/etc/mdadm/mdadm.conf

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/anemos-md-run-degraded

[Install]
WantedBy=sysinit.target
";

/// `mdadm.conf`, and the esp mirror hook when the esp has copies.
pub fn configure(inst: &Install, root: &RootDir) -> Result<()> {
    if inst.arrays.is_empty() {
        return Ok(());
    }
    root.write_file("etc/mdadm/mdadm.conf", crate::md::mdadm_conf(&inst.arrays).as_bytes(), 0o644)?;
    root.write_file(DEGRADED_SCRIPT, DEGRADED.as_bytes(), 0o755)?;
    root.write_file(DEGRADED_UNIT, DEGRADED_SERVICE.as_bytes(), 0o644)?;
    root.mkdir_p("etc/systemd/system/sysinit.target.wants")?;
    root.symlink("etc/systemd/system/sysinit.target.wants/anemos-md-run-degraded.service", "/etc/systemd/system/anemos-md-run-degraded.service")?;
    log::info!("system: /etc/mdadm/mdadm.conf for {} array(s); arrays left inactive by a missing disk start degraded at boot", inst.arrays.len());
    if let Some(esp) = esp_mountpoint(inst).filter(|_| !inst.esp_copies.is_empty()) {
        root.write_file(MIRROR_SCRIPT, mirror_script(&esp).as_bytes(), 0o755)?;
        let hook =
            format!("// Written by anemos: every disk's esp gets what the mounted one holds after dpkg runs.\nDPkg::Post-Invoke {{ \"if [ -x /{MIRROR_SCRIPT} ]; then /{MIRROR_SCRIPT}; fi\"; }};\n");
        root.write_file(MIRROR_HOOK, hook.as_bytes(), 0o644)?;
        log::info!("system: /{MIRROR_SCRIPT} keeps the {} copies of the esp equal after each dpkg run", inst.esp_copies.len() + 1);
    }
    Ok(())
}

fn esp_mountpoint(inst: &Install) -> Option<String> {
    inst.plan().layout.partitions.iter().find(|p| p.kind == crate::plan::PartKind::Esp).and_then(|p| p.mountpoint.clone())
}

/// The new system's script: the mounted esp copied onto every other file system with its
/// UUID (the other disks' copies), each mounted for the copy in a private directory.
fn mirror_script(esp: &str) -> String {
    format!(
        r#"#!/bin/sh
# Written by anemos for raid=: each disk has a copy of the esp with the same UUID. This
# copies the mounted one ({esp}) onto the others, so either disk boots the current kernel.
set -eu
esp={esp}
mountpoint -q "$esp" || exit 0
src=$(readlink -f "$(findmnt -no SOURCE "$esp")")
uuid=$(blkid -c /dev/null -s UUID -o value "$src")
tmp=$(mktemp -d)
trap 'umount "$tmp" 2>/dev/null || true; rmdir "$tmp"' EXIT
for dev in $(blkid -c /dev/null -t UUID="$uuid" -o device); do
    [ "$(readlink -f "$dev")" = "$src" ] && continue
    mount -t vfat "$dev" "$tmp"
    find "$tmp" -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +
    cp -r "$esp"/. "$tmp"/
    umount "$tmp"
done
"#
    )
}

/// After the boot loader is installed: the esp's tree copied onto each copy.
pub fn mirror_esp(inst: &Install) -> Result<()> {
    let Some(esp) = esp_mountpoint(inst).filter(|_| !inst.esp_copies.is_empty()) else { return Ok(()) };
    let source = crate::mount::inside(&inst.root, Path::new(&esp))?;
    let point = PathBuf::from(format!("{}.esp-copy", inst.root.display()));
    for copy in &inst.esp_copies {
        let spec = MountSpec { source: copy.clone(), target: PathBuf::from("/"), fstype: "vfat".into(), options: String::new() };
        let mounted = mount_all(&point, &[spec])?;
        let files = copy_tree(&source, &point).with_context(|| format!("copying the esp onto {}", copy.display()))?;
        mounted.unmount()?;
        log::info!("bootloader: the esp copied onto {} ({files} files)", copy.display());
    }
    Ok(())
}

/// Copies directories and regular files (an esp holds nothing else); returns the file count.
fn copy_tree(from: &Path, to: &Path) -> Result<usize> {
    let mut files = 0;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dst).with_context(|| format!("creating {}", dst.display()))?;
            files += copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
            files += 1;
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    #[test]
    fn trees_are_copied_whole() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir_all(a.path().join("EFI/BOOT")).unwrap();
        std::fs::write(a.path().join("EFI/BOOT/BOOTX64.EFI"), b"loader").unwrap();
        std::fs::write(a.path().join("loader.conf"), b"timeout 1").unwrap();
        assert_eq!(super::copy_tree(a.path(), b.path()).unwrap(), 2);
        assert_eq!(std::fs::read(b.path().join("EFI/BOOT/BOOTX64.EFI")).unwrap(), b"loader");
    }

    #[test]
    fn the_script_skips_the_mounted_esp() {
        let s = super::mirror_script("/boot/efi");
        assert!(s.contains("esp=/boot/efi") && s.contains("[ \"$(readlink -f \"$dev\")\" = \"$src\" ] && continue") && s.contains("-exec rm -rf {} +"), "{s}");
    }
}
