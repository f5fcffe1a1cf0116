//! Running the target's own programs inside it: the pseudo filesystems a maintainer script
//! expects (`/proc`, `/sys`, `/dev`, `/run`), a `policy-rc.d` that keeps daemons from starting
//! (invoke-rc.d(8): exit status 101 means "action forbidden"), `update-initramfs` diverted
//! to a no-op until [`super::finish`], and a clean, non-interactive environment.

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

/// A command run inside `root` with a minimal environment for maintainer scripts.
pub fn command(root: &Path, program: &str, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C.UTF-8")
        .env("HOME", "/root")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
        .env("DEBIAN_PRIORITY", "critical");
    crate::sys::chroot_command(&mut cmd, root).context("preparing the chroot")?;
    Ok(cmd)
}

/// Runs `program args…` in `root`; output goes to the log, a failure carries its tail.
pub fn run(root: &Path, program: &str, args: &[&str]) -> Result<()> {
    let mut cmd = command(root, program, args)?;
    let (status, stdout, stderr) = crate::exec::output(&mut cmd)?;
    for line in String::from_utf8_lossy(&stdout).lines().chain(String::from_utf8_lossy(&stderr).lines()) {
        log::debug!("[{program}] {line}");
    }
    if !status.success() {
        let err = String::from_utf8_lossy(&stderr);
        let tail: Vec<&str> = err.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("`{program} {}` in {} failed ({status}):\n{}", args.join(" "), root.display(), tail.join("\n"));
    }
    Ok(())
}

/// Runs `dpkg ARGS…` in `root`, reporting each "Setting up PKG" line as configuration
/// progress (`total` packages expected): a log line every 2 s and `configure` events.
pub fn run_dpkg_with_progress(root: &Path, args: &[&str], total: u64) -> Result<()> {
    let mut cmd = command(root, "dpkg", args)?;
    let mut done = 0u64;
    let mut last = std::time::Instant::now();
    let mut on_line = |line: &str| {
        log::debug!("[dpkg] {line}");
        if let Some(rest) = line.strip_prefix("Setting up ") {
            done += 1;
            let pkg = rest.split_whitespace().next().unwrap_or("");
            if last.elapsed() >= std::time::Duration::from_secs(2) || done == total {
                last = std::time::Instant::now();
                log::info!("configuring {done}/{total}: {pkg}");
                crate::event::emit(crate::event::Event::Progress { phase: "configure".into(), done, total, unit: "packages".into() });
            }
        }
    };
    let (status, stderr) = crate::exec::output_lines(&mut cmd, &mut on_line)?;
    if !status.success() {
        let err = String::from_utf8_lossy(&stderr);
        let tail: Vec<&str> = err.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("`dpkg {}` in {} failed ({status}):\n{}", args.join(" "), root.display(), tail.join("\n"));
    }
    Ok(())
}

pub const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";
const INITRAMFS: &str = "/usr/sbin/update-initramfs";
const INITRAMFS_DIVERTED: &str = "/usr/sbin/update-initramfs.anemos";

/// Keeps daemons from starting during configuration.
pub fn forbid_daemons(root: &Root) -> Result<()> {
    root.write_file(POLICY_RC_D, b"#!/bin/sh\n# Written by anemos during installation: start no daemons.\nexit 101\n", 0o755)
}

pub fn allow_daemons(root: &Root) -> Result<()> {
    root.remove(POLICY_RC_D)
}

/// Diverts `update-initramfs` (dpkg-divert(1) `--local --rename`) and puts a no-op in its
/// place, so kernel and initramfs-tools postinsts and triggers do not build it repeatedly.
pub fn divert_initramfs(root: &Root) -> Result<()> {
    run(root.path(), "dpkg-divert", &["--quiet", "--local", "--rename", "--divert", INITRAMFS_DIVERTED, "--add", INITRAMFS])?;
    root.write_file(INITRAMFS, b"#!/bin/sh\n# anemos: the initramfs is built once at the end of the installation.\nexit 0\n", 0o755)
}

/// Undoes [`divert_initramfs`]; returns whether a real `update-initramfs` is now in place.
pub fn restore_initramfs(root: &Root) -> Result<bool> {
    root.remove(INITRAMFS)?;
    run(root.path(), "dpkg-divert", &["--quiet", "--local", "--rename", "--remove", INITRAMFS])?;
    Ok(root.exists(INITRAMFS))
}
