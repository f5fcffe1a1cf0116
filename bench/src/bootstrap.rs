//! Bootstrapping Debian into a directory: anemos beside mmdebstrap and debootstrap, all from
//! the same mirror (the host's apt source for the suite, through the caching proxy of
//! `anemos_tests::mirror`, warmed first so that no tool pays for the network), the same
//! suite and component. Two package sets: minbase, and minbase with a kernel and
//! initramfs-tools (where mmdebstrap spends most of its time building the initramfs twice;
//! it is also measured with that deferred to one build by hooks, as in
//! research/qemu-calibration.md). Wall time and the peak RSS of the largest process of each
//! tool's process tree (getrusage(RUSAGE_CHILDREN) in a wrapper).

use std::collections::BTreeSet;
use std::path::Path;

use anemos_tests::mirror::MirrorProxy;
use anemos_tests::unmount_below;
use anyhow::{Context, Result};
use installer::packages::fetch::{FetchConfig, Fetcher};

use crate::report::{ratio, table};
use crate::util::{anemos_bin, measured, scratch, sh};

const SUITE: &str = "bookworm";
const KERNEL_SET: &str = "linux-image-amd64,initramfs-tools";

struct Run {
    label: String,
    secs: f64,
    rss_kib: u64,
    packages: BTreeSet<String>,
}

pub fn run() -> Result<()> {
    let proxy = MirrorProxy::start(0)?;
    let source = proxy.sources_for(SUITE)?.into_iter().find(|s| s.suite == SUITE).context("no source for the suite")?;
    let uri = source.uri.clone();
    println!("   mirror: {uri} (proxying the host's apt source), suite {SUITE} main");
    let dir = scratch("bootstrap")?;
    warm(&dir, &uri)?;

    let minbase = vec![
        anemos(&dir, "anemos (in-process unpack + dpkg --configure)", &uri, &[])?,
        anemos(&dir, "anemos (essential in-process + dpkg --install)", &uri, &["--strategy", "dpkg-install"])?,
        mmdebstrap(&dir, "mmdebstrap", &uri, None, false)?,
        debootstrap(&dir, &uri, None)?,
    ];
    print_rows("minbase", &minbase);
    print_differences(&minbase);

    let kernel = vec![
        anemos(&dir, "anemos (in-process, one initramfs build)", &uri, &["--include", KERNEL_SET])?,
        mmdebstrap(&dir, "mmdebstrap", &uri, Some(KERNEL_SET), false)?,
        mmdebstrap(&dir, "mmdebstrap, initramfs deferred by hooks", &uri, Some(KERNEL_SET), true)?,
        debootstrap(&dir, &uri, Some(KERNEL_SET))?,
    ];
    print_rows(&format!("minbase + {KERNEL_SET}"), &kernel);
    print_differences(&kernel);
    Ok(())
}

/// One untimed anemos run per set fills the proxy's pool cache; the index paths that
/// debootstrap and apt fetch without by-hash are fetched once too.
fn warm(dir: &Path, uri: &str) -> Result<()> {
    for include in ["", KERNEL_SET] {
        let root = fresh(dir, "warm")?;
        let inc = if include.is_empty() { String::new() } else { format!(" --include {include}") };
        sh(&format!("{} bootstrap {} --suite {SUITE} --mirror '{uri} {SUITE} main' --proxy '' --no-initramfs{inc}", anemos_bin().display(), root.display()))?;
    }
    let fetcher = Fetcher::new(FetchConfig { proxy: Some(String::new()), ..FetchConfig::default() })?;
    for f in ["InRelease", "Release", "Release.gpg", "main/binary-amd64/Packages.xz", "main/binary-amd64/Packages.gz"] {
        let _ = fetcher.get_bytes(&format!("{uri}/dists/{SUITE}/{f}"), 256 << 20);
    }
    fresh(dir, "warm")?;
    Ok(())
}

/// An empty directory `dir/name/root` (whatever a previous run left is unmounted first).
fn fresh(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let d = dir.join(name);
    unmount_below(&d);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d.join("root"))
}

fn finish(dir: &Path, name: &str, label: &str, secs: f64, rss_kib: u64) -> Result<Run> {
    let root = dir.join(name).join("root");
    let list = sh(&format!("dpkg-query --admindir={}/var/lib/dpkg -W -f '${{Package}}\\n'", root.display()))?;
    let packages = list.lines().map(str::to_string).collect();
    let _ = fresh(dir, name);
    Ok(Run { label: label.to_string(), secs, rss_kib, packages })
}

fn anemos(dir: &Path, label: &str, uri: &str, extra: &[&str]) -> Result<Run> {
    let name = format!("anemos-{}", extra.join("").len());
    let root = fresh(dir, &name)?;
    let mirror = format!("{uri} {SUITE} main");
    let bin = anemos_bin();
    let mut cmd = vec![bin.to_str().unwrap_or("anemos"), "bootstrap", root.to_str().unwrap_or(""), "--suite", SUITE, "--mirror", &mirror, "--proxy", ""];
    cmd.extend_from_slice(extra);
    let (secs, rss) = measured(&cmd, &dir.join(format!("{name}.log")))?;
    finish(dir, &name, label, secs, rss)
}

fn mmdebstrap(dir: &Path, label: &str, uri: &str, include: Option<&str>, defer: bool) -> Result<Run> {
    let name = format!("mmdebstrap-{}", defer as u8);
    let root = fresh(dir, &name)?;
    let source = format!("deb {uri} {SUITE} main");
    let inc = include.map(|i| format!("--include={i}"));
    let mut cmd = vec!["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet"];
    if let Some(i) = &inc {
        cmd.push(i);
    }
    if defer {
        cmd.extend([
            "--essential-hook=chroot \"$1\" dpkg-divert --local --rename --divert /usr/sbin/update-initramfs.real --add /usr/sbin/update-initramfs && ln -s /bin/true \"$1\"/usr/sbin/update-initramfs",
            "--customize-hook=rm \"$1\"/usr/sbin/update-initramfs && chroot \"$1\" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs",
            "--customize-hook=chroot \"$1\" update-initramfs -c -k all",
        ]);
    }
    let root_s = root.to_string_lossy().into_owned();
    cmd.extend([SUITE, root_s.as_str(), source.as_str()]);
    let (secs, rss) = measured(&cmd, &dir.join(format!("{name}.log")))?;
    finish(dir, &name, label, secs, rss)
}

fn debootstrap(dir: &Path, uri: &str, include: Option<&str>) -> Result<Run> {
    let root = fresh(dir, "debootstrap")?;
    let inc = include.map(|i| format!("--include={i}"));
    let mut cmd = vec!["debootstrap", "--variant=minbase"];
    if let Some(i) = &inc {
        cmd.push(i);
    }
    let root_s = root.to_string_lossy().into_owned();
    cmd.extend([SUITE, root_s.as_str(), uri]);
    let (secs, rss) = measured(&cmd, &dir.join("debootstrap.log"))?;
    finish(dir, "debootstrap", "debootstrap", secs, rss)
}

fn print_rows(set: &str, runs: &[Run]) {
    println!("   {set}:");
    let mm = runs.iter().find(|r| r.label == "mmdebstrap").map(|r| r.secs).unwrap_or(0.0);
    let rows: Vec<Vec<String>> =
        runs.iter().map(|r| vec![r.label.clone(), r.packages.len().to_string(), format!("{:.1} s", r.secs), ratio(r.secs, mm), format!("{:.1} MiB", r.rss_kib as f64 / 1024.0)]).collect();
    table(&["tool", "packages", "wall", "vs mmdebstrap", "peak RSS (largest process)"], &rows);
    println!("   goals: anemos ≤ 0.50× mmdebstrap and faster than mmdebstrap with deferred initramfs; peak RSS < 128 MiB");
}

/// Which packages one tool installed and the first (anemos) did not, and the reverse.
fn print_differences(runs: &[Run]) {
    let Some(ours) = runs.first() else { return };
    for other in &runs[1..] {
        let only_ours: Vec<&String> = ours.packages.difference(&other.packages).collect();
        let only_theirs: Vec<&String> = other.packages.difference(&ours.packages).collect();
        if only_ours.is_empty() && only_theirs.is_empty() {
            println!("   same package set as {}", other.label);
        } else {
            println!("   vs {}: only anemos: {:?}; only {}: {:?}", other.label, only_ours, other.label, only_theirs);
        }
    }
}
