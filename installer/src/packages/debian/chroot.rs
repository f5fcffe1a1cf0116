//! Debian's side of running the target's programs (on top of the shared
//! [`crate::packages::chroot`]): dpkg's environment, a `policy-rc.d` that keeps daemons from
//! starting (invoke-rc.d(8): exit status 101 means "action forbidden"), `update-initramfs`
//! diverted to a no-op until [`super::finish`], and dpkg's "Setting up" lines as progress.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

pub use crate::packages::chroot::{Mounts, tail};
use crate::packages::extract::Root;

/// A command run inside `root` with dpkg's non-interactive environment.
pub fn command(root: &Path, program: &str, args: &[&str]) -> Result<Command> {
    let mut cmd = crate::packages::chroot::command(root, program, args)?;
    cmd.env("DEBIAN_FRONTEND", "noninteractive").env("DEBCONF_NONINTERACTIVE_SEEN", "true").env("DEBIAN_PRIORITY", "critical");
    Ok(cmd)
}

/// Runs `program args…` in `root` with dpkg's environment; output goes to the log, a failure
/// carries its tail.
pub fn run(root: &Path, program: &str, args: &[&str]) -> Result<()> {
    crate::packages::chroot::run_command(root, command(root, program, args)?, program, args)
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
        bail!("`dpkg {}` in {} failed ({status}):\n{}", args.join(" "), root.display(), tail(&stderr));
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
