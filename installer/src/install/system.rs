//! What makes the tree a system of its own: fstab by UUID (the new filesystems, swap, the
//! preserved disks, the plan's extra lines), the host name, a fresh machine-id; the boot
//! loader; and the install log saved into it.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Install, Where};
use crate::bootloader::{self, Spec};
use crate::files::root::RootDir;
use crate::fstab::{self, Entry};

pub fn run(inst: &mut Install) -> Result<()> {
    let root = RootDir::open(&inst.root)?;
    if matches!(inst.place, Where::Disk { .. }) {
        root.write_file("etc/fstab", fstab_text(inst).as_bytes(), 0o644)?;
    }
    let host = &inst.plan.hostname;
    root.write_file("etc/hostname", format!("{host}\n").as_bytes(), 0o644)?;
    let hosts = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{host}\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n");
    root.write_file("etc/hosts", hosts.as_bytes(), 0o644)?;
    root.write_file("etc/machine-id", format!("{}\n", machine_id()?).as_bytes(), 0o444)?;
    if inst.from_image() {
        ssh_host_keys(inst)?;
    }
    log::info!("system: host name {host}, a new machine-id{}", if matches!(inst.place, Where::Disk { .. }) { ", /etc/fstab" } else { "" });
    Ok(())
}

/// An image holds no ssh host keys (every host must have its own): made here, by the
/// target's own ssh-keygen, for every key type its sshd uses.
fn ssh_host_keys(inst: &Install) -> Result<()> {
    if !inst.root.join("usr/bin/ssh-keygen").exists() {
        return Ok(());
    }
    let _mounts = crate::packages::chroot::Mounts::setup(&crate::packages::extract::Root::open(&inst.root)?)?;
    crate::packages::chroot::run(&inst.root, "ssh-keygen", &["-A"]).context("making this host's ssh host keys (ssh-keygen -A)")?;
    log::info!("system: new ssh host keys");
    Ok(())
}

fn fstab_text(inst: &Install) -> String {
    let mut entries = Vec::new();
    for m in &inst.made {
        let Some(fs) = &m.fs else { continue };
        let mp = m.mountpoint.as_deref().unwrap_or("none");
        if fs.kind.name() != "swap" && m.mountpoint.is_none() {
            continue;
        }
        let opts = if m.options == "defaults" { "" } else { m.options.as_str() };
        entries.push(Entry::by_uuid(&fs.uuid, mp, fs.kind.name(), opts));
    }
    for p in &inst.preserved {
        let spec = p.uuid.as_ref().map(|u| format!("UUID={u}")).unwrap_or_else(|| p.device.display().to_string());
        let opts = if p.options == "defaults" { "" } else { p.options.as_str() };
        let mut e = Entry::by_uuid("", &p.mountpoint, &p.fstype, opts);
        e.spec = spec;
        entries.push(e);
    }
    let extra: Vec<String> = inst
        .plan
        .mounts
        .iter()
        .map(|m| format!("{}\t{}\t{}\t{}\t{}\t{}", m.spec, m.file, m.vfstype, m.options, m.freq, m.passno))
        .collect();
    fstab::render(&entries, &extra)
}

/// 128 random bits as systemd writes them (lower-case hex, version 4 bits set).
fn machine_id() -> Result<String> {
    let mut b = [0u8; 16];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).context("reading random bytes for the machine-id")?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The boot loader phase.
pub fn bootloader(inst: &mut Install) -> Result<()> {
    let Where::Disk { uefi, .. } = &inst.place else { return Ok(()) };
    let Some(kind) = bootloader::choose(inst.plan.bootloader, &inst.plan.layout, *uefi) else {
        log::info!("bootloader=none: the new system brings its own");
        return Ok(());
    };
    let (disk, _) = inst.disk.clone().context("no target disk")?;
    let root_uuid = inst
        .made
        .iter()
        .find(|m| m.mountpoint.as_deref() == Some("/"))
        .and_then(|m| m.fs.as_ref())
        .map(|f| f.uuid.clone())
        .context("no filesystem is mounted at / in the layout")?;
    let esp = inst
        .plan
        .layout
        .partitions
        .iter()
        .find(|p| p.kind == crate::plan::PartKind::Esp)
        .and_then(|p| p.mountpoint.as_ref())
        .map(std::path::PathBuf::from);
    let spec = Spec { kind, disk, esp, root_uuid, cmdline: inst.cmdline(), timeout: 1 };
    let _mounts = crate::packages::chroot::Mounts::setup(&crate::packages::extract::Root::open(&inst.root)?)?;
    bootloader::install(&inst.root, &spec)
}

/// Copies the install log and the plan into the new system, readable by root only (the
/// log has no secret values — they are redacted as each line is logged — but it shows
/// the whole install, and the plan names every secret and mirror).
pub fn save_log(inst: &mut Install) -> Result<()> {
    let root = RootDir::open(&inst.root)?;
    let logs = root.mkdir_p("var/log")?;
    root.mkdir_p("var/log/anemos")?;
    rustix::fs::chmodat(&logs, "anemos", rustix::fs::Mode::from_raw_mode(0o700), rustix::fs::AtFlags::empty()).context("making /var/log/anemos root-only")?;
    let log = crate::redact::redact(&(inst.log)()).into_owned();
    root.write_file("var/log/anemos/install.log", log.as_bytes(), 0o600)?;
    root.write_file("var/log/anemos/plan.json", &serde_json::to_vec_pretty(&inst.plan)?, 0o600)?;
    log::info!("install log saved to {} (root only)", Path::new("/var/log/anemos/install.log").display());
    Ok(())
}

/// Loads the installed kernel for a direct kexec into it (`on_success=kexec`), with the
/// same command line its boot loader entry has.
pub fn load_new_kernel(inst: &mut Install) -> Result<()> {
    let release = bootloader::installed_kernels(&inst.root)?.pop().context("no kernel installed")?;
    let kernel = std::fs::File::open(inst.root.join(format!("boot/vmlinuz-{release}"))).context("opening the installed kernel")?;
    let initrd = std::fs::File::open(inst.root.join(format!("boot/initrd.img-{release}"))).ok();
    let root_uuid = inst.made.iter().find(|m| m.mountpoint.as_deref() == Some("/")).and_then(|m| m.fs.as_ref()).map(|f| f.uuid.clone()).context("no root filesystem")?;
    let cmdline = format!("root=UUID={root_uuid} ro {}", inst.cmdline());
    crate::sys::kexec_file_load(Some(&kernel), initrd.as_ref(), &cmdline, 0).with_context(|| format!("loading Linux {release} for kexec"))?;
    log::info!("Linux {release} loaded for kexec: {cmdline}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_saved_log_is_root_only_and_has_no_secret() {
        let base = std::env::temp_dir().join(format!("anemos-save-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("payload")).unwrap();
        std::fs::create_dir_all(base.join("root")).unwrap();
        let plan = crate::plan::tests::sample();
        let payload = crate::payload::Payload { dir: base.join("payload"), plan };
        crate::redact::register("db_password", b"correct-horse-battery\n");
        let log = Box::new(|| "[ 1.0] INFO provision: + echo correct-horse-battery\n".to_string());
        let mut inst = super::Install::new(payload, &base.join("root"), super::Where::Directory, "dir".into(), log);
        super::save_log(&mut inst).unwrap();
        let mode = |p: &str| std::fs::metadata(base.join("root").join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode("var/log/anemos"), mode("var/log/anemos/install.log"), mode("var/log/anemos/plan.json")), (0o700, 0o600, 0o600));
        let text = std::fs::read_to_string(base.join("root/var/log/anemos/install.log")).unwrap();
        assert!(!text.contains("correct-horse-battery") && text.contains("[secret db_password]"), "{text}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
