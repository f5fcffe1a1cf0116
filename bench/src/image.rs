//! Build once, install many: examples/debian-minimal built as an image by `anemos build`
//! (natively), then installed into a disk image in a TCG guest twice — through the package
//! path and from the image — phase by phase, in the same run and from the same warm caching
//! proxy; the image's size beside the installed root's; and the least guest memory with
//! which an install from the image completes (streamed: it is never held in memory).
//! `ANEMOS_BENCH_IMAGE_PROBES=256,192` sets the memory probes (MiB, tried in order until
//! one fails).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anemos_tests::mirror::MirrorProxy;
use anyhow::{Context, Result};

use crate::report::{mib, ratio, table};
use crate::util::{anemos_bin, scratch, sh, workspace};

const EXAMPLE: &str = "examples/debian-minimal";
const DEFAULT_PROBES: &[u32] = &[256, 192, 160, 128];

pub fn run() -> Result<()> {
    let proxy = MirrorProxy::start(0)?;
    let sources = proxy.sources_for("bookworm")?;
    let mirror = sources.first().context("no Debian source on this host")?.uri.clone();
    let mut mirror_args = vec!["--mirror".to_string(), mirror.clone()];
    if let Some(s) = sources.iter().find(|s| s.suite.ends_with("-security")) {
        mirror_args.extend(["--security-mirror".to_string(), s.uri.clone()]);
    }
    println!("   mirror: {mirror} (the host's apt sources through the caching proxy)");
    let dir = scratch("image")?;
    let project = dir.join("project");
    sh(&format!("cp -a {}/. {}", workspace().join(EXAMPLE).display(), project.display()))?;
    let image = dir.join("debian-minimal.image.tar.zst");
    // The first build warms the proxy's cache; the second is timed.
    println!("   anemos build {EXAMPLE} (natively; the first run warms the cache) …");
    anemos(&["build", &s(&project), "-o", &s(&image)], &mirror_args)?;
    std::fs::remove_file(&image)?;
    let t = Instant::now();
    let built = anemos(&["build", &s(&project), "-o", &s(&image)], &mirror_args)?;
    let build_secs = t.elapsed().as_secs_f64();
    let manifest: installer::image::Manifest = serde_json::from_slice(&std::fs::read(dir.join("debian-minimal.image.tar.zst.json"))?)?;
    println!("   {}", built.lines().next().unwrap_or(""));
    println!("   installing into a disk image in a TCG guest (1 GiB): through the packages, then from the image …");
    let packages = phases(&anemos(&["image", &s(&project), "-o", &s(&dir.join("packages"))], &mirror_args)?);
    let from_image = phases(&anemos(&["image", &s(&project), "-o", &s(&dir.join("from-image")), "--image", &s(&image)], &mirror_args)?);
    print_phases(&packages, &from_image);
    table(
        &["image", "value"],
        &[
            vec!["anemos build, wall (packages, configure, initramfs, generalize, tar + zstd -9)".into(), format!("{build_secs:.0} s")],
            vec!["image, compressed (zstd)".into(), mib(manifest.size.unwrap_or(0))],
            vec!["installed root it holds (file bytes)".into(), mib(manifest.unpacked)],
            vec!["compressed / installed".into(), format!("{:.2}", manifest.size.unwrap_or(0) as f64 / manifest.unpacked.max(1) as f64)],
            vec!["entries, packages".into(), format!("{}, {}", manifest.entries, manifest.packages.len())],
        ],
    );
    least_memory(&dir, &project, &image, &mirror_args)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `anemos ARGS… MIRROR_ARGS…`; its standard output.
fn anemos(args: &[&str], mirror_args: &[String]) -> Result<String> {
    let out = std::process::Command::new(anemos_bin()).args(args).args(mirror_args).output().context("running anemos")?;
    if !out.status.success() {
        anyhow::bail!("anemos {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The phase table `anemos image` prints (`  NAME   12.3 s`), by name.
fn phases(stdout: &str) -> BTreeMap<String, f64> {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (name, secs) = l.rsplit_once(char::is_whitespace).filter(|(_, u)| *u == "s").map(|(rest, _)| rest.trim())?.rsplit_once(char::is_whitespace)?;
            Some((name.trim().to_string(), secs.parse().ok()?))
        })
        .collect()
}

/// Installer ready → install done: the install phases (the bring-up steps excluded).
fn install_time(p: &BTreeMap<String, f64>) -> f64 {
    p.iter().filter(|(n, _)| installer::install::Phase::from_name(n).is_some()).map(|(_, s)| s).sum()
}

fn print_phases(packages: &BTreeMap<String, f64>, image: &BTreeMap<String, f64>) {
    let mut rows = Vec::new();
    for phase in installer::install::Phase::ALL {
        let (a, b) = (packages.get(phase.name()), image.get(phase.name()));
        if a.is_none() && b.is_none() {
            continue;
        }
        let show = |v: Option<&f64>| v.map(|v| format!("{v:.1} s")).unwrap_or_else(|| "-".into());
        rows.push(vec![phase.name().to_string(), show(a), show(b)]);
    }
    let (a, b) = (install_time(packages), install_time(image));
    rows.push(vec!["installer ready → install done".into(), format!("{a:.0} s"), format!("{b:.0} s ({}; goal ≤ 0.15×, < 120 s)", ratio(b, a))]);
    table(&["phase (TCG guest, 1 GiB)", "package path", "image path"], &rows);
}

/// The least memory (MiB) with which the install from the image completes.
fn least_memory(dir: &Path, project: &Path, image: &Path, mirror_args: &[String]) -> Result<()> {
    let probes: Vec<u32> = match std::env::var("ANEMOS_BENCH_IMAGE_PROBES") {
        Ok(v) => v.split(',').map(|p| p.trim().parse()).collect::<Result<_, _>>().context("ANEMOS_BENCH_IMAGE_PROBES: MiB, comma-separated")?,
        Err(_) => DEFAULT_PROBES.to_vec(),
    };
    let mut rows = Vec::new();
    let mut least = None;
    for mib in probes {
        let out = dir.join(format!("memory-{mib}"));
        let t = Instant::now();
        let r = anemos(&["image", &s(project), "-o", &s(&out), "--image", &s(image), "--memory", &mib.to_string()], mirror_args);
        let _ = std::fs::remove_dir_all(&out);
        rows.push(vec![format!("{mib} MiB"), if r.is_ok() { "completes".into() } else { "fails".into() }, format!("{:.0} s", t.elapsed().as_secs_f64())]);
        match r {
            Ok(_) => least = Some(mib),
            Err(_) => break,
        }
    }
    table(&["guest memory (install from the image)", "result", "wall"], &rows);
    match least {
        Some(m) => println!("   least guest memory probed that completes: {m} MiB (goal ≤ 256 MiB)"),
        None => println!("   no probed memory size completed"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_phase_table_anemos_image_prints() {
        let p = super::phases("built /x.img in 66 s\n  check            0.0 s\n  image-check      0.3 s\n  image           39.7 s\n  installer ready (kernel uptime)     3.4 s\n");
        assert_eq!(p["image"], 39.7);
        assert_eq!(p["installer ready (kernel uptime)"], 3.4);
        assert!((super::install_time(&p) - 40.0).abs() < 1e-9);
    }
}
