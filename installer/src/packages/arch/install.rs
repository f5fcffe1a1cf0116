//! Stage two: the target root from the prepared set, and [`finish`].

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use super::hooks::{self, builds_initramfs, Hook};
use super::localdb::{self, Validation, LOCAL};
use super::scripts::{run_hook, run_scriptlet};
use super::unpack::{unpack_all, Unpacked};
use super::{now, Prepared};
use crate::packages::chroot::Mounts;
use crate::packages::extract::{self, Root};

#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub extract: extract::Options,
    /// Run `.INSTALL` functions and hooks in the chroot. Off: stop after unpacking and
    /// registering (e.g. for another architecture, or tests as non-root).
    pub configure: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions { extract: extract::Options::default(), configure: true }
    }
}

/// What an install did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub packages: usize,
    pub bytes: u64,
    pub unpack_ms: u64,
    pub configure_ms: u64,
    pub total_ms: u64,
    /// `.INSTALL` functions run.
    pub scripts: usize,
    /// Hooks run, by file name.
    pub hooks: Vec<String>,
    /// Hooks left for [`finish`] (initramfs builders).
    pub deferred: Vec<String>,
    /// Set when the target has no `/bin/sh`, so no script or hook could run.
    pub no_shell: bool,
}

/// Where the deferred hooks and their targets wait for [`finish`] (JSON).
const DEFERRED: &str = "var/lib/anemos/arch-deferred-hooks.json";

/// Installs the prepared set into `root` (created if missing; normally empty).
pub fn install(prepared: &Prepared, root: &Path, opts: &InstallOptions) -> Result<Report> {
    let t = Instant::now();
    std::fs::create_dir_all(root).with_context(|| format!("creating the target root {}", root.display()))?;
    let r = Root::open(root)?;
    skeleton(&r)?;
    localdb::init(&r)?;
    let mut report = Report { packages: prepared.packages.len(), bytes: prepared.download_size(), ..Report::default() };
    let unpacked = unpack_all(prepared, &r, &opts.extract)?;
    let date = now(&prepared.config);
    for u in &unpacked {
        let p = &prepared.packages[u.index];
        let validation = Validation { sha256: p.sha256.is_some(), pgp: prepared.signatures[u.index].is_some() && prepared.keyring.is_some() };
        localdb::register(&r, u, prepared.explicit.contains(&p.name), validation, date)?;
    }
    write_config(prepared, &r)?;
    report.unpack_ms = t.elapsed().as_millis() as u64;
    if opts.configure {
        let t = Instant::now();
        configure(prepared, &r, &unpacked, &mut report)?;
        report.configure_ms = t.elapsed().as_millis() as u64;
    }
    report.total_ms = t.elapsed().as_millis() as u64;
    log::info!(
        "installed {} packages into {}: unpack {:.1} s, configure {:.1} s ({} scripts, {} hooks)",
        report.packages,
        root.display(),
        report.unpack_ms as f64 / 1000.0,
        report.configure_ms as f64 / 1000.0,
        report.scripts,
        report.hooks.len()
    );
    Ok(report)
}

/// The directories pacstrap(8) makes before pacman runs.
fn skeleton(r: &Root) -> Result<()> {
    for (dir, mode) in
        [("var/cache/pacman/pkg", 0o755), ("var/lib/pacman", 0o755), ("var/log", 0o755), ("dev", 0o755), ("run", 0o755), ("etc/pacman.d", 0o755), ("tmp", 0o1777), ("sys", 0o555), ("proc", 0o555)]
    {
        if !r.exists(dir) {
            let fd = r.dir_all(dir)?;
            rustix::fs::chmodat(&fd, ".", rustix::fs::Mode::from_raw_mode(mode), rustix::fs::AtFlags::empty()).with_context(|| format!("setting the mode of /{dir}"))?;
        }
    }
    Ok(())
}

/// The `pacman.conf` the install used, and a mirrorlist naming the plan's mirror.
fn write_config(prepared: &Prepared, r: &Root) -> Result<()> {
    if let Some(text) = &prepared.config.conf_text {
        r.write_file("etc/pacman.conf", text.as_bytes(), 0o644)?;
    }
    if let Some(server) = &prepared.config.default_server {
        let text = format!("# Written by anemos: the mirror the system was installed from.\nServer = {server}\n");
        r.write_file("etc/pacman.d/mirrorlist", text.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// `.INSTALL` functions in install order, the keyring, then the `PostTransaction` hooks.
fn configure(prepared: &Prepared, r: &Root, unpacked: &[Unpacked], report: &mut Report) -> Result<()> {
    let hooks = hooks::load(r)?;
    let with_script = unpacked.iter().filter(|u| u.install.is_some()).count();
    if !r.resolves("bin/sh") {
        report.no_shell = true;
        log::warn!("the target has no /bin/sh: {with_script} .INSTALL scripts and {} hooks were not run; the target's pacman runs none of them later", hooks.len());
        return Ok(());
    }
    let _mounts = Mounts::setup(r)?;
    for u in unpacked {
        let Some(script) = &u.install else { continue };
        let p = &prepared.packages[u.index];
        let text = String::from_utf8_lossy(&script.data);
        let path = format!("/{LOCAL}/{}-{}/install", p.name, p.version);
        for function in ["pre_install", "post_install"] {
            if run_scriptlet(r, &path, &text, function, &p.version, &p.name)? {
                report.scripts += 1;
            }
        }
    }
    if r.resolves("usr/bin/pacman-key") && r.resolves("usr/share/pacman/keyrings") {
        crate::packages::chroot::run(r.path(), "/usr/bin/pacman-key", &["--init"])?;
        crate::packages::chroot::run(r.path(), "/usr/bin/pacman-key", &["--populate"])?;
    }
    let names: Vec<String> = prepared.packages.iter().map(|p| p.name.clone()).collect();
    let mut paths: Vec<String> = unpacked.iter().flat_map(localdb::files_of).collect();
    paths.sort();
    let mut deferred: Vec<(String, Vec<String>)> = Vec::new();
    for (i, hook) in hooks.iter().enumerate().filter(|(_, h)| h.when_post) {
        let targets = hook.matches(&names, &paths);
        if targets.is_empty() {
            continue;
        }
        if let Some(d) = hook.depends.iter().find(|d| !prepared.packages.iter().any(|p| super::depend::Depend { name: d.to_string(), version: None }.satisfied_by(p))) {
            log::warn!("hook {}: its dependency {d} is not installed; not running it", hook.name);
            continue;
        }
        if builds_initramfs(hook) {
            deferred.push((hook.name.clone(), targets.into_iter().collect()));
            report.deferred.push(hook.name.clone());
            continue;
        }
        log::info!("({}/{}) {}", i + 1, hooks.len(), if hook.description.is_empty() { &hook.name } else { &hook.description });
        run_hook(r, hook, &targets)?;
        report.hooks.push(hook.name.clone());
    }
    if !deferred.is_empty() {
        r.write_file(DEFERRED, &serde_json::to_vec(&deferred)?, 0o644)?;
    }
    Ok(())
}

/// Runs the initramfs hooks [`install`] deferred (`mkinitcpio`, …) with the targets they
/// matched; call it after the bootloader and module configuration are written. Returns the
/// hooks it ran.
pub fn finish(root: &Path) -> Result<Vec<String>> {
    let r = Root::open(root)?;
    if !r.exists(DEFERRED) {
        log::info!("no deferred initramfs hook in {}", root.display());
        return Ok(Vec::new());
    }
    let deferred: Vec<(String, Vec<String>)> = serde_json::from_slice(&r.read_file(DEFERRED)?).with_context(|| format!("reading /{DEFERRED}"))?;
    let hooks: Vec<Hook> = hooks::load(&r)?;
    let _mounts = Mounts::setup(&r)?;
    let mut ran = Vec::new();
    for (name, targets) in deferred {
        let Some(hook) = hooks.iter().find(|h| h.name == name) else {
            log::warn!("the deferred hook {name} is gone from {}", root.display());
            continue;
        };
        let t = Instant::now();
        run_hook(&r, hook, &targets.into_iter().collect::<BTreeSet<_>>())?;
        log::info!("ran the deferred hook {name} in {:.1} s", t.elapsed().as_secs_f64());
        ran.push(name);
    }
    r.remove(DEFERRED)?;
    Ok(ran)
}
