//! GRUB through the target's own tools: `grub-install` (BIOS boot code into the disk, the
//! EFI binary on the ESP at the removable-media path, or both) and `update-grub` for grub.cfg,
//! with the serial console and command line in /etc/default/grub.d/, and debconf told
//! where GRUB lives so the package's own upgrades reinstall it there.
//!
//! update-grub names `/` on the kernel command line itself, by UUID only where udev made
//! `/dev/disk/by-uuid/UUID` (else by the kernel's name for the disk, `root=/dev/vda2`,
//! which another machine or the next boot may give another disk). The installer has no
//! udev: the link is made for the time the tools run, and grub.cfg is read back after.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{Kind, RootFs, Spec};
use crate::packages::chroot;

const BY_UUID: &str = "/dev/disk/by-uuid";

pub fn install(root: &Path, spec: &Spec) -> Result<()> {
    write_defaults(root, spec)?;
    let disk = spec.disk.to_string_lossy().into_owned();
    if matches!(spec.kind, Kind::GrubBios | Kind::GrubHybrid) {
        chroot::run(root, "grub-install", &["--target=i386-pc", &disk]).with_context(|| format!("installing GRUB's BIOS boot code on {disk}"))?;
    }
    if spec.kind == Kind::GrubBios {
        debconf(root, &format!("grub-pc grub-pc/install_devices multiselect {disk}"))?;
    }
    if matches!(spec.kind, Kind::GrubEfi | Kind::GrubHybrid) {
        let esp = spec.esp.as_ref().context("GRUB for UEFI needs an EFI system partition mounted at /boot/efi")?;
        let esp = esp.to_string_lossy().into_owned();
        chroot::run(root, "grub-install", &["--target=x86_64-efi", &format!("--efi-directory={esp}"), "--removable", "--no-nvram"])
            .with_context(|| format!("installing GRUB's EFI binary on the ESP at {esp}"))?;
        debconf(root, "grub-efi-amd64 grub2/force_efi_extra_removable boolean true")?;
    }
    let link = UuidLink::make(Path::new(BY_UUID), &spec.root)?;
    chroot::run(root, "update-grub", &[]).context("writing grub.cfg with update-grub")?;
    drop(link);
    let cfg = root.join("boot/grub/grub.cfg");
    let text = std::fs::read_to_string(&cfg).with_context(|| format!("reading {} after update-grub", cfg.display()))?;
    check_cfg(&text, &spec.root).with_context(|| format!("checking {}", cfg.display()))?;
    log::info!("GRUB installed ({:?}), / named by UUID {}", spec.kind, spec.root.uuid);
    Ok(())
}

/// udev's link `DIR/UUID -> ../../NODE` for `/`, made when nothing made it and removed when
/// dropped.
struct UuidLink(Option<PathBuf>);

impl UuidLink {
    fn make(dir: &Path, root: &RootFs) -> Result<UuidLink> {
        let link = dir.join(&root.uuid);
        if std::fs::symlink_metadata(&link).is_ok() {
            return Ok(UuidLink(None));
        }
        let node = root.device.file_name().with_context(|| format!("{} is not a device node's path", root.device.display()))?;
        // What udev writes: relative to /dev/disk/by-uuid, so it holds inside the chroot.
        let target = Path::new("../..").join(root.device.strip_prefix("/dev").unwrap_or(Path::new(node)));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::os::unix::fs::symlink(&target, &link).with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
        Ok(UuidLink(Some(link)))
    }
}

impl Drop for UuidLink {
    fn drop(&mut self) {
        if let Some(link) = self.0.take() {
            if let Err(e) = std::fs::remove_file(&link) {
                log::warn!("removing {}: {e}", link.display());
            }
        }
    }
}

/// Every kernel line of grub.cfg names `/` by its UUID (with the subvolume, on btrfs).
fn check_cfg(text: &str, root: &RootFs) -> Result<()> {
    let want = format!("root=UUID={}", root.uuid);
    let lines: Vec<&str> = text.lines().map(str::trim_start).filter(|l| l.starts_with("linux ") || l.starts_with("linux\t")).collect();
    if lines.is_empty() {
        bail!("update-grub wrote no kernel entry (no `linux` line): is a kernel installed in /boot?");
    }
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.contains(&want.as_str()) {
            let named = words.iter().find(|w| w.starts_with("root=")).unwrap_or(&"no root=");
            bail!("update-grub named / as `{named}`, not `{want}`: the system would boot only while its disks keep their names. The disk is not bootable yet; report this with the install log");
        }
        if let Some(flags) = &root.flags {
            if !words.iter().any(|w| w.strip_prefix("rootflags=") == Some(flags)) {
                bail!("update-grub's kernel line lacks `rootflags={flags}`: the initramfs would not find / in its file system");
            }
        }
    }
    Ok(())
}

fn write_defaults(root: &Path, spec: &Spec) -> Result<()> {
    // update-grub adds root=, ro and, on btrfs, rootflags=subvol= itself: the rest.
    let rest: Vec<&str> = spec.cmdline.split_whitespace().filter(|w| !w.starts_with("root=") && *w != "ro").collect();
    let serial = rest.iter().find_map(|w| w.strip_prefix("console=ttyS"));
    let mut text = format!("# Written by anemos.\nGRUB_TIMEOUT={}\nGRUB_CMDLINE_LINUX_DEFAULT=\"\"\nGRUB_CMDLINE_LINUX=\"{}\"\nGRUB_DISABLE_OS_PROBER=true\n", spec.timeout, rest.join(" "));
    if let Some(serial) = serial {
        let (unit, speed) = serial.split_once(',').unwrap_or((serial, "115200"));
        let speed: String = speed.chars().take_while(|c| c.is_ascii_digit()).collect();
        text += &format!("GRUB_TERMINAL=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --unit={unit} --speed={speed}\"\n");
    }
    let dir = root.join("etc/default/grub.d");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("anemos.cfg"), text).context("writing /etc/default/grub.d/anemos.cfg")
}

fn debconf(root: &Path, selection: &str) -> Result<()> {
    let mut cmd = chroot::command(root, "debconf-set-selections", &[])?;
    let (status, _, stderr) = crate::exec::output_with_input(&mut cmd, format!("{selection}\n").as_bytes())?;
    anyhow::ensure!(status.success(), "debconf-set-selections failed ({status}): {}", String::from_utf8_lossy(&stderr).trim());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(flags: Option<&str>) -> RootFs {
        RootFs { uuid: "0b5e-u".into(), flags: flags.map(String::from), device: "/dev/vda2".into() }
    }

    const ENTRY: &str = "menuentry 'Debian' {\n\tsearch --no-floppy --fs-uuid --set=root 0b5e-u\n\tlinux\t/boot/vmlinuz-6.1.0-28-amd64 root=ROOT ro console=ttyS0\n\tinitrd\t/boot/initrd.img-6.1.0-28-amd64\n}\n";

    #[test]
    fn grub_cfg_must_name_the_root_by_uuid_in_every_entry() {
        let good = ENTRY.replace("ROOT", "UUID=0b5e-u");
        check_cfg(&format!("{good}{good}"), &root(None)).unwrap();
        // What update-grub writes without /dev/disk/by-uuid: the kernel's name for the disk.
        let by_name = ENTRY.replace("ROOT", "/dev/vda2");
        let e = check_cfg(&format!("{good}{by_name}"), &root(None)).unwrap_err().to_string();
        assert!(e.contains("`root=/dev/vda2`") && e.contains("root=UUID=0b5e-u"), "{e}");
        assert!(check_cfg(&ENTRY.replace("ROOT", "UUID=0b5e-uu"), &root(None)).is_err(), "another UUID that starts the same");
        assert!(check_cfg("set timeout=1\n", &root(None)).unwrap_err().to_string().contains("no kernel entry"));
    }

    #[test]
    fn a_root_subvolume_must_reach_every_entry() {
        let with = ENTRY.replace("ROOT", "UUID=0b5e-u rootflags=subvol=@");
        check_cfg(&with, &root(Some("subvol=@"))).unwrap();
        let without = ENTRY.replace("ROOT", "UUID=0b5e-u");
        assert!(check_cfg(&without, &root(Some("subvol=@"))).unwrap_err().to_string().contains("rootflags=subvol=@"));
    }

    #[test]
    fn the_uuid_link_is_udevs_relative_link_and_goes_away_after() {
        let dir = tempfile::tempdir().unwrap();
        let by_uuid = dir.path().join("disk/by-uuid");
        let link = UuidLink::make(&by_uuid, &root(None)).unwrap();
        assert_eq!(std::fs::read_link(by_uuid.join("0b5e-u")).unwrap(), Path::new("../../vda2"));
        drop(link);
        assert!(std::fs::symlink_metadata(by_uuid.join("0b5e-u")).is_err());
        // One that udev made stays.
        std::os::unix::fs::symlink("../../sda1", by_uuid.join("0b5e-u")).unwrap();
        drop(UuidLink::make(&by_uuid, &root(None)).unwrap());
        assert_eq!(std::fs::read_link(by_uuid.join("0b5e-u")).unwrap(), Path::new("../../sda1"));
        // An array's node (/dev/md/root) keeps its directory.
        let md = RootFs { device: "/dev/md/root".into(), ..root(None) };
        std::fs::remove_file(by_uuid.join("0b5e-u")).unwrap();
        let _l = UuidLink::make(&by_uuid, &md).unwrap();
        assert_eq!(std::fs::read_link(by_uuid.join("0b5e-u")).unwrap(), Path::new("../../md/root"));
    }
}
