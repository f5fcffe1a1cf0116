//! Helpers shared by the integration tests: where the built binaries and the test kernel
//! are, scratch directories, and a lock so that QEMU boots never run two at a time (this
//! machine has two cores; parallel TCG guests only slow each other past their timeouts).

pub mod mirror;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use anyhow::{bail, Context, Result};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// The release `anemos` binary (`make` builds it before the tests).
pub fn anemos_bin() -> PathBuf {
    let p = workspace().join("target/x86_64-unknown-linux-musl/release/anemos");
    assert!(p.is_file(), "{} is missing: run the tests through `make test`", p.display());
    p
}

/// Runs `anemos ARGS…` and returns stdout; a failure carries stderr.
pub fn anemos(args: &[&str]) -> Result<String> {
    let out = Command::new(anemos_bin()).args(args).output().context("running anemos")?;
    if !out.status.success() {
        bail!("anemos {} failed ({}):\n{}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Debian kernel the tests boot (fetched by `qemu/fetch-kernel.sh`).
pub fn test_kernel() -> anemos_qemu::Kernel {
    anemos_qemu::Kernel::cached().unwrap_or_else(|e| panic!("{e:#}"))
}

/// A scratch directory under target/, emptied at creation, kept after the test for
/// inspection (console logs live there).
pub fn scratch(name: &str) -> PathBuf {
    let dir = workspace().join("target/test-scratch").join(name);
    unmount_below(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating scratch dir");
    dir
}

/// Held while a QEMU guest runs.
pub fn vm_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a shell command (fixture scripts, judges like cpio or e2fsck) and returns stdout.
pub fn sh(cmd: &str) -> Result<String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!("`{cmd}` failed ({}):\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Detaches every mount at or below `dir` (a chroot's /proc, /sys, /dev binds left by a
/// killed run), so that removing the directory can never reach into the host's /dev.
pub fn unmount_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).status();
    }
}
