//! Stage two: the target root from the prepared set, and [`finish`].

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use super::chroot::{self, Mounts};
use super::dpkgdb;
use super::index::Package;
use super::resolve::satisfies;
use super::scripts::run_preinsts;
use super::sources::render_deb822;
use super::unpack::{save_all, unpack_all};
use super::Prepared;
use crate::packages::extract::{self, Root};

/// How the work is split between us and the target's dpkg (see docs/architecture.md for
/// the measurements behind the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Everything unpacked in-process and registered in the dpkg database, then the
    /// pre-unpack scripts and `dpkg --configure -a` in the chroot.
    InProcess,
    /// The essential set unpacked in-process (unregistered, just enough for dpkg to run), then
    /// `dpkg --install` of the essential debs and of the rest (mmdebstrap's way).
    DpkgInstall,
}

#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub strategy: Strategy,
    pub extract: extract::Options,
    /// Run the maintainer scripts and dpkg in the chroot. Off: stop after unpacking and
    /// registering (`InProcess` only), e.g. for another architecture or for tests.
    pub configure: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions { strategy: Strategy::InProcess, extract: extract::Options::default(), configure: true }
    }
}

/// Timings of an install.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub packages: usize,
    pub bytes: u64,
    /// Download + verify + unpack (and registration).
    pub unpack_ms: u64,
    /// Maintainer scripts and dpkg in the chroot.
    pub configure_ms: u64,
    pub total_ms: u64,
}

/// Installs the prepared set into `root` (created if missing; normally empty). Afterwards
/// the system is configured, daemons were kept from starting, `update-initramfs` is still
/// diverted: call [`finish`] once the bootloader and module configuration are written.
pub fn install(prepared: &Prepared, root: &Path, opts: &InstallOptions) -> Result<Report> {
    let t = Instant::now();
    std::fs::create_dir_all(root).with_context(|| format!("creating the target root {}", root.display()))?;
    let r = Root::open(root)?;
    merged_usr(&r, &prepared.config.arch)?;
    dpkgdb::init(&r, &prepared.config.arch)?;
    let mut report = Report { packages: prepared.packages.len(), bytes: prepared.download_size(), ..Report::default() };
    match opts.strategy {
        Strategy::InProcess => in_process(prepared, &r, opts, &mut report)?,
        Strategy::DpkgInstall => dpkg_install(prepared, &r, opts, &mut report)?,
    }
    write_sources(prepared, &r)?;
    report.total_ms = t.elapsed().as_millis() as u64;
    log::info!(
        "installed {} packages into {}: unpack {:.1} s, configure {:.1} s, total {:.1} s",
        report.packages,
        root.display(),
        report.unpack_ms as f64 / 1000.0,
        report.configure_ms as f64 / 1000.0,
        report.total_ms as f64 / 1000.0
    );
    Ok(report)
}

fn in_process(prepared: &Prepared, r: &Root, opts: &InstallOptions, report: &mut Report) -> Result<()> {
    let t = Instant::now();
    let all: Vec<&Package> = prepared.packages.iter().collect();
    let unpacked = unpack_all(prepared, &all, r, &opts.extract)?;
    log::info!("registering {} packages in the dpkg database", unpacked.len());
    dpkgdb::register(r, &unpacked)?;
    report.unpack_ms = t.elapsed().as_millis() as u64;
    if !opts.configure {
        return Ok(());
    }
    let t = Instant::now();
    let _mounts = Mounts::setup(r)?;
    chroot::forbid_daemons(r)?;
    log::info!("running the pre-unpack maintainer scripts (preinst install)");
    let n = run_preinsts(r, &unpacked, &prepared.config.arch)?;
    log::info!("ran {n} preinst scripts");
    chroot::divert_initramfs(r)?;
    log::info!("configuring {} packages with the target's dpkg", unpacked.len());
    chroot::run_dpkg_with_progress(r.path(), &["--configure", "-a", "--force-unsafe-io"], unpacked.len() as u64)?;
    chroot::allow_daemons(r)?;
    report.configure_ms = t.elapsed().as_millis() as u64;
    Ok(())
}

fn dpkg_install(prepared: &Prepared, r: &Root, opts: &InstallOptions, report: &mut Report) -> Result<()> {
    let t = Instant::now();
    let all: Vec<&Package> = prepared.packages.iter().collect();
    let dir = "var/cache/apt/archives";
    let essential = essential_closure(prepared)?;
    let debs = save_all(prepared, &all, r, dir, &|p| essential.contains(&p.name), &opts.extract)?;
    report.unpack_ms = t.elapsed().as_millis() as u64;
    let t = Instant::now();
    let _mounts = Mounts::setup(r)?;
    chroot::forbid_daemons(r)?;
    let (essential, rest): (Vec<(&Package, &String)>, Vec<_>) = all.iter().copied().zip(&debs).partition(|(p, _)| essential.contains(&p.name));
    let install = |set: &[(&Package, &String)], extra: &[&str]| -> Result<()> {
        let mut args = vec!["--install", "--force-unsafe-io"];
        args.extend_from_slice(extra);
        args.extend(set.iter().map(|(_, d)| d.as_str()));
        chroot::run_dpkg_with_progress(r.path(), &args, set.len() as u64)
    };
    install(&essential, &["--force-depends"])?;
    chroot::divert_initramfs(r)?;
    // dpkg --install does not order its arguments by Pre-Depends (apt does): install in
    // batches, each free of pre-dependencies on its own members.
    let native = prepared.config.arch.as_str();
    let mut batch: Vec<(&Package, &String)> = Vec::new();
    for item in order_by_dependencies(&rest, native)? {
        let pre = item.0.pre_depends()?;
        if pre.iter().any(|g| g.iter().any(|rel| batch.iter().any(|(q, _)| satisfies(q, rel, native)))) {
            install(&batch, &[])?;
            batch.clear();
        }
        batch.push(item);
    }
    if !batch.is_empty() {
        install(&batch, &[])?;
    }
    for d in &debs {
        r.remove(d)?;
    }
    chroot::allow_daemons(r)?;
    report.configure_ms = t.elapsed().as_millis() as u64;
    Ok(())
}

/// `items` ordered so that each comes after what it (pre-)depends on within them.
fn order_by_dependencies<'a>(items: &[(&'a Package, &'a String)], native: &str) -> Result<Vec<(&'a Package, &'a String)>> {
    let mut deps = Vec::new();
    for (p, _) in items {
        let mut d = Vec::new();
        for group in p.pre_depends()?.iter().chain(&p.depends()?) {
            if let Some(j) = items.iter().position(|(q, _)| group.iter().any(|rel| satisfies(q, rel, native))) {
                d.push(j);
            }
        }
        deps.push(d);
    }
    let mut order = Vec::new();
    let mut state = vec![0u8; items.len()];
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], order: &mut Vec<usize>) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        for &j in &deps[i] {
            visit(j, deps, state, order);
        }
        order.push(i);
    }
    for i in 0..items.len() {
        visit(i, &deps, &mut state, &mut order);
    }
    Ok(order.into_iter().map(|i| items[i]).collect())
}

/// The `Essential: yes` packages and everything they (pre-)depend on within the set: what
/// must be unpacked for dpkg and the maintainer scripts' shell to run at all.
fn essential_closure(prepared: &Prepared) -> Result<HashSet<String>> {
    let pkgs = &prepared.packages;
    let native = prepared.config.arch.as_str();
    let mut set: HashSet<String> = pkgs.iter().filter(|p| p.essential).map(|p| p.name.clone()).collect();
    let mut queue: Vec<&Package> = pkgs.iter().filter(|p| p.essential).collect();
    while let Some(p) = queue.pop() {
        for group in p.pre_depends()?.iter().chain(&p.depends()?) {
            let found = group.iter().find_map(|rel| pkgs.iter().find(|q| satisfies(q, rel, native)));
            if let Some(q) = found {
                if set.insert(q.name.clone()) {
                    queue.push(q);
                }
            }
        }
    }
    Ok(set)
}

/// Merged /usr as debootstrap creates it for bookworm and later: `/bin`, `/sbin`, `/lib` (and
/// the architecture's extra library directories) are symlinks into `/usr`, made before any
/// package is unpacked so that packages unpack through them.
fn merged_usr(r: &Root, arch: &str) -> Result<()> {
    let extra: &[&str] = match arch {
        "amd64" => &["lib32", "lib64", "libx32"],
        "i386" => &["lib64", "libx32"],
        "mips64el" | "mipsel" => &["lib32", "lib64", "libo32"],
        "ppc64el" | "s390x" | "arm64" | "riscv64" | "loong64" => &["lib64"],
        _ => &[],
    };
    for d in ["bin", "sbin", "lib"].iter().chain(extra) {
        r.dir_all(&format!("usr/{d}"))?;
        if !r.exists(d) {
            r.symlink(&extract::InRoot::parse(d)?, &format!("usr/{d}"))?;
        }
    }
    Ok(())
}

/// `/etc/apt/sources.list.d/debian.sources` naming the mirrors used, signed by the keyring
/// that verified them: the target's own copy from debian-archive-keyring if it is the same
/// file, else a copy in `/etc/apt/keyrings/`.
fn write_sources(prepared: &Prepared, r: &Root) -> Result<()> {
    let name = prepared.config.keyring.file_name().and_then(|n| n.to_str()).unwrap_or("archive-keyring.gpg").to_string();
    let shipped = format!("/usr/share/keyrings/{name}");
    let signed_by = if r.read_file(&shipped).is_ok_and(|k| k == prepared.keyring_bytes) {
        shipped
    } else {
        let copy = format!("/etc/apt/keyrings/{name}");
        r.write_file(&copy, &prepared.keyring_bytes, 0o644)?;
        copy
    };
    let text = render_deb822(&prepared.config.sources, &signed_by);
    r.write_file("etc/apt/sources.list.d/debian.sources", text.as_bytes(), 0o644)?;
    r.remove("etc/apt/sources.list")
}

/// Restores `update-initramfs` (where the package path diverted it) and, if the target has
/// it, builds the initramfs of every installed kernel once (`update-initramfs -c -k all`):
/// after the package path, or again on a host installed from an image. Returns whether it
/// built one.
pub fn finish(root: &Path) -> Result<bool> {
    let r = Root::open(root)?;
    let _mounts = Mounts::setup(&r)?;
    if !chroot::restore_initramfs(&r)? {
        log::info!("no update-initramfs in {}: no initramfs to build", root.display());
        return Ok(false);
    }
    if !r.exists("boot") || std::fs::read_dir(root.join("lib/modules")).map(|mut d| d.next().is_none()).unwrap_or(true) {
        log::info!("no kernel installed in {}: no initramfs to build", root.display());
        return Ok(false);
    }
    let t = Instant::now();
    chroot::run(root, "update-initramfs", &["-c", "-k", "all"])?;
    log::info!("built the initramfs in {:.1} s", t.elapsed().as_secs_f64());
    Ok(true)
}
