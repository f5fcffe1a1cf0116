//! GRUB through the target's own tools: `grub-install` (BIOS boot code into every disk of
//! the layout, the EFI binary on the ESP at the removable-media path, or both) and
//! `update-grub` for grub.cfg, with the serial console and command line in
//! /etc/default/grub.d/, and debconf told where GRUB lives so the package's own upgrades
//! reinstall it there.
//!
//! update-grub names `/` on the kernel command line itself, by UUID only where udev made
//! `/dev/disk/by-uuid/UUID` (else by the kernel's name for the disk, `root=/dev/vda2`,
//! which another machine or the next boot may give another disk), and grub-probe finds a
//! logical volume only by its `/dev/mapper/NAME` link. The installer has no udev: the
//! links are made for the time the tools run, and grub.cfg is read back after.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{Kind, RootFs, Spec};
use crate::packages::chroot;

pub fn install(root: &Path, spec: &Spec) -> Result<()> {
    write_defaults(root, spec)?;
    let links = UdevLinks::make(Path::new("/dev"), Path::new("/sys/block"), &spec.root)?;
    if matches!(spec.kind, Kind::GrubBios | Kind::GrubHybrid) {
        for disk in &spec.disks {
            let disk = disk.to_string_lossy();
            chroot::run(root, "grub-install", &["--target=i386-pc", &disk]).with_context(|| format!("installing GRUB's BIOS boot code on {disk}"))?;
        }
    }
    if spec.kind == Kind::GrubBios {
        debconf(root, &format!("grub-pc grub-pc/install_devices multiselect {}", spec.install_devices.join(", ")))?;
    }
    if matches!(spec.kind, Kind::GrubEfi | Kind::GrubHybrid) {
        let esp = spec.esp.as_ref().context("GRUB for UEFI needs an EFI system partition mounted at /boot/efi")?;
        let esp = esp.to_string_lossy().into_owned();
        chroot::run(root, "grub-install", &["--target=x86_64-efi", &format!("--efi-directory={esp}"), "--removable", "--no-nvram"])
            .with_context(|| format!("installing GRUB's EFI binary on the ESP at {esp}"))?;
        debconf(root, "grub-efi-amd64 grub2/force_efi_extra_removable boolean true")?;
    }
    chroot::run(root, "update-grub", &[]).context("writing grub.cfg with update-grub")?;
    let names = root_names(Path::new("/sys/block"), &spec.root);
    drop(links);
    let cfg = root.join("boot/grub/grub.cfg");
    let text = std::fs::read_to_string(&cfg).with_context(|| format!("reading {} after update-grub", cfg.display()))?;
    check_cfg(&text, &names, spec.root.flags.as_deref()).with_context(|| format!("checking {}", cfg.display()))?;
    log::info!("GRUB installed ({:?}) on {} disk(s), / named {}", spec.kind, spec.disks.len(), names.join(" or "));
    Ok(())
}

/// The links udev would have made that GRUB's tools look for: `disk/by-uuid/UUID` for `/`
/// and `mapper/NAME` for each device-mapper device (grub-probe skips `dm-N`). Made under
/// `dev` only where missing, relative as udev makes them (so they hold in the chroot),
/// and removed when dropped.
struct UdevLinks(Vec<PathBuf>);

impl UdevLinks {
    fn make(dev: &Path, sys_block: &Path, root: &RootFs) -> Result<UdevLinks> {
        let mut links = UdevLinks(Vec::new());
        let node = root.device.strip_prefix("/dev").ok().filter(|n| n.file_name().is_some()).with_context(|| format!("{} is not a node under /dev", root.device.display()))?;
        links.add(&dev.join("disk/by-uuid").join(&root.uuid), Path::new("../..").join(node))?;
        for (dm, name) in device_mapper(sys_block) {
            links.add(&dev.join("mapper").join(name), Path::new("..").join(dm))?;
        }
        Ok(links)
    }

    fn add(&mut self, link: &Path, target: PathBuf) -> Result<()> {
        if std::fs::symlink_metadata(link).is_ok() {
            return Ok(());
        }
        if let Some(dir) = link.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::os::unix::fs::symlink(&target, link).with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
        self.0.push(link.to_path_buf());
        Ok(())
    }
}

impl Drop for UdevLinks {
    fn drop(&mut self) {
        for link in self.0.drain(..) {
            if let Err(e) = std::fs::remove_file(&link) {
                log::warn!("removing {}: {e}", link.display());
            }
        }
    }
}

/// The device-mapper devices under `sys_block`: (`dm-N`, its name), in order.
fn device_mapper(sys_block: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(sys_block) else { return Vec::new() };
    let mut out: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let dm = e.file_name().to_string_lossy().into_owned();
            let name = std::fs::read_to_string(e.path().join("dm/name")).ok()?;
            let name = name.trim().to_string();
            (dm.starts_with("dm-") && !name.is_empty() && !name.contains('/')).then_some((dm, name))
        })
        .collect();
    out.sort();
    out
}

/// How grub.cfg may name `/`: by its UUID; a logical volume also by its `/dev/mapper/`
/// name (update-grub's choice for LVM, stable as the group's and the volume's names are).
fn root_names(sys_block: &Path, root: &RootFs) -> Vec<String> {
    let mut names = vec![format!("UUID={}", root.uuid)];
    let dm = root.device.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let uuid = std::fs::read_to_string(sys_block.join(&dm).join("dm/uuid")).unwrap_or_default();
    if uuid.starts_with("LVM-") {
        if let Some((_, name)) = device_mapper(sys_block).into_iter().find(|(d, _)| *d == dm) {
            names.push(format!("/dev/mapper/{name}"));
        }
    }
    names
}

/// Every kernel line of grub.cfg names `/` as one of `names` (its last `root=`, as the
/// kernel reads it) and, where `/` is a subvolume, carries `rootflags=FLAGS`.
fn check_cfg(text: &str, names: &[String], flags: Option<&str>) -> Result<()> {
    let lines: Vec<&str> = text.lines().map(str::trim_start).filter(|l| l.starts_with("linux ") || l.starts_with("linux\t")).collect();
    if lines.is_empty() {
        bail!("update-grub wrote no kernel entry (no `linux` line): is a kernel installed in /boot?");
    }
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let named = words.iter().rev().find_map(|w| w.strip_prefix("root="));
        if !named.is_some_and(|n| names.iter().any(|want| want == n)) {
            let want = names.join("` or `root=");
            bail!(
                "update-grub named / as `root={}`, not `root={want}`: the system would boot only while its disks keep their names. The disk is not bootable yet; report this with the install log",
                named.unwrap_or("")
            );
        }
        if let Some(flags) = flags {
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

    const ENTRY: &str =
        "menuentry 'Debian' {\n\tsearch --no-floppy --fs-uuid --set=root 0b5e-u\n\tlinux\t/boot/vmlinuz-6.1.0-28-amd64 root=ROOT ro console=ttyS0\n\tinitrd\t/boot/initrd.img-6.1.0-28-amd64\n}\n";

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grub_cfg_must_name_the_root_by_uuid_in_every_entry() {
        let uuid = names(&["UUID=0b5e-u"]);
        let good = ENTRY.replace("ROOT", "UUID=0b5e-u");
        check_cfg(&format!("{good}{good}"), &uuid, None).unwrap();
        // What update-grub writes without /dev/disk/by-uuid: the kernel's name for the disk.
        let by_name = ENTRY.replace("ROOT", "/dev/vda2");
        let e = check_cfg(&format!("{good}{by_name}"), &uuid, None).unwrap_err().to_string();
        assert!(e.contains("`root=/dev/vda2`") && e.contains("root=UUID=0b5e-u"), "{e}");
        assert!(check_cfg(&ENTRY.replace("ROOT", "UUID=0b5e-uu"), &uuid, None).is_err(), "another UUID that starts the same");
        assert!(check_cfg("set timeout=1\n", &uuid, None).unwrap_err().to_string().contains("no kernel entry"));
        // A logical volume: by its mapper name, as update-grub does for LVM.
        let lv = names(&["UUID=0b5e-u", "/dev/mapper/vg--sys-root"]);
        check_cfg(&ENTRY.replace("ROOT", "/dev/mapper/vg--sys-root"), &lv, None).unwrap();
        assert!(check_cfg(&ENTRY.replace("ROOT", "/dev/dm-0"), &lv, None).is_err());
    }

    #[test]
    fn a_root_subvolume_must_reach_every_entry() {
        let uuid = names(&["UUID=0b5e-u"]);
        check_cfg(&ENTRY.replace("ROOT", "UUID=0b5e-u rootflags=subvol=@"), &uuid, Some("subvol=@")).unwrap();
        let e = check_cfg(&ENTRY.replace("ROOT", "UUID=0b5e-u"), &uuid, Some("subvol=@")).unwrap_err().to_string();
        assert!(e.contains("rootflags=subvol=@"), "{e}");
    }

    /// A fake /sys/block with `dm-0` named `name` (UUID `uuid`) and a plain disk.
    fn sys_block(name: &str, uuid: &str) -> tempfile::TempDir {
        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sys.path().join("dm-0/dm")).unwrap();
        std::fs::write(sys.path().join("dm-0/dm/name"), format!("{name}\n")).unwrap();
        std::fs::write(sys.path().join("dm-0/dm/uuid"), format!("{uuid}\n")).unwrap();
        std::fs::create_dir_all(sys.path().join("vda")).unwrap();
        sys
    }

    #[test]
    fn udevs_links_are_made_relative_where_missing_and_go_away_after() {
        let (dev, sys) = (tempfile::tempdir().unwrap(), sys_block("vg--sys-root", "LVM-abc"));
        let by_uuid = dev.path().join("disk/by-uuid/0b5e-u");
        let links = UdevLinks::make(dev.path(), sys.path(), &root(None)).unwrap();
        assert_eq!(std::fs::read_link(&by_uuid).unwrap(), Path::new("../../vda2"));
        assert_eq!(std::fs::read_link(dev.path().join("mapper/vg--sys-root")).unwrap(), Path::new("../dm-0"));
        drop(links);
        assert!(std::fs::symlink_metadata(&by_uuid).is_err() && std::fs::symlink_metadata(dev.path().join("mapper/vg--sys-root")).is_err());
        // One udev made stays as it is.
        std::os::unix::fs::symlink("../../sda1", &by_uuid).unwrap();
        drop(UdevLinks::make(dev.path(), sys.path(), &root(None)).unwrap());
        assert_eq!(std::fs::read_link(&by_uuid).unwrap(), Path::new("../../sda1"));
        // An array's node under /dev/md/ keeps its directory.
        std::fs::remove_file(&by_uuid).unwrap();
        let md = RootFs { device: "/dev/md/root".into(), ..root(None) };
        let _l = UdevLinks::make(dev.path(), sys.path(), &md).unwrap();
        assert_eq!(std::fs::read_link(&by_uuid).unwrap(), Path::new("../../md/root"));
    }

    #[test]
    fn a_logical_volume_root_may_be_named_by_its_mapper_name() {
        let lvm = sys_block("vg--sys-root", "LVM-abc");
        let lv = RootFs { device: "/dev/dm-0".into(), ..root(None) };
        assert_eq!(root_names(lvm.path(), &lv), ["UUID=0b5e-u", "/dev/mapper/vg--sys-root"]);
        // A LUKS mapping is not LVM: only the UUID.
        let crypt = sys_block("root", "CRYPT-LUKS2-abc-root");
        assert_eq!(root_names(crypt.path(), &lv), ["UUID=0b5e-u"]);
        assert_eq!(root_names(lvm.path(), &root(None)), ["UUID=0b5e-u"]);
    }
}
