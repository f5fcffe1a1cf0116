//! codecs: the loops an install spends its CPU in, through the installer's own code, beside
//! the C tools on the same data in the same run: SHA-256 (every package and image byte is
//! hashed), and zstd, xz and gzip decoding (`installer::packages::extract::decompress`,
//! which the init uses for images, packages, indexes and kernel modules).
//!
//! The input is real, mixed data: this host's `/usr` as a tar stream, cut at 96 MiB, then
//! compressed by the C tools at the levels the archives use (zstd -9 as `anemos build`
//! writes images, xz -6 as Debian's packages, gzip -9). Each side reads the same file from
//! the page cache; best of three. The release profile's opt-level is chosen on these rows
//! (docs/benchmarks.md, "initramfs").

use std::io::{BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::report::{ratio, table};
use crate::util::{scratch, sh};

const INPUT_BYTES: u64 = 96 << 20;
const RUNS: usize = 3;

pub fn run() -> Result<()> {
    let dir = scratch("codecs")?;
    let raw = dir.join("input.tar");
    sh(&format!("tar -C / -cf - usr 2>/dev/null | head -c {INPUT_BYTES} >{}", raw.display()))?;
    let size = std::fs::metadata(&raw)?.len();
    if size < INPUT_BYTES {
        bail!("this host's /usr gave only {size} bytes of tar; the section needs {INPUT_BYTES}");
    }
    let r = raw.display();
    sh(&format!("zstd -q -9 -T1 -k {r} && xz -6 -T1 -k {r} && gzip -9 -k {r}"))?;
    let mut rows = vec![row("SHA-256", size, best(|| sha256(&raw))?, best(|| tool(&format!("sha256sum {r}")))?)];
    for (codec, ext, cmd) in [("zstd -9", ".zst", "zstd -dc"), ("xz -6", ".xz", "xz -dc"), ("gzip -9", ".gz", "gzip -dc")] {
        let file = dir.join(format!("input.tar{ext}"));
        let ours = best(|| decode(&file, size))?;
        let theirs = best(|| tool(&format!("{cmd} {}", file.display())))?;
        rows.push(row(&format!("{codec} decode"), size, ours, theirs));
    }
    println!("   {} MiB of this host's /usr as tar; best of {RUNS}; MB/s of uncompressed data", size >> 20);
    table(&["", "anemos (installer)", "C tool", "ratio"], &rows);
    Ok(())
}

fn row(what: &str, bytes: u64, ours: f64, theirs: f64) -> Vec<String> {
    let rate = |s: f64| format!("{s:.3} s ({:.0} MB/s)", bytes as f64 / s / 1e6);
    vec![what.to_string(), rate(ours), rate(theirs), ratio(ours, theirs)]
}

fn best(mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..RUNS {
        best = best.min(f()?);
    }
    Ok(best)
}

/// Hashes the file as the image stream is hashed: 256 KiB reads into SHA-256.
fn sha256(path: &Path) -> Result<f64> {
    let start = Instant::now();
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    std::hint::black_box(hasher.finalize());
    Ok(start.elapsed().as_secs_f64())
}

/// Decodes through the installer's decoder, chosen by the file's name, into a sink.
fn decode(path: &Path, expect: u64) -> Result<f64> {
    let start = Instant::now();
    let file = BufReader::with_capacity(256 << 10, std::fs::File::open(path)?);
    let name = path.to_string_lossy();
    let n = std::io::copy(&mut installer::packages::extract::decompress(&name, file)?, &mut std::io::sink()).with_context(|| format!("decoding {name}"))?;
    if n != expect {
        bail!("{name} decoded to {n} bytes, not {expect}");
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Times a C tool writing to /dev/null.
fn tool(cmd: &str) -> Result<f64> {
    let start = Instant::now();
    let st = Command::new("sh").arg("-c").arg(cmd).stdout(Stdio::null()).status().with_context(|| format!("running {cmd}"))?;
    if !st.success() {
        bail!("`{cmd}` failed ({st})");
    }
    Ok(start.elapsed().as_secs_f64())
}
