//! The packages phases, per target distribution: indexes fetched, verified and resolved
//! before any disk is touched; then the install into the new root; and the new system's own
//! initramfs built once, at the end.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{Install, Where};
use crate::bootloader;
use crate::packages::debian;
use crate::plan::{Bootloader, Target};

pub use debian::Prepared;

/// Releases that have no `-updates` or `-security` suites.
const ROLLING: &[&str] = &["unstable", "sid", "experimental", "rc-buggy"];

pub fn prepare(inst: &mut Install) -> Result<()> {
    let Target::Debian { suite } = &inst.plan.target else {
        bail!("target {} is not supported by this build's packages step", inst.plan.target.name());
    };
    let mut sources = vec![debian::Source::parse(&format!("{} {suite} main", inst.plan.mirror.url), suite)?];
    if !ROLLING.contains(&suite.as_str()) {
        sources.push(debian::Source::parse(&format!("{} {suite}-updates main", inst.plan.mirror.url), suite)?);
        if let Some(sec) = &inst.plan.mirror.security_url {
            sources.push(debian::Source::parse(&format!("{sec} {suite}-security main"), suite)?);
        }
    }
    let mut config = debian::Config::new(sources, keyring(inst)?);
    config.include = wanted_packages(inst);
    config.fetch.proxy = inst.plan.proxy.clone();
    log::info!("packages wanted besides the base system: {}", config.include.join(" "));
    let prepared = debian::prepare(&config)?;
    log::info!(
        "{} packages, {} to download",
        prepared.packages.len(),
        crate::disk::human_size(prepared.download_size())
    );
    inst.packages = Some(prepared);
    Ok(())
}

pub fn install(inst: &mut Install) -> Result<()> {
    let prepared = inst.packages.as_ref().context("the indexes phase did not run")?;
    let report = debian::install(prepared, &inst.root, &debian::InstallOptions::default())?;
    log::info!(
        "installed {} packages ({}): unpack {:.1} s, configure {:.1} s",
        report.packages,
        crate::disk::human_size(report.bytes),
        report.unpack_ms as f64 / 1000.0,
        report.configure_ms as f64 / 1000.0
    );
    Ok(())
}

/// The new system's initramfs. On a machine, only the modules this hardware needs go in
/// (`MODULES=dep`: the chroot sees this machine's /sys and the new root's mounts).
pub fn initramfs(inst: &mut Install) -> Result<()> {
    if matches!(inst.place, Where::Disk { .. }) {
        let conf = inst.root.join("etc/initramfs-tools/conf.d");
        if inst.root.join("etc/initramfs-tools").is_dir() {
            std::fs::create_dir_all(&conf)?;
            std::fs::write(conf.join("anemos.conf"), "# Written by anemos: the modules this machine's root needs.\nMODULES=dep\n")?;
        }
    }
    debian::finish(&inst.root)?;
    Ok(())
}

/// The plan's packages, plus what a bootable system needs that the plan did not name: a
/// kernel and the boot loader's packages.
fn wanted_packages(inst: &Install) -> Vec<String> {
    let mut want = inst.plan.packages.clone();
    let Where::Disk { uefi, .. } = inst.place else { return want };
    if !want.iter().any(|p| p.starts_with("linux-image")) {
        log::info!("the plan names no kernel: adding linux-image-amd64");
        want.push("linux-image-amd64".into());
    }
    let kind = match inst.plan.bootloader {
        Bootloader::SystemdBoot => Some(bootloader::Kind::SystemdBoot),
        Bootloader::Grub if uefi && has_esp(inst) => Some(bootloader::Kind::GrubEfi),
        Bootloader::Grub => Some(bootloader::Kind::GrubBios),
        Bootloader::None => None,
    };
    for p in kind.map(bootloader::packages).unwrap_or(&[]) {
        if !want.iter().any(|w| w == p) {
            want.push(p.to_string());
        }
    }
    want
}

fn has_esp(inst: &Install) -> bool {
    inst.plan.layout.partitions.iter().any(|p| p.kind == crate::plan::PartKind::Esp)
}

/// The archive keyring: the payload's copy (the installer has no other), else the host's.
fn keyring(inst: &Install) -> Result<PathBuf> {
    let name = "debian-archive-keyring.gpg";
    let in_payload = inst.payload.dir.join(crate::payload::KEYRINGS_DIR).join(name);
    if in_payload.is_file() {
        return Ok(in_payload);
    }
    let host = PathBuf::from("/usr/share/keyrings").join(name);
    if host.is_file() {
        return Ok(host);
    }
    bail!("no Debian archive keyring: the payload has no keyrings/{name} and this system has no {}", host.display())
}
