//! mkfs: our in-process ext4 beside `mke2fs -t ext4 -q` on sparse files of 1 GiB, 64 GiB
//! and 1 TiB, measured in the same run.
//!
//! Both run as processes: mke2fs, and this binary re-executed as `anemos-bench
//! __mkfs-ext4 FILE`, which calls `installer::fs::make` exactly as the init does. Each is
//! timed from spawn to exit and run under GNU time, whose `%O` (file-system outputs, the
//! kernel's per-task write accounting in 512-byte units) gives the bytes it wrote and
//! `%M` its peak memory. After a sync the image's allocated bytes (`st_blocks × 512`) are
//! read too: writing zeros or fallocating allocates space that was never written.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::report::{ratio, table};
use crate::util::scratch;

const SIZES: [(&str, u64); 3] = [("1 GiB", 1 << 30), ("64 GiB", 64 << 30), ("1 TiB", 1 << 40)];
const RUNS: usize = 5;
/// The argument that makes this binary format a file and exit.
pub const CHILD: &str = "__mkfs-ext4";

/// One formatting run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    written: u64,
    allocated: u64,
    peak_kib: u64,
}

pub fn run() -> Result<()> {
    let dir = scratch("mkfs")?;
    let me = std::env::current_exe().context("finding the bench binary")?;
    let me = me.to_string_lossy().into_owned();
    let mut times = Vec::new();
    let mut bytes = Vec::new();
    for (name, size) in SIZES {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..RUNS {
            ours.push(measure(&dir, size, &[&me, CHILD])?);
            theirs.push(measure(&dir, size, &["mke2fs", "-t", "ext4", "-q", "-F"])?);
        }
        let (o, t) = (best(&ours), best(&theirs));
        times.push(vec![name.to_string(), format!("{:.3} s", o.secs), format!("{:.3} s", t.secs), ratio(o.secs, t.secs), "≤ 1.00×".into()]);
        bytes.push(vec![name.to_string(), kib(o.written), kib(t.written), kib(o.allocated), kib(t.allocated), format!("{} / {} KiB", o.peak_kib, t.peak_kib)]);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("   wall time, best of {RUNS} (spawn to exit, fsync included):");
    table(&["sparse file", "anemos ext4", "mke2fs -t ext4", "ratio", "goal"], &times);
    println!("\n   bytes written (GNU time %O × 512), space allocated after sync (st_blocks × 512), peak memory:");
    table(&["sparse file", "written: anemos", "written: mke2fs", "allocated: anemos", "allocated: mke2fs", "peak RSS anemos / mke2fs"], &bytes);
    Ok(())
}

/// Exact to the KiB: the two write almost the same amount.
fn kib(bytes: u64) -> String {
    format!("{} KiB", bytes / 1024)
}

/// The fastest run, with its own byte counts.
fn best(samples: &[Sample]) -> Sample {
    samples.iter().copied().fold(samples[0], |a, b| if b.secs < a.secs { b } else { a })
}

/// Formats a fresh sparse file of `size` bytes with `cmd FILE`.
fn measure(dir: &Path, size: u64, cmd: &[&str]) -> Result<Sample> {
    let img = dir.join("bench.img");
    let _ = std::fs::remove_file(&img);
    let f = std::fs::File::create(&img).with_context(|| format!("creating {}", img.display()))?;
    f.set_len(size).with_context(|| format!("sizing {}", img.display()))?;
    drop(f);
    // Settle the host filesystem first: freeing the previous image (mke2fs's has a
    // gigabyte of fallocated journal) would otherwise land in the next run's fsync.
    Command::new("sync").status().context("running sync")?;
    let report = dir.join("time.txt");
    let start = Instant::now();
    let out = Command::new("/usr/bin/time").args(["-f", "%O %M", "-o"]).arg(&report).args(cmd).arg(&img).output().context("running /usr/bin/time (apt package `time`)")?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{} failed ({}): {}", cmd.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = std::fs::read_to_string(&report).with_context(|| format!("reading {}", report.display()))?;
    let fields: Vec<u64> = text.lines().last().unwrap_or("").split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let [outputs, peak_kib] = fields[..] else { bail!("unexpected GNU time output: {text:?}") };
    std::fs::File::open(&img).and_then(|f| f.sync_all()).with_context(|| format!("syncing {}", img.display()))?;
    let allocated = std::fs::metadata(&img).with_context(|| format!("looking at {}", img.display()))?.blocks() * 512;
    Ok(Sample { secs, written: outputs * 512, allocated, peak_kib })
}

/// `anemos-bench __mkfs-ext4 FILE`: formats FILE with our ext4, as the init would.
pub fn child(path: &str) -> Result<()> {
    let target = installer::fs::Target::open(Path::new(path))?;
    installer::fs::make(installer::fs::FsKind::Ext4, &target, &installer::fs::FsOptions::default())?;
    Ok(())
}
