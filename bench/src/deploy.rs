//! deploy: `anemos deploy` of a running server (the install tests' server: examples/
//! debian-minimal with swap and a kept data disk, UEFI, under TCG) split by phase, and the
//! least server memory with which the kexec deploy still succeeds, beside the goal (256 MiB)
//! and nixos-anywhere's documented minimum (1 GiB; it cannot run here: no Nix registry).
//!
//! `ANEMOS_BENCH_DEPLOY_REUSE=1` reuses the server image the install tests built
//! (target/test-scratch/install-server) instead of building one (~6 min);
//! `ANEMOS_BENCH_DEPLOY_PROBES=256,192` probes only those memory sizes instead of bisecting.

use std::time::Instant;

use anemos_tests::server::{build_server, ServerBuild};
use anyhow::{bail, Context, Result};

use crate::install_memory::{bisect, GOAL, HIGH, LOW};
use crate::report::table;

/// The memory the timed deploy runs with (the install tests' server).
const TIMED_MIB: u32 = 1024;
/// A probe's install may take this long before it counts as failed.
const PROBE_TIMEOUT_S: u64 = 1500;

pub fn run() -> Result<()> {
    let _lock = anemos_tests::vm_lock();
    let build = server()?;
    let variant = build.variant("bench-deploy-variant", "\nhostname=server2\npackages=\"$packages tree\"\n")?;
    println!("   the server: {} ({} MiB), deployed with a new host name and one more package", build.image.display(), TIMED_MIB);
    let wall = Instant::now();
    let server = build.start("bench-deploy-timed", TIMED_MIB)?;
    let booted = wall.elapsed().as_secs_f64();
    let d = server.deploy(&variant, &[])?;
    if !d.ok {
        bail!("the timed deploy failed:\n{}\n{}", d.stdout, d.stderr);
    }
    drop(server);
    let summary = Summary::parse(&d.stdout)?;
    summary.print(booted);
    memory(&build, &variant)
}

fn server() -> Result<ServerBuild> {
    if std::env::var_os("ANEMOS_BENCH_DEPLOY_REUSE").is_some() {
        if let Some(kept) = ServerBuild::kept("install-server") {
            return kept;
        }
    }
    let t = Instant::now();
    let b = build_server("bench-deploy-server")?;
    println!("   built the server with anemos image in {:.0} s", t.elapsed().as_secs_f64());
    Ok(b)
}

/// The figures of `anemos deploy`'s host summary.
#[derive(Debug, PartialEq)]
struct Summary {
    kexec_at: f64,
    ready_at: f64,
    installed_at: f64,
    total: f64,
    phases: Vec<(String, f64)>,
}

impl Summary {
    /// Reads `kexec at X s, installer ready at Y s, installed at Z s, total T s` and
    /// `phases: NAME N s, …`.
    fn parse(stdout: &str) -> Result<Summary> {
        let line = stdout.lines().find(|l| l.trim_start().starts_with("kexec at ")).context("no `kexec at …` line in the deploy summary")?;
        let nums: Vec<f64> = line.split(", ").filter_map(|part| part.split_whitespace().rev().nth(1)?.parse().ok()).collect();
        let [kexec_at, ready_at, installed_at, total] = nums[..] else { bail!("unexpected summary line: {line}") };
        let mut phases = Vec::new();
        if let Some(p) = stdout.lines().find_map(|l| l.trim_start().strip_prefix("phases: ")) {
            for part in p.split(", ") {
                let mut w = part.rsplitn(3, ' ');
                let (_s, secs, name) = (w.next(), w.next(), w.next());
                if let (Some(name), Some(secs)) = (name, secs.and_then(|s| s.parse::<f64>().ok())) {
                    phases.push((name.to_string(), secs));
                }
            }
        }
        Ok(Summary { kexec_at, ready_at, installed_at, total, phases })
    }

    fn print(&self, booted: f64) {
        let mut rows = vec![
            vec!["the server VM boots to its login prompt (before the deploy)".into(), format!("{booted:.0} s")],
            vec!["pack, copy over ssh, kexec load (plan re-checked on the server), exec".into(), format!("{:.0} s", self.kexec_at)],
            vec!["kexec → installer ready (modules, network, event endpoint)".into(), format!("{:.0} s", self.ready_at - self.kexec_at)],
        ];
        for (name, secs) in self.phases.iter().filter(|(n, _)| installer::install::Phase::from_name(n).is_some()) {
            rows.push(vec![format!("  installer phase {name}"), format!("{secs:.1} s")]);
        }
        rows.push(vec!["installer ready → install done".into(), format!("{:.0} s", self.installed_at - self.ready_at)]);
        rows.push(vec!["reboot → the new system answers on ssh".into(), format!("{:.0} s", self.total - self.installed_at)]);
        rows.push(vec!["anemos deploy, total wall".into(), format!("{:.0} s", self.total)]);
        table(&["deploy phase", "time"], &rows);
    }
}

/// The least server memory with which the deploy succeeds: a bisection (or the probes of
/// ANEMOS_BENCH_DEPLOY_PROBES), each probe a fresh server booted with that memory.
fn memory(build: &ServerBuild, variant: &std::path::Path) -> Result<()> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut probe = |mib: u32| -> bool {
        let t = Instant::now();
        let (ok, why) = match deploy_with(build, variant, mib) {
            Ok(()) => (true, String::new()),
            Err(e) => (false, format!("{e:#}").lines().next().unwrap_or_default().chars().take(140).collect()),
        };
        println!("   {mib:>5} MiB: {} in {:.0} s{}", if ok { "deployed" } else { "failed" }, t.elapsed().as_secs_f64(), if ok { String::new() } else { format!(" ({why})") });
        rows.push(vec![format!("{mib} MiB"), if ok { "deployed".into() } else { "failed".into() }, format!("{:.0} s", t.elapsed().as_secs_f64()), why]);
        ok
    };
    let least = match std::env::var("ANEMOS_BENCH_DEPLOY_PROBES") {
        Ok(list) => {
            println!("\n   server memory, the probes asked for ({list}):");
            let mut sizes: Vec<u32> = list.split(',').filter_map(|s| s.trim().parse().ok()).collect();
            sizes.sort_unstable_by(|a, b| b.cmp(a));
            let mut least = None;
            for mib in sizes {
                if probe(mib) {
                    least = Some(mib);
                } else {
                    break;
                }
            }
            least.map(|m| format!("{m} MiB (the smallest probe that deployed; smaller ones not probed or failed)"))
        }
        Err(_) => {
            println!("\n   least server memory for the deploy (bisection {LOW}–{HIGH} MiB; the goal {GOAL} MiB first):");
            bisect(&mut probe).map(|m| format!("{m} MiB"))
        }
    };
    rows.sort_by_key(|r| r[0].trim_end_matches(" MiB").parse::<u32>().unwrap_or(0));
    table(&["server memory", "anemos deploy", "wall", "why it failed"], &rows);
    table(
        &["", "least server memory"],
        &[
            vec!["anemos deploy (this run)".into(), least.unwrap_or_else(|| format!("none of the probes up to {HIGH} MiB"))],
            vec!["goal".into(), format!("{GOAL} MiB")],
            vec!["nixos-anywhere (documented minimum)".into(), "1024 MiB".into()],
        ],
    );
    Ok(())
}

/// Boots a fresh server with `mib` and deploys the variant to it.
fn deploy_with(build: &ServerBuild, variant: &std::path::Path, mib: u32) -> Result<()> {
    let mut server = build.start(&format!("bench-deploy-{mib}"), mib).context("the server did not boot")?;
    server.install_timeout_s = PROBE_TIMEOUT_S;
    let d = server.deploy(variant, &[])?;
    if d.ok {
        return Ok(());
    }
    let console = server.vm.output_text();
    if let Some(l) = console.lines().find(|l| l.contains("Out of memory") || l.contains("invoked oom-killer") || l.contains("Kernel panic")) {
        bail!("{}", l.trim());
    }
    let why = d.stdout.lines().find(|l| l.contains("FAILED:")).or_else(|| d.stderr.lines().rev().find(|l| l.contains("error"))).unwrap_or("the deploy failed");
    bail!("{}", why.trim())
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn the_deploy_summary_is_read() {
        let out = "host summary:\n  server: deployed\n    kexec at 177 s, installer ready at 248 s, installed at 717 s, total 829 s\n    phases: modules 5.2 s, check 0.2 s, indexes 25.5 s, packages 292.8 s, unmount 2.2 s\n";
        let s = Summary::parse(out).unwrap();
        assert_eq!((s.kexec_at, s.ready_at, s.installed_at, s.total), (177.0, 248.0, 717.0, 829.0));
        let names: Vec<&str> = s.phases.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["modules", "check", "indexes", "packages", "unmount"]);
        assert_eq!(s.phases[3].1, 292.8);
        assert!(Summary::parse("nothing").is_err());
    }
}
