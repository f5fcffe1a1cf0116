//! Helpers shared by the integration tests: where the built binaries and the test kernel
//! are, scratch directories, and a lock so that QEMU boots never run two at a time (this
//! machine has two cores; parallel TCG guests only slow each other past their timeouts).

pub mod apk_fixture;
pub mod mirror;
pub mod serve;
pub mod server;

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
/// inspection (console logs live there); a test that passed calls [`passed`] to drop its
/// disk images.
pub fn scratch(name: &str) -> PathBuf {
    let dir = workspace().join("target/test-scratch").join(name);
    unmount_below(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating scratch dir");
    dir
}

/// What a test that passed leaves of its scratch directory: the console logs and small
/// files stay, every file that takes more than 16 MiB on the disk (disk images, a RAID
/// member resynced in full, system images) goes. A whole `make test` would otherwise keep
/// about 17 GB. Call it last in a test, so a failure keeps everything for inspection.
pub fn passed(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        if meta.is_dir() {
            passed(&entry.path());
        } else if meta.is_file() && meta.blocks() * 512 > 16 << 20 {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Held while a QEMU guest runs: one guest at a time in this process, and across
/// processes (two test runs, a bench) through an flock on `/tmp/anemos-vm.lock`.
pub struct VmLock {
    _guard: MutexGuard<'static, ()>,
    _file: Option<std::fs::File>,
}

pub fn vm_lock() -> VmLock {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // A whole run may hold the lock from outside: `flock /tmp/anemos-vm.lock env
    // ANEMOS_VM_LOCK_HELD=1 cargo test …` (then taking it again here would wait forever).
    let held = std::env::var_os("ANEMOS_VM_LOCK_HELD").is_some();
    let file = (!held).then(|| std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(VM_LOCK_FILE).ok()).flatten();
    if let Some(f) = &file {
        let _ = rustix::fs::flock(f, rustix::fs::FlockOperation::LockExclusive);
    }
    VmLock { _guard: guard, _file: file }
}

/// The lock file other tools take with `flock /tmp/anemos-vm.lock CMD` before a guest.
pub const VM_LOCK_FILE: &str = "/tmp/anemos-vm.lock";

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
        Mount::new_with(dev, dir, fstype, "defaults")
    }

    /// Mounts with `-o options`.
    pub fn new_with(dev: &Path, dir: &Path, fstype: &str, options: &str) -> Result<Mount> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        sh(&format!("mount -t {fstype} -o {options} {} {}", dev.display(), dir.display()))?;
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

/// A free TCP port on 127.0.0.1 (for QEMU port forwards).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A minimal HTTP/1.1 request to 127.0.0.1:`port`; returns (status, body). Retries the
/// connection for up to `wait` (a guest's port forward answers only once QEMU runs).
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>, wait: std::time::Duration) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + wait;
    loop {
        let attempt = (|| -> Result<(u16, String)> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(40)))?;
            let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
            write!(s, "{method} {path} HTTP/1.1\r\nHost: guest\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no HTTP status in the reply")?;
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
            Ok((status, body))
        })();
        match attempt {
            Ok(r) => return Ok(r),
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Detaches every mount at or below `dir` (a chroot's /proc, /sys, /dev binds left by a
/// killed run), so that removing the directory can never reach into the host's /dev.
pub fn unmount_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/"))).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).status();
    }
}

/// Single-quotes a word for `sh -c` (and for the remote shell ssh hands a command to).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_passed_test_keeps_its_logs_and_loses_its_disk_images() {
        let dir = std::env::temp_dir().join(format!("anemos-passed-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("inner")).unwrap();
        std::fs::write(dir.join("console.log"), b"ANEMOS-REPORT").unwrap();
        // Written, not sparse: what counts is the space a file takes.
        std::fs::write(dir.join("inner/disk.img"), vec![1u8; 17 << 20]).unwrap();
        let sparse = std::fs::File::create(dir.join("sparse.img")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        super::passed(&dir);
        assert!(dir.join("console.log").is_file() && dir.join("sparse.img").is_file());
        assert!(!dir.join("inner/disk.img").exists(), "the written image stayed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
