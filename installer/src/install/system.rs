//! What makes the tree a system of its own: fstab by UUID (the new filesystems, swap, the
//! preserved disks, the plan's extra lines), crypttab ([`super::unlock`]), mdadm.conf
//! ([`super::raid`]), the host name, a fresh machine-id, and (from an image) its own ssh
//! host keys.

use anyhow::{Context, Result};

use super::{Install, Where};
use crate::files::root::RootDir;
use crate::fstab::{self, Entry};

pub fn run(inst: &mut Install) -> Result<()> {
    let root = RootDir::open(&inst.root)?;
    if matches!(inst.place, Where::Disk { .. }) {
        root.write_file("etc/fstab", fstab_text(inst).as_bytes(), 0o644)?;
        super::unlock::configure(inst, &root)?;
        super::raid::configure(inst, &root)?;
    }
    let host = &inst.plan().hostname;
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
        let opts = match (m.subvol_option(), m.options.as_str()) {
            (Some(subvol), "defaults") => subvol,
            (Some(subvol), o) => format!("{subvol},{o}"),
            (None, "defaults") => String::new(),
            (None, o) => o.to_string(),
        };
        entries.push(Entry::by_uuid(&fs.uuid, mp, fs.kind.name(), &opts));
    }
    for p in &inst.preserved {
        let spec = p.uuid.as_ref().map(|u| format!("UUID={u}")).unwrap_or_else(|| p.device.display().to_string());
        let opts = if p.options == "defaults" { "" } else { p.options.as_str() };
        let mut e = Entry::by_uuid("", &p.mountpoint, &p.fstype, opts);
        e.spec = spec;
        entries.push(e);
    }
    let extra: Vec<String> = inst.plan().mounts.iter().map(|m| format!("{}\t{}\t{}\t{}\t{}\t{}", m.spec, m.file, m.vfstype, m.options, m.freq, m.passno)).collect();
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
