//! The whole install: `anemos test examples/debian-minimal` phase by phase (from the
//! installer's own log lines and events, a TCG guest of 2 vCPUs and 1 GiB), beside the same
//! package set bootstrapped on the host by mmdebstrap (the baseline) and by `anemos bootstrap`
//! (the same engine without the VM), all from the host's apt sources through the caching
//! proxy, warm. Then the least guest memory with which `anemos image` completes
//! (`install_memory.rs`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anemos_tests::mirror::MirrorProxy;
use anemos_tests::unmount_below;
use anyhow::{bail, Context, Result};
use installer::event::Event;

use crate::report::table;
use crate::util::{anemos_bin, measured, scratch, sh, workspace};

const SUITE: &str = "bookworm";
const EXAMPLE: &str = "examples/debian-minimal";

/// Timings of one tool, in seconds, by row name (see [`ROWS`]).
type Timings = BTreeMap<&'static str, f64>;

/// The rows of the phase table: (key, label).
const ROWS: &[(&str, &str)] = &[
    ("ready", "initramfs boot: kernel start → installer ready"),
    ("check", "check (plan against the disks)"),
    ("indexes", "fetch: indexes (verify, resolve, probe)"),
    ("disks", "disks (partition, mkfs, mount)"),
    ("download", "fetch: packages (download)"),
    ("unpack", "unpack (+ dpkg database)"),
    ("streamed", "  download + unpack, streamed together"),
    ("configure", "configure (preinst, dpkg --configure)"),
    ("files", "files, system, provision()"),
    ("initramfs", "initramfs (update-initramfs, once)"),
    ("bootloader", "bootloader"),
    ("finish", "log, unmount, power off"),
    ("install", "install, total (guest: first to last phase)"),
    ("image", "anemos image, wall (VM start to image)"),
    ("login", "reboot from the image → login prompt"),
    ("total", "total wall"),
];

pub fn run() -> Result<()> {
    let proxy = MirrorProxy::start(0)?;
    let sources = proxy.sources_for(SUITE)?;
    let mirror = sources.first().context("no Debian source on this host")?.uri.clone();
    let security = sources.iter().find(|s| s.suite.ends_with("-security")).map(|s| s.uri.clone());
    println!("   mirror: {mirror} (the host's apt sources through the caching proxy), suite {SUITE}");
    let parts = parts()?;
    // Parts run alone get their own scratch directory: a memory bisection (which holds the
    // VM lock) and a host-only run may go on at once.
    let dir = scratch(&if parts.len() == 3 { "install".to_string() } else { format!("install-{}", parts.join("-")) })?;
    let project = project_copy(&dir)?;
    let mut mirror_args = vec!["--mirror".to_string(), mirror.clone()];
    if let Some(s) = &security {
        mirror_args.extend(["--security-mirror".to_string(), s.clone()]);
    }
    let specs: Vec<String> = sources.iter().map(|s| format!("{} {} {}", s.uri, s.suite, s.components.join(" "))).collect();
    let include = warm(&dir, &project, &specs)?;
    let ours = if parts.contains(&"guest") {
        let (t, asked) = anemos_test(&dir, &project, &mirror_args)?;
        if asked != include {
            println!("   note: the install asked for {}, the host runs use {}", asked.join(" "), include.join(" "));
        }
        t
    } else {
        Timings::new()
    };
    if parts.contains(&"host") {
        let native = anemos_bootstrap(&dir, &specs, &include)?;
        let mm = mmdebstrap(&dir, &specs, &include)?;
        print_table(&ours, &native, &mm);
    }
    if parts.contains(&"memory") {
        crate::install_memory::run(&dir, &project, &mirror_args)?;
    }
    Ok(())
}

/// The parts to run, from `ANEMOS_BENCH_INSTALL` (comma-separated `guest`, `host`, `memory`;
/// default all): the guest install, the host baselines, the memory bisection.
fn parts() -> Result<Vec<&'static str>> {
    const ALL: [&str; 3] = ["guest", "host", "memory"];
    let Ok(wanted) = std::env::var("ANEMOS_BENCH_INSTALL") else { return Ok(ALL.to_vec()) };
    let mut out = Vec::new();
    for w in wanted.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match ALL.iter().find(|a| **a == w) {
            Some(a) => out.push(*a),
            None => bail!("ANEMOS_BENCH_INSTALL={wanted}: {w:?} is not a part; the parts are guest, host, memory"),
        }
    }
    Ok(out)
}

/// A copy of the example with a fresh ssh key for its demo user.
fn project_copy(dir: &Path) -> Result<PathBuf> {
    let project = dir.join("project");
    sh(&format!("cp -a {}/. {}", workspace().join(EXAMPLE).display(), project.display()))?;
    let key = dir.join("id_ed25519");
    sh(&format!("ssh-keygen -q -t ed25519 -N '' -f {}", key.display()))?;
    std::fs::copy(key.with_extension("pub"), project.join("files/home/demo/.ssh/authorized_keys"))?;
    Ok(project)
}

/// An untimed `anemos bootstrap` of the example's packages (and its boot loader's) fills
/// the proxy's cache, so that no tool below pays for the network. Returns those requests
/// (what the install asks for besides minbase).
fn warm(dir: &Path, project: &Path, specs: &[String]) -> Result<Vec<String>> {
    let checked = installer::imgbuild::check(project, &installer::imgbuild::CheckOptions::default());
    let plan = checked.plan.context("the example does not pass `anemos check`")?;
    let mut include = plan.packages.clone();
    include.extend(installer::bootloader::packages(installer::bootloader::Kind::SystemdBoot).iter().map(|p| p.to_string()));
    let root = fresh(dir, "warm")?;
    let mut cmd = format!("{} bootstrap {} --suite {SUITE} --proxy '' --no-initramfs --include {}", anemos_bin().display(), root.display(), include.join(","));
    for s in specs {
        cmd += &format!(" --mirror '{s}'");
    }
    println!("   warming the proxy's cache (an untimed anemos bootstrap of the same packages) …");
    sh(&cmd).context("warming the mirror cache")?;
    fresh(dir, "warm")?;
    Ok(include)
}

/// `anemos test` of the project: the phase timings and the packages it asked for.
fn anemos_test(dir: &Path, project: &Path, mirror_args: &[String]) -> Result<(Timings, Vec<String>)> {
    let out = dir.join("test");
    let log = out.join("install.log");
    let mut cmd = vec![anemos_bin().display().to_string(), "test".into(), project.display().to_string(), "-o".into(), out.display().to_string()];
    cmd.extend(mirror_args.iter().cloned());
    cmd.extend(["--log".into(), log.display().to_string()]);
    println!("   anemos test {EXAMPLE} (TCG, 1 GiB) …");
    let t = Instant::now();
    let stdout = sh(&cmd.join(" ")).context("anemos test of the example")?;
    let total = t.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let mut t = guest_phases(&text)?;
    t.insert("total", total);
    let login = stdout.lines().find_map(|l| l.split("seen after ").nth(1)).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok());
    t.insert("login", login.context("anemos test printed no \"seen after N s of boot\"")?);
    t.insert("image", total - t["login"]);
    let include = text
        .lines()
        .find_map(|l| l.split("packages wanted besides the base system: ").nth(1))
        .context("the install log does not say which packages were wanted")?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let _ = std::fs::remove_file(out.join("debian-minimal.img"));
    Ok((t, include))
}

/// The installer's timings from its console log: `[finished] PHASE in N s` lines, the ready
/// event, and the packages phase's own split.
fn guest_phases(log: &str) -> Result<Timings> {
    let mut phase: BTreeMap<String, f64> = BTreeMap::new();
    let mut t = Timings::new();
    for line in log.lines() {
        if let Some((name, secs)) = line.split("[finished] ").nth(1).and_then(|r| r.split_once(" in ")) {
            if let Some(s) = secs.trim().strip_suffix(" s").and_then(|s| s.parse::<f64>().ok()) {
                phase.insert(name.to_string(), s);
            }
        }
        match Event::parse_line(line) {
            Some(Event::Ready { uptime_ms, .. }) => {
                t.insert("ready", uptime_ms as f64 / 1000.0);
            }
            Some(Event::Done { ms }) => {
                t.insert("install", ms as f64 / 1000.0);
            }
            _ => {}
        }
    }
    let get = |n: &str| phase.get(n).copied().unwrap_or(0.0);
    for key in ["check", "indexes", "disks", "initramfs", "bootloader"] {
        t.insert(key, get(key));
    }
    t.insert("files", get("files") + get("system") + get("provision"));
    t.insert("finish", get("log") + get("unmount"));
    packages_split(log, &mut t)?;
    Ok(t)
}

/// From the packages phase's log lines: `unpack X s, configure Y s` (unpack includes the
/// downloads it streams) and the share of the workers' time spent waiting for the mirror,
/// which splits the streamed time into download and unpack.
fn packages_split(log: &str, t: &mut Timings) -> Result<()> {
    let secs_after = |line: &str, key: &str| -> Option<f64> { line.split(key).nth(1)?.split_whitespace().next()?.parse().ok() };
    let line = log.lines().find(|l| l.contains("installed ") && l.contains(": unpack ")).context("no `installed … unpack … configure …` line in the log")?;
    let unpack = secs_after(line, ": unpack ").context("no unpack time")?;
    t.insert("configure", secs_after(line, "configure ").context("no configure time")?);
    t.insert("streamed", unpack);
    let share = log.lines().find(|l| l.contains("waited for the mirror")).and_then(|l| l.rsplit('(').next()).and_then(|r| r.split('%').next()).and_then(|p| p.parse::<f64>().ok()).map(|p| p / 100.0);
    if let Some(share) = share {
        t.insert("download", unpack * share);
        t.insert("unpack", unpack * (1.0 - share));
    }
    Ok(())
}

/// `anemos bootstrap` of the same requests into a directory on the host.
fn anemos_bootstrap(dir: &Path, specs: &[String], include: &[String]) -> Result<Timings> {
    let root = fresh(dir, "anemos-bootstrap")?;
    let bin = anemos_bin();
    let mut cmd: Vec<String> = vec![bin.display().to_string(), "bootstrap".into(), root.display().to_string(), "--suite".into(), SUITE.into(), "--proxy".into(), String::new()];
    for s in specs {
        cmd.extend(["--mirror".to_string(), s.clone()]);
    }
    cmd.extend(["--include".to_string(), include.join(",")]);
    println!("   anemos bootstrap (host) …");
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let log = dir.join("anemos-bootstrap.log");
    let (secs, _) = measured(&refs, &log)?;
    let text = std::fs::read_to_string(log.with_extension("err"))?;
    let mut t = Timings::new();
    t.insert("total", secs);
    let after = |key: &str| text.lines().find_map(|l| l.split(key).nth(1)?.split_whitespace().next()?.trim_end_matches(',').parse::<f64>().ok());
    if let Some(s) = text.lines().find(|l| l.contains("prepared ") && l.contains(" to download, in ")).and_then(|l| l.rsplit(" in ").next()).and_then(|r| r.trim().trim_end_matches(" s").parse().ok())
    {
        t.insert("indexes", s);
    }
    if let Some(s) = after("built the initramfs in ") {
        t.insert("initramfs", s);
    }
    packages_split(&text, &mut t)?;
    fresh(dir, "anemos-bootstrap")?;
    Ok(t)
}

/// mmdebstrap of the same requests: its `I:` progress lines, timed as they arrive, split
/// its run into the same rows.
fn mmdebstrap(dir: &Path, specs: &[String], include: &[String]) -> Result<Timings> {
    let root = fresh(dir, "mmdebstrap")?;
    let inc = format!("--include={}", include.join(","));
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase", "--mode=root", &inc, SUITE]).arg(&root);
    cmd.args(specs.iter().map(|s| format!("deb {s}")));
    println!("   mmdebstrap --variant=minbase {inc} (host) …");
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).env_remove("http_proxy").spawn().context("running mmdebstrap (make setup installs it)")?;
    let mut marks: Vec<(f64, String)> = Vec::new();
    let mut all = String::new();
    for line in BufReader::new(child.stderr.take().context("mmdebstrap's stderr")?).lines() {
        let line = line?;
        all += &line;
        all.push('\n');
        marks.push((start.elapsed().as_secs_f64(), line));
    }
    let status = child.wait()?;
    let total = start.elapsed().as_secs_f64();
    std::fs::write(dir.join("mmdebstrap.log"), &all)?;
    if !status.success() {
        bail!("mmdebstrap failed ({status}); see {}", dir.join("mmdebstrap.log").display());
    }
    fresh(dir, "mmdebstrap")?;
    Ok(mmdebstrap_rows(&marks, total))
}

/// mmdebstrap's stages by the `I:` line that starts each: apt-get update (indexes), apt's
/// download, extracting the essential set, then dpkg installing (essential, then the rest:
/// unpack and configure together, the kernel's initramfs build included).
fn mmdebstrap_rows(marks: &[(f64, String)], total: f64) -> Timings {
    let at = |needle: &str| marks.iter().find(|(_, l)| l.starts_with("I: ") && l.contains(needle)).map(|(t, _)| *t);
    let span = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    let update = at("running apt-get update");
    let download = at("downloading packages");
    let extract = at("extracting archives");
    let install = at("installing essential packages");
    let cleanup = at("cleaning package lists").or(Some(total));
    let mut t = Timings::new();
    t.insert("total", total);
    for (key, v) in [("indexes", span(update, download)), ("download", span(download, extract)), ("unpack", span(extract, install)), ("configure", span(install, cleanup))] {
        if let Some(v) = v {
            t.insert(key, v);
        }
    }
    t
}

fn fresh(dir: &Path, name: &str) -> Result<PathBuf> {
    let d = dir.join(name);
    unmount_below(&d);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d.join("root"))
}

fn print_table(ours: &Timings, native: &Timings, mm: &Timings) {
    let cell = |t: &Timings, k: &str| t.get(k).map(|s| format!("{s:.1} s")).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = ROWS.iter().map(|(k, label)| vec![label.to_string(), cell(ours, k), cell(native, k), cell(mm, k)]).collect();
    println!("\n   phases of `anemos test {EXAMPLE}` beside the same package set bootstrapped on the host:");
    table(&["phase", "anemos test (TCG guest)", "anemos bootstrap (host)", "mmdebstrap (host)"], &rows);
    println!("   download and unpack overlap (streamed): they are the streamed time split by the share of the");
    println!("   workers' time spent waiting for the mirror. mmdebstrap's configure row is dpkg installing");
    println!("   everything after the essential set (unpack and configure, the initramfs build included).");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_phases_come_from_finished_lines_events_and_the_packages_split() {
        let log = "\
[     1.0] INFO  [finished] indexes in 12.50 s
ANEMOS-EVENT {\"event\":\"ready\",\"uptime_ms\":10606,\"kernel\":\"k\",\"mode\":\"install\",\"modules_loaded\":1,\"block_devices\":[]}
[     2.0] INFO  [finished] disks in 1.25 s
[     3.0] INFO  streamed 10 packages (5.0 MiB) in 40.0 s: the workers waited for the mirror 10.0 s of 80.0 s (25%) on 4 workers
[     4.0] INFO  installed 10 packages into /target: unpack 40.0 s, configure 20.5 s, total 61.0 s
[     5.0] INFO  [finished] files in 1.00 s
[     5.0] INFO  [finished] provision in 2.00 s
ANEMOS-EVENT {\"event\":\"done\",\"ms\":120000}
";
        let t = guest_phases(log).unwrap();
        assert_eq!(t["indexes"], 12.5);
        assert_eq!(t["ready"], 10.606);
        assert_eq!(t["disks"], 1.25);
        assert_eq!(t["streamed"], 40.0);
        assert_eq!(t["download"], 10.0);
        assert_eq!(t["unpack"], 30.0);
        assert_eq!(t["configure"], 20.5);
        assert_eq!(t["files"], 3.0);
        assert_eq!(t["install"], 120.0);
        assert!(guest_phases("[finished] indexes in 1 s\n").is_err(), "a log without the packages split is an error");
    }

    #[test]
    fn mmdebstrap_stages_are_the_spans_between_its_progress_lines() {
        let marks: Vec<(f64, String)> = [
            (0.5, "I: automatically chosen format: directory"),
            (1.0, "I: running apt-get update..."),
            (3.0, "I: downloading packages with apt..."),
            (10.0, "I: extracting archives..."),
            (14.0, "I: installing essential packages..."),
            (50.0, "I: cleaning package lists and apt cache..."),
        ]
        .iter()
        .map(|(t, l)| (*t, l.to_string()))
        .collect();
        let t = mmdebstrap_rows(&marks, 52.0);
        assert_eq!((t["indexes"], t["download"], t["unpack"], t["configure"], t["total"]), (2.0, 7.0, 4.0, 36.0, 52.0));
        assert!(!mmdebstrap_rows(&marks[..2], 5.0).contains_key("download"));
    }
}
