//! Helpers shared by the integration tests: where the built binaries and the test kernel
//! are, scratch directories, and a lock so that QEMU boots never run two at a time (this
//! machine has two cores; parallel TCG guests only slow each other past their timeouts).

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
