//! Stage two: packages streamed into the root and verified, apk's database and
//! configuration written, scripts and triggers run in the chroot; and [`finish`].

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::apk::{read_apk, Control};
use super::index::Package;
use super::installed::{self, Installed};
use super::Prepared;
use crate::packages::arch::hooks::fnmatch;
use crate::packages::chroot::{self, tail, Mounts};
use crate::packages::extract::{self, Kind, Root};
use crate::packages::fetch::progress::Progress;
use crate::packages::fetch::{pool, Expected, Fetcher, Spool};

#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub extract: extract::Options,
    /// Run the packages' scripts and triggers in the chroot.
    pub configure: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions { extract: extract::Options::default(), configure: true }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub packages: usize,
    pub bytes: u64,
    pub unpack_ms: u64,
    pub configure_ms: u64,
    pub total_ms: u64,
    /// Scripts run (`name.post-install`, …).
    pub scripts: Vec<String>,
    /// Triggers run, by package.
    pub triggers: Vec<String>,
    /// Triggers left for [`finish`].
    pub deferred: Vec<String>,
    /// Set when the target has no `/bin/sh`, so no script could run.
    pub no_shell: bool,
}

const DEFERRED: &str = "var/lib/anemos/alpine-deferred-triggers.json";
const EXEC: &str = "lib/apk/exec";

pub fn install(prepared: &Prepared, root: &Path, opts: &InstallOptions) -> Result<Report> {
    let t = Instant::now();
    std::fs::create_dir_all(root).with_context(|| format!("creating the target root {}", root.display()))?;
    let r = Root::open(root)?;
    for (dir, mode) in
        [("etc/apk/keys", 0o755), ("lib/apk/db", 0o755), ("var/cache/apk", 0o755), ("var/cache/misc", 0o755), ("tmp", 0o1777), ("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("run", 0o755)]
    {
        if !r.exists(dir) {
            let fd = r.dir_all(dir)?;
            rustix::fs::chmodat(&fd, ".", rustix::fs::Mode::from_raw_mode(mode), rustix::fs::AtFlags::empty())?;
        }
    }
    let mut report = Report { packages: prepared.packages.len(), bytes: prepared.download_size(), ..Report::default() };
    let pkgs = unpack_all(prepared, &r, &opts.extract)?;
    write_db(prepared, &r, &pkgs)?;
    report.unpack_ms = t.elapsed().as_millis() as u64;
    if opts.configure {
        let t = Instant::now();
        configure(&r, &pkgs, &mut report)?;
        report.configure_ms = t.elapsed().as_millis() as u64;
    }
    report.total_ms = t.elapsed().as_millis() as u64;
    log::info!("installed {} packages into {} in {:.1} s ({} scripts, {} triggers)", report.packages, root.display(), report.total_ms as f64 / 1000.0, report.scripts.len(), report.triggers.len());
    Ok(report)
}

fn unpack_all<'p>(prepared: &'p Prepared, root: &Root, opts: &extract::Options) -> Result<Vec<Installed<'p>>> {
    let fetcher = Fetcher::new(prepared.config.fetch.clone())?;
    let mut items: Vec<usize> = (0..prepared.packages.len()).collect();
    items.sort_by(|&a, &b| prepared.packages[b].size.cmp(&prepared.packages[a].size).then(a.cmp(&b)));
    let progress = Progress::new("packages", items.len() as u64, prepared.download_size());
    let opts = extract::Options { sha1: true, ..opts.clone() };
    let mut done = pool::run(&items, fetcher.config.parallel, |&i| {
        let p = &prepared.packages[i];
        let url = prepared.url(p);
        let r = (|| {
            let mut reader = fetcher.open(&url, Expected { size: (p.size > 0).then_some(p.size), sha256: None, limit: Some(MAX_PACKAGE) })?.with_progress(&progress);
            let mut spool = Spool::fill(&mut reader, if p.size > 0 { p.size } else { MAX_PACKAGE }, || root.spool_file(), "the package")?;
            // Everything checked first — the signature, the control segment the index
            // names, the data against its datahash — reading the data to nowhere …
            read_apk(spool.reader()?, |c| check_control(prepared, p, c), |_, data| Ok(io::copy(&mut capped(data, p), &mut io::sink())?))?;
            // … then the same verified bytes are unpacked.
            let (control, written) = read_apk(spool.reader()?, |_| Ok(()), |_, data| extract::unpack_tar(root, capped(data, p), &opts, &|_| None))?;
            Ok::<_, anyhow::Error>((i, Installed { package: p, control, written }))
        })()
        .with_context(|| format!("package {} {} ({url})", p.name, p.version));
        progress.item_done();
        r
    })?;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, x)| x).collect())
}

/// The largest package accepted when the index gives no size.
const MAX_PACKAGE: u64 = 4 << 30;

/// The data segment, capped by the installed size the index gives (`I:`).
fn capped<'a>(data: &'a mut dyn io::Read, p: &Package) -> extract::Capped<&'a mut dyn io::Read> {
    let limit = if p.installed_size > 0 { extract::unpacked_limit(p.installed_size) } else { MAX_PACKAGE * 8 };
    extract::Capped::new(data, limit, format!("the data of {}", p.name))
}

/// The control segment is the one the signed index names (`C:`), its signature (if any)
/// verifies with our keys, and `.PKGINFO` is the promised package. Runs before any data.
fn check_control(prepared: &Prepared, p: &Package, c: &Control) -> Result<()> {
    let named = match p.control_sha1()? {
        Some(want) if want != c.digests.sha1 => {
            bail!("checksum mismatch: the control segment is {}, the index says {}", installed::q1(&c.digests.sha1), p.checksum)
        }
        Some(_) => true,
        None => false,
    };
    match prepared.config.keys.check(&c.signatures, &c.digests)? {
        Ok(key) => log::debug!("{}: signed by {key}", p.name),
        Err(why) if named => log::debug!("{}: {why}; trusted through the signed index", p.name),
        Err(why) => bail!("{why}, and the index gives no checksum for it"),
    }
    if c.info("pkgname") != Some(p.name.as_str()) || c.info("pkgver") != Some(p.version.as_str()) {
        bail!("the package is {} {}, the index promised {} {}", c.info("pkgname").unwrap_or("?"), c.info("pkgver").unwrap_or("?"), p.name, p.version);
    }
    Ok(())
}

fn write_db(prepared: &Prepared, r: &Root, pkgs: &[Installed<'_>]) -> Result<()> {
    let db: String = pkgs.iter().map(installed::record).collect();
    r.write_file("lib/apk/db/installed", db.as_bytes(), 0o644)?;
    r.write_file("lib/apk/db/scripts.tar", &installed::scripts_tar(pkgs)?, 0o644)?;
    r.write_file("lib/apk/db/triggers", installed::triggers(pkgs).as_bytes(), 0o644)?;
    r.write_file("lib/apk/db/lock", b"", 0o600)?;
    let mut world: Vec<&str> = prepared.config.world.iter().map(String::as_str).collect();
    world.sort();
    world.dedup();
    r.write_file("etc/apk/world", format!("{}\n", world.join("\n")).as_bytes(), 0o644)?;
    let repos: String = prepared
        .config
        .repositories
        .iter()
        .map(|x| match &x.tag {
            Some(t) => format!("@{t} {}\n", x.url),
            None => format!("{}\n", x.url),
        })
        .collect();
    r.write_file("etc/apk/repositories", repos.as_bytes(), 0o644)?;
    r.write_file("etc/apk/arch", format!("{}\n", prepared.config.arch).as_bytes(), 0o644)?;
    for (name, data) in &prepared.config.keys.files {
        r.write_file(&format!("etc/apk/keys/{name}"), data, 0o644)?;
    }
    Ok(())
}

/// Runs one script of a package as apk does: written out with mode 0755 and executed
/// directly (its `#!` line names the shell) in the chroot, with the new version as `$1`.
fn run_script(r: &Root, i: &Installed<'_>, script: &str, args: &[&str]) -> Result<bool> {
    let Some(data) = i.control.script(script) else { return Ok(false) };
    let p = i.package;
    let path = format!("{EXEC}/{}-{}.{script}", p.name, p.version);
    r.write_file(&path, data, 0o755)?;
    let cmd = chroot::command(r.path(), &format!("/{path}"), args)?;
    let mut cmd = cmd;
    let (status, stdout, stderr) = crate::exec::output(&mut cmd).with_context(|| format!("running {script} of {}", p.name))?;
    r.remove(&path)?;
    for l in String::from_utf8_lossy(&stdout).lines().chain(String::from_utf8_lossy(&stderr).lines()) {
        log::info!("[{} {script}] {l}", p.name);
    }
    if !status.success() {
        bail!("{} {}: {script} failed ({status}):\n{}", p.name, p.version, tail(&stderr));
    }
    Ok(true)
}

fn configure(r: &Root, pkgs: &[Installed<'_>], report: &mut Report) -> Result<()> {
    if !r.resolves("bin/sh") {
        report.no_shell = true;
        let n = pkgs.iter().filter(|i| i.control.files.keys().any(|k| k.starts_with(".pre-") || k.starts_with(".post-") || k == ".trigger")).count();
        log::warn!("the target has no /bin/sh: the scripts of {n} packages were not run");
        return Ok(());
    }
    let _mounts = Mounts::setup(r)?;
    r.dir_all(EXEC)?;
    for phase in ["pre-install", "post-install"] {
        for i in pkgs {
            if run_script(r, i, phase, &[&i.package.version])? {
                report.scripts.push(format!("{}.{phase}", i.package.name));
            }
        }
    }
    // Triggers: each package's trigger runs once with the installed directories its
    // `triggers` globs match.
    let dirs: BTreeSet<String> = pkgs
        .iter()
        .flat_map(|i| i.written.iter())
        .filter_map(|w| match w.kind {
            Kind::Dir => Some(w.path.clone()),
            _ => w.path.rsplit_once('/').map(|(d, _)| if d.is_empty() { "/".to_string() } else { d.to_string() }),
        })
        .collect();
    let mut deferred = Vec::new();
    for i in pkgs {
        let (Some(script), Some(globs)) = (i.control.script("trigger"), i.control.info("triggers")) else { continue };
        let matched: Vec<String> = dirs.iter().filter(|d| globs.split_whitespace().any(|g| fnmatch(g.as_bytes(), d.as_bytes()))).cloned().collect();
        if matched.is_empty() {
            continue;
        }
        if i.package.name == "mkinitfs" || String::from_utf8_lossy(script).contains("mkinitfs") {
            deferred.push((i.package.name.clone(), i.package.version.clone(), script.to_vec(), matched));
            report.deferred.push(i.package.name.clone());
            continue;
        }
        let args: Vec<&str> = matched.iter().map(String::as_str).collect();
        run_script(r, i, "trigger", &args)?;
        report.triggers.push(i.package.name.clone());
    }
    if !deferred.is_empty() {
        r.write_file(DEFERRED, &serde_json::to_vec(&deferred)?, 0o644)?;
    }
    Ok(())
}

/// Runs the triggers [`install`] deferred (mkinitfs) with the directories they matched.
/// Returns the packages whose trigger ran.
pub fn finish(root: &Path) -> Result<Vec<String>> {
    let r = Root::open(root)?;
    if !r.exists(DEFERRED) {
        return Ok(Vec::new());
    }
    let deferred: Vec<(String, String, Vec<u8>, Vec<String>)> = serde_json::from_slice(&r.read_file(DEFERRED)?).with_context(|| format!("reading /{DEFERRED}"))?;
    let _mounts = Mounts::setup(&r)?;
    let mut ran = Vec::new();
    for (name, version, script, dirs) in deferred {
        let path = format!("{EXEC}/{name}-{version}.trigger");
        r.write_file(&path, &script, 0o755)?;
        let args: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let mut cmd = chroot::command(r.path(), &format!("/{path}"), &args)?;
        let (status, _, stderr) = crate::exec::output(&mut cmd).with_context(|| format!("running the trigger of {name}"))?;
        r.remove(&path)?;
        if !status.success() {
            bail!("the trigger of {name} failed ({status}):\n{}", tail(&stderr));
        }
        ran.push(name);
    }
    r.remove(DEFERRED)?;
    Ok(ran)
}
