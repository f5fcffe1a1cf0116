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

/// A loop device attached to an image file by `losetup --find --show`; detached when
/// dropped, also when a test fails.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    pub fn attach(image: &Path) -> Result<Loop> {
        let dev = sh(&format!("losetup --find --show {}", image.display()))?;
        Ok(Loop { dev: PathBuf::from(dev.trim()) })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// A filesystem mounted on a directory; unmounted when dropped.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    pub fn new(dev: &Path, dir: &Path, fstype: &str) -> Result<Mount> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        sh(&format!("mount -t {fstype} {} {}", dev.display(), dir.display()))?;
        Ok(Mount { dir: dir.to_path_buf() })
    }

    /// Unmounts now, reporting failure (dropping only tries).
    pub fn unmount(self) -> Result<()> {
        let r = sh(&format!("umount {}", self.dir.display())).map(|_| ());
        std::mem::forget(self);
        r
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Creates a sparse file of `len` bytes.
pub fn sparse_file(path: &Path, len: u64) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(len).with_context(|| format!("sizing {}", path.display()))
}

/// Fills `path` with `len` pseudo-random bytes (xorshift from `seed`): a disk full of
/// old data that must not be mistaken for metadata.
pub fn random_file(path: &Path, len: u64, seed: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let mut x = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
    }
    f.flush().with_context(|| format!("writing {}", path.display()))
}
