//! The packages phases, per target distribution: indexes fetched, verified and resolved
//! before any disk is touched; then the install into the new root; and the new system's own
//! initramfs built once, at the end.

use std::path::PathBuf;

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{Install, Where};
use crate::bootloader;
use crate::packages::fetch::{self, FetchConfig};
use crate::packages::{alpine, arch, debian, profile};
use crate::plan::Target;

/// The resolved, verified package set of one distribution.
pub enum Prepared {
    Debian(debian::Prepared),
    Arch(arch::Prepared),
    Alpine(alpine::Prepared),
}

pub fn prepare(inst: &mut Install) -> Result<()> {
    if inst.set_clock {
        let mirror = inst.plan().mirror.url.clone();
        correct_clock(inst, &mirror);
    }
    let prepared = match &inst.plan().target {
        Target::Debian { suite } => Prepared::Debian(prepare_debian(inst, suite)?),
        Target::Arch => Prepared::Arch(arch::prepare(&arch_config(inst)?)?),
        Target::Alpine => Prepared::Alpine(alpine::prepare(&alpine_config(inst)?)?),
    };
    let (n, bytes) = match &prepared {
        Prepared::Debian(p) => (p.packages.len(), p.download_size()),
        Prepared::Arch(p) => (p.packages.len(), p.download_size()),
        Prepared::Alpine(p) => (p.packages.len(), p.download_size()),
    };
    log::info!("{n} packages, {} to download", crate::units::human_size(bytes));
    inst.packages = Some(prepared);
    Ok(())
}

/// Before the first index (or image) is fetched and any certificate is checked, the
/// server's `Date` moves the clock forward if it is behind (see [`crate::clock`]). Nothing
/// here stops the install: an unreachable server is reported by the fetch that follows,
/// with its retries and a better message.
pub fn correct_clock(inst: &Install, server: &str) {
    let Some(url) = fetch::origin(server) else {
        log::info!("clock: {server:?} is not an http(s) URL; the clock is not checked");
        return;
    };
    let config = FetchConfig { proxy: inst.plan().proxy.clone(), connect_timeout: Duration::from_secs(10), read_timeout: Duration::from_secs(10), ..FetchConfig::default() };
    let now = || crate::clock::format(std::time::SystemTime::now());
    match fetch::server_date(&config, &url) {
        Ok(Some(date)) => {
            if let Err(e) = crate::clock::correct_from_server(date, &url) {
                log::warn!("clock: {e:#}");
            }
        }
        Ok(None) => log::info!("clock: {url} sent no usable Date header; the clock stays at {}", now()),
        Err(e) => log::warn!("clock: asking {url} for the time: {e:#}; the clock stays at {}", now()),
    }
}

fn prepare_debian(inst: &Install, suite: &str) -> Result<debian::Prepared> {
    let mut sources = vec![debian::Source::parse(&format!("{} {suite} main", inst.plan().mirror.url), suite)?];
    if !profile::of(&inst.plan().target).rolling.contains(&suite) {
        sources.push(debian::Source::parse(&format!("{} {suite}-updates main", inst.plan().mirror.url), suite)?);
        if let Some(sec) = &inst.plan().mirror.security_url {
            sources.push(debian::Source::parse(&format!("{sec} {suite}-security main"), suite)?);
        }
    }
    let mut config = debian::Config::new(sources, keyring(inst)?);
    config.include = wanted_packages(inst);
    config.fetch.proxy = inst.plan().proxy.clone();
    log::info!("packages wanted besides the base system: {}", config.include.join(" "));
    debian::prepare(&config)
}

/// Arch: the project's pacman.conf (mirrorlist Includes that the installer does not have
/// fall back to the plan's mirror), the keyring the payload carries.
fn arch_config(inst: &Install) -> Result<arch::Config> {
    let conf_file = inst.payload.project_file("pacman.conf");
    let text = if conf_file.is_file() {
        std::fs::read_to_string(&conf_file).with_context(|| format!("reading {}", conf_file.display()))?
    } else {
        "[options]\nArchitecture = auto\nSigLevel = Required DatabaseOptional\n\n[core]\n\n[extra]\n".to_string()
    };
    let no_includes = |_: &str| -> Result<Vec<(String, String)>> { Ok(Vec::new()) };
    let conf = arch::PacmanConf::parse(&text, "pacman.conf", &no_includes)?;
    let targets = profile::of(&inst.plan().target).wanted(inst.plan(), &[], false);
    let mut config = arch::Config::new(conf, targets);
    config.conf_text = conf_file.is_file().then_some(text);
    config.default_server = Some(inst.plan().mirror.url.clone());
    let keyring = inst.payload.dir.join(crate::payload::KEYRINGS_DIR).join("pacman");
    config.keyring = keyring.is_dir().then_some(keyring);
    config.fetch.proxy = inst.plan().proxy.clone();
    Ok(config)
}

/// Alpine: the project's `repositories` (else the plan's mirror, latest-stable main and
/// community) and `keys/` (else the keys the payload carries).
fn alpine_config(inst: &Install) -> Result<alpine::Config> {
    let repos_file = inst.payload.project_file("repositories");
    let repositories = if repos_file.is_file() {
        alpine::parse_repositories(&std::fs::read_to_string(&repos_file)?)
    } else {
        let base = inst.plan().mirror.url.trim_end_matches('/');
        ["main", "community"].iter().map(|r| alpine::Repository { url: format!("{base}/latest-stable/{r}"), tag: None }).collect()
    };
    let keys_dir = inst.payload.project_file("keys");
    let keys_dir = if keys_dir.is_dir() { keys_dir } else { inst.payload.dir.join(crate::payload::KEYRINGS_DIR).join("apk") };
    let keys = alpine::Keys::load_dir(&keys_dir).with_context(|| format!("loading the apk keys in {}", keys_dir.display()))?;
    let world = profile::of(&inst.plan().target).wanted(inst.plan(), &[], false);
    let mut config = alpine::Config::new(repositories, keys, world);
    config.fetch.proxy = inst.plan().proxy.clone();
    Ok(config)
}

pub fn install(inst: &mut Install) -> Result<()> {
    // Maintainer scripts look for the host name before the system phase writes the rest of
    // the identity: postfix's postinst falls back to /etc/hostname and fails on an empty
    // name. The system phase writes it again with everything else.
    let etc = inst.root.join("etc");
    std::fs::create_dir_all(&etc).with_context(|| format!("creating {}", etc.display()))?;
    std::fs::write(etc.join("hostname"), format!("{}\n", inst.plan().hostname)).with_context(|| format!("writing {}/hostname", etc.display()))?;
    let (n, bytes, unpack, configure) = match inst.packages.as_ref().context("the indexes phase did not run")? {
        Prepared::Debian(p) => {
            let r = debian::install(p, &inst.root, &debian::InstallOptions::default())?;
            (r.packages, r.bytes, r.unpack_ms, r.configure_ms)
        }
        Prepared::Arch(p) => {
            let r = arch::install(p, &inst.root, &arch::InstallOptions::default())?;
            (r.packages, r.bytes, r.unpack_ms, r.configure_ms)
        }
        Prepared::Alpine(p) => {
            let r = alpine::install(p, &inst.root, &alpine::InstallOptions::default())?;
            (r.packages, r.bytes, r.unpack_ms, r.configure_ms)
        }
    };
    log::info!("installed {n} packages ({}): unpack {:.1} s, configure {:.1} s", crate::units::human_size(bytes), unpack as f64 / 1000.0, configure as f64 / 1000.0);
    Ok(())
}

/// The new system's initramfs. On a machine, only the modules this hardware needs go in
/// (`MODULES=dep`: the chroot sees this machine's /sys and the new root's mounts); in an
/// image, those of any machine (`MODULES=most`), and no resume device (the build host's
/// swap is nothing the image's hosts have).
pub fn initramfs(inst: &mut Install) -> Result<()> {
    let conf = match inst.place {
        Where::Disk { .. } => Some("# Written by anemos: the modules this machine's root needs.\nMODULES=dep\n"),
        Where::Image => Some("# Written by anemos: an image for any machine.\nMODULES=most\nRESUME=none\n"),
        Where::Directory => None,
    };
    if let Some(text) = conf.filter(|_| inst.root.join("etc/initramfs-tools").is_dir()) {
        let dir = inst.root.join("etc/initramfs-tools/conf.d");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("anemos.conf"), text)?;
    }
    // By the target, not by the packages phase: a host installed from an image has none
    // (its initramfs is made again when its layout needs it; check allows that for Debian only).
    match inst.plan().target {
        Target::Arch => arch::finish(&inst.root).map(drop),
        Target::Alpine => alpine::finish(&inst.root).map(drop),
        Target::Debian { .. } => debian::finish(&inst.root).map(drop),
    }
}

/// The plan's packages, plus what a bootable system needs that the plan did not name (a
/// kernel, the boot loader's packages: see the distribution's profile).
fn wanted_packages(inst: &Install) -> Vec<String> {
    let plan = inst.plan();
    let loaders: &[&str] = match inst.place {
        Where::Disk { uefi, .. } => profile::loader_packages(&plan.target, bootloader::choose(plan.bootloader, &plan.layout, uefi)),
        // An image boots on either firmware: the loader's packages for both.
        Where::Image => bootloader::image_packages(plan.bootloader, &plan.layout),
        Where::Directory => &[],
    };
    profile::of(&plan.target).wanted(plan, loaders, inst.place != Where::Directory)
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
