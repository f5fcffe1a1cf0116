//! The least guest memory with which `anemos image` of the example completes: a bisection
//! between 128 and 1024 MiB to a 32 MiB resolution, the goal (256 MiB) tried first, beside
//! the goal and what the peers document (nixos-anywhere: at least 1 GiB).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::report::table;
use crate::util::{anemos_bin, sh};

pub const LOW: u32 = 128;
pub const HIGH: u32 = 1024;
const RESOLUTION: u32 = 32;
pub const GOAL: u32 = 256;
/// A probe that takes longer than this is stopped and counted as failed (a guest out of
/// memory may hang rather than fail).
const PROBE_TIMEOUT_S: u64 = 1200;

/// One probe: the memory, whether the install completed, its wall time and why it failed.
struct Probe {
    mib: u32,
    ok: bool,
    secs: f64,
    why: String,
}

pub fn run(dir: &Path, project: &Path, mirror_args: &[String]) -> Result<()> {
    println!("\n   least guest memory for `anemos image` (bisection {LOW}–{HIGH} MiB, {RESOLUTION} MiB steps; the goal {GOAL} MiB first):");
    let mut probes: Vec<Probe> = Vec::new();
    let found = bisect(|mib| {
        let out = dir.join(format!("mem-{mib}"));
        let t = Instant::now();
        let result = image(project, &out, mirror_args, mib);
        let p = Probe { mib, ok: result.is_ok(), secs: t.elapsed().as_secs_f64(), why: result.err().map(|e| why(&e, &out)).unwrap_or_default() };
        println!("   {mib:>5} MiB: {} in {:.0} s{}", if p.ok { "completed" } else { "failed" }, p.secs, if p.ok { String::new() } else { format!(" ({})", p.why) });
        let ok = p.ok;
        probes.push(p);
        if ok {
            let _ = std::fs::remove_dir_all(&out);
        }
        ok
    });
    probes.sort_by_key(|p| p.mib);
    let rows: Vec<Vec<String>> = probes.iter().map(|p| vec![format!("{} MiB", p.mib), if p.ok { "completed".into() } else { "failed".into() }, format!("{:.0} s", p.secs), p.why.clone()]).collect();
    table(&["guest memory", "anemos image", "wall", "why it failed"], &rows);
    let least = match found {
        Some(m) => format!("{m} MiB"),
        None => format!("more than {HIGH} MiB"),
    };
    table(
        &["", "least guest memory"],
        &[vec!["anemos image (this run)".into(), least], vec!["goal".into(), format!("{GOAL} MiB")], vec!["nixos-anywhere (documented minimum)".into(), "1024 MiB".into()]],
    );
    Ok(())
}

/// The smallest memory in [LOW, HIGH] for which `works` holds, to RESOLUTION, assuming more
/// memory never hurts; None if even HIGH fails. Probes GOAL first, then LOW if GOAL works.
pub fn bisect(mut works: impl FnMut(u32) -> bool) -> Option<u32> {
    // Invariant: `bad` failed (or is below the range), `good` worked (or is assumed to).
    let (mut bad, mut good) = if works(GOAL) {
        if works(LOW) {
            return Some(LOW);
        }
        (LOW, GOAL)
    } else {
        if !works(HIGH) {
            return None;
        }
        (GOAL, HIGH)
    };
    while good - bad > RESOLUTION {
        let mid = (bad + (good - bad) / 2) / RESOLUTION * RESOLUTION;
        let mid = mid.clamp(bad + 1, good - 1);
        if works(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Some(good)
}

/// `anemos image` of the project with `mib` of guest memory into `out`. It runs in its own
/// process group, so that a guest that panicked (out of memory with nothing left to kill: the
/// kernel then hangs) or a timeout stops QEMU too, not only `anemos`.
pub fn image(project: &Path, out: &Path, mirror_args: &[String], mib: u32) -> Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let log = out.join("install.log");
    let err = std::fs::File::create(out.join("anemos.err"))?;
    let mut child = Command::new(anemos_bin())
        .arg("image")
        .arg(project)
        .arg("-o")
        .arg(out)
        .args(["--memory", &mib.to_string(), "--log"])
        .arg(&log)
        .args(mirror_args)
        .stdout(Stdio::null())
        .stderr(err)
        .process_group(0)
        .spawn()
        .context("starting anemos image")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let panicked = std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Kernel panic"));
        if panicked || started.elapsed().as_secs() > PROBE_TIMEOUT_S {
            let _ = sh(&format!("kill -TERM -- -{}", child.id()));
            let _ = child.wait();
            if panicked {
                bail!("the guest kernel panicked");
            }
            bail!("no result within {PROBE_TIMEOUT_S} s");
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    if !status.success() {
        bail!("anemos image failed ({status}); see {}", out.join("anemos.err").display());
    }
    let img = out.join("debian-minimal.img");
    let _ = std::fs::remove_file(&img);
    Ok(img)
}

/// Why a probe failed, in a few words: the guest kernel's OOM report, the installer's
/// failure event, or a timeout.
fn why(e: &anyhow::Error, out: &Path) -> String {
    let log = std::fs::read_to_string(out.join("install.log")).unwrap_or_default();
    let oom = log.lines().find(|l| l.contains("Out of memory") || l.contains("invoked oom-killer") || l.contains("Kernel panic"));
    let err = std::fs::read_to_string(out.join("anemos.err")).unwrap_or_default();
    let failed = err.lines().find(|l| l.contains("failed in phase"));
    let phase = log.lines().filter_map(|l| l.split("[started] ").nth(1)).next_back().map(|p| format!("in {}: ", p.trim()));
    let what = oom.or(failed).map(|l| l.trim().chars().take(120).collect::<String>()).unwrap_or_else(|| format!("{e}"));
    format!("{}{what}", phase.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(least: u32) -> (Option<u32>, Vec<u32>) {
        let mut tried = Vec::new();
        let found = bisect(|m| {
            tried.push(m);
            m >= least
        });
        (found, tried)
    }

    #[test]
    fn bisection_finds_the_least_within_the_resolution() {
        for least in [100, 128, 129, 200, 256, 300, 700, 1000, 1024] {
            let (found, tried) = run_with(least);
            let f = found.unwrap();
            assert!(f >= least && f - least < RESOLUTION, "least {least}: found {f} after {tried:?}");
            assert!(tried.len() <= 8, "least {least}: {} probes", tried.len());
        }
        assert_eq!(run_with(128).1, vec![256, 128]);
        assert_eq!(run_with(2000), (None, vec![256, 1024]));
    }
}
