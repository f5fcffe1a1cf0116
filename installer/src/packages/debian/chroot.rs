//! Debian's side of running the target's programs (on top of the shared
//! [`crate::packages::chroot`]): dpkg's environment, a `policy-rc.d` that keeps daemons from
//! starting (invoke-rc.d(8): exit status 101 means "action forbidden"), `update-initramfs`
//! diverted to a no-op until [`super::finish`], and dpkg's "Setting up" lines as progress.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

pub use crate::packages::chroot::{tail, Mounts};
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
    // What each package's configuration printed, for the error if it fails.
    let mut output: Vec<(String, Vec<String>)> = Vec::new();
    let mut on_line = |line: &str| {
        log::debug!("[dpkg] {line}");
        if let Some(rest) = line.strip_prefix("Setting up ") {
            done += 1;
            let pkg = rest.split_whitespace().next().unwrap_or("");
            output.push((pkg.split(':').next().unwrap_or(pkg).to_string(), Vec::new()));
            if last.elapsed() >= std::time::Duration::from_secs(2) || done == total {
                last = std::time::Instant::now();
                log::info!("configuring {done}/{total}: {pkg}");
                crate::event::emit(crate::event::Event::Progress { phase: "configure".into(), done, total, unit: "packages".into() });
            }
        } else if let Some((_, lines)) = output.last_mut() {
            if lines.len() < 40 {
                lines.push(line.to_string());
            }
        }
    };
    let (status, stderr) = crate::exec::output_lines(&mut cmd, &mut on_line)?;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let report = failed_packages_report(&stderr, &output);
        for line in report.lines() {
            log::error!("{line}");
        }
        bail!("`dpkg {}` in {} failed ({status}):\n{}", args.join(" "), root.display(), if report.is_empty() { tail(stderr.as_bytes()) } else { report });
    }
    Ok(())
}

/// For each package dpkg names after "Errors were encountered while processing:", what its
/// configuration printed and the stderr lines just before dpkg's "error processing" line
/// (its maintainer script's own complaints), so the error says why, not only who.
fn failed_packages_report(stderr: &str, output: &[(String, Vec<String>)]) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let failed: Vec<&str> = match lines.iter().position(|l| l.starts_with("Errors were encountered while processing:")) {
        Some(i) => lines[i + 1..].iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect(),
        None => return String::new(),
    };
    let mut report = String::new();
    for pkg in failed {
        let name = pkg.split(':').next().unwrap_or(pkg);
        report.push_str(&format!("package {pkg} failed to configure:\n"));
        if let Some((_, out)) = output.iter().rev().find(|(p, _)| p == name) {
            for l in out.iter().filter(|l| !l.trim().is_empty()) {
                report.push_str(&format!("  | {l}\n"));
            }
        }
        if let Some(at) = lines.iter().position(|l| l.starts_with("dpkg: error processing package") && l.contains(name)) {
            for l in &lines[at.saturating_sub(12)..(at + 2).min(lines.len())] {
                report.push_str(&format!("  ! {l}\n"));
            }
        }
    }
    report
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

/// Undoes [`divert_initramfs`] where it was done (an installed system, such as an image
/// laid onto a host, has its own `update-initramfs` in place); returns whether a real
/// `update-initramfs` is now in place.
pub fn restore_initramfs(root: &Root) -> Result<bool> {
    let diversions = std::fs::read_to_string(root.path().join("var/lib/dpkg/diversions")).unwrap_or_default();
    if diverted(&diversions) {
        root.remove(INITRAMFS)?;
        run(root.path(), "dpkg-divert", &["--quiet", "--local", "--rename", "--remove", INITRAMFS])?;
    }
    Ok(root.exists(INITRAMFS))
}

/// Whether dpkg's list of diversions (from, to, package: a line each) holds ours.
fn diverted(diversions: &str) -> bool {
    let lines: Vec<&str> = diversions.lines().collect();
    lines.chunks(3).any(|d| d.first() == Some(&INITRAMFS) && d.get(1) == Some(&INITRAMFS_DIVERTED))
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_diversion_is_found_in_dpkgs_list_and_only_ours() {
        let ours = "/usr/sbin/update-initramfs\n/usr/sbin/update-initramfs.anemos\n:\n";
        assert!(super::diverted(&format!("/bin/sh\n/bin/sh.distrib\ndash\n{ours}")));
        assert!(!super::diverted("/usr/sbin/update-initramfs\n/usr/sbin/update-initramfs.distrib\n:\n"));
        assert!(!super::diverted(""));
    }

    #[test]
    fn the_report_names_the_failed_package_and_its_own_output() {
        let stderr = "invoke-rc.d: policy-rc.d denied execution of start.\npostconf: fatal: bad parameter value: (none)\ndpkg: error processing package postfix (--configure):\n installed postfix package post-installation script subprocess returned error exit status 1\nCreating SSH2 RSA key\nErrors were encountered while processing:\n postfix\n";
        let output = vec![("postfix".to_string(), vec!["Adding group `postfix'".to_string()]), ("ssh".to_string(), vec!["ok".to_string()])];
        let r = super::failed_packages_report(stderr, &output);
        assert!(r.starts_with("package postfix failed to configure:"), "{r}");
        assert!(r.contains("| Adding group `postfix'") && r.contains("! postconf: fatal: bad parameter value"), "{r}");
        assert!(!r.contains("| ok"), "{r}");
        assert_eq!(super::failed_packages_report("dpkg: warning\n", &output), "");
    }
}
