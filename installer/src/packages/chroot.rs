//! Running the target's own programs inside it, for every distribution: the pseudo
//! filesystems a package script expects (`/proc`, `/sys`, `/dev`, `/run`), `chroot(2)` into the
//! root, and a clean, non-interactive environment. Distribution specifics (Debian's
//! `policy-rc.d` and dpkg progress, Arch hooks, Alpine scripts) live beside each distribution.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use rustix::fs::{AtFlags, FileType};
use rustix::mount::{mount, mount_bind_recursive, unmount, MountFlags, UnmountFlags};

use crate::packages::extract::Root;

/// Mounts for a chroot, undone (lazily, recursively) when dropped.
pub struct Mounts {
    mounted: Vec<PathBuf>,
}

impl Mounts {
    /// Mounts a fresh proc, the host's /sys and /dev (recursive binds) and a fresh tmpfs on
    /// /run inside `root`. Each mount point must be a real directory inside the root (a
    /// symlink planted there could otherwise redirect a host mount).
    pub fn setup(root: &Root) -> Result<Mounts> {
        let mut m = Mounts { mounted: Vec::new() };
        for (dir, what) in [("proc", "proc"), ("sys", "/sys"), ("dev", "/dev"), ("run", "tmpfs")] {
            let target = mount_point(root, dir)?;
            let r = match what {
                "proc" => mount("proc", &target, "proc", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, None),
                "tmpfs" => mount("tmpfs", &target, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, Some(c"mode=0755")),
                host => mount_bind_recursive(host, &target),
            };
            r.with_context(|| format!("mounting {what} on {}", target.display()))?;
            m.mounted.push(target);
        }
        Ok(m)
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for target in self.mounted.iter().rev() {
            if let Err(e) = unmount(target, UnmountFlags::DETACH) {
                log::warn!("unmounting {}: {e}", target.display());
            }
        }
    }
}

fn mount_point(root: &Root, dir: &str) -> Result<PathBuf> {
    root.dir_all(dir)?;
    let st = rustix::fs::statat(root.dir("")?, dir, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        bail!("/{dir} in {} is not a directory (a symlink?); refusing to mount there", root.path().display());
    }
    Ok(root.path().join(dir))
}

/// A command run inside `root` with a minimal environment (`PATH`, `LC_ALL=C.UTF-8`,
/// `HOME=/root`); callers add their distribution's variables.
pub fn command(root: &Path, program: &str, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").env("LC_ALL", "C.UTF-8").env("HOME", "/root");
    // Reproducible builds: tools that stamp times (initramfs-tools, shadow, man-db) take
    // this instead of the clock when it is set (`anemos build` sets it).
    if let Some(epoch) = std::env::var_os("SOURCE_DATE_EPOCH") {
        cmd.env("SOURCE_DATE_EPOCH", epoch);
    }
    crate::sys::chroot_command(&mut cmd, root).context("preparing the chroot")?;
    Ok(cmd)
}

/// Runs `program args…` in `root`; output goes to the log, a failure carries its tail.
pub fn run(root: &Path, program: &str, args: &[&str]) -> Result<()> {
    run_command(root, command(root, program, args)?, program, args)
}

/// Runs a prepared `cmd` (from [`command`]); output goes to the log, a failure carries the
/// tail of its standard error.
pub fn run_command(root: &Path, mut cmd: Command, program: &str, args: &[&str]) -> Result<()> {
    let (status, stdout, stderr) = crate::exec::output(&mut cmd)?;
    for line in String::from_utf8_lossy(&stdout).lines().chain(String::from_utf8_lossy(&stderr).lines()) {
        log::debug!("[{program}] {line}");
    }
    if !status.success() {
        bail!("`{program} {}` in {} failed ({status}):\n{}", args.join(" "), root.display(), tail(&stderr));
    }
    Ok(())
}

/// The last 20 lines of a program's output, for an error message.
pub fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().rev().take(20).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}
