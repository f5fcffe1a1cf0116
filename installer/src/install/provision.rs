//! The IMGBUILD's `provision()`, run by the target's own shell in its chroot, after the
//! files: `/proc`, `/sys`, `/dev` and `/run` are there, the IMGBUILD's variables and the
//! effective `format` are in the environment, every command is traced (`set -x`) so the log
//! shows what ran, and a non-zero exit stops the install with the failing command's output.

use std::collections::VecDeque;

use anyhow::{bail, Context, Result};

use super::Install;
use crate::packages::chroot;

const SCRIPT_DIR: &str = "run/anemos";

pub fn run(inst: &mut Install) -> Result<()> {
    let _mounts = chroot::Mounts::setup(&crate::packages::extract::Root::open(&inst.root)?)?;
    let dir = inst.root.join(SCRIPT_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::copy(inst.payload.imgbuild(), dir.join("IMGBUILD")).context("copying the IMGBUILD into the new system")?;
    let script = format!("set -e; cd /; . /{SCRIPT_DIR}/IMGBUILD; set -x; provision");
    let mut cmd = chroot::command(&inst.root, "/bin/sh", &["-c", &script])?;
    for (k, v) in inst.variables() {
        if is_name(&k) {
            cmd.env(k, v);
        }
    }
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut on_line = |line: &str| {
        log::info!("provision: {line}");
        tail.push_back(line.to_string());
        if tail.len() > 30 {
            tail.pop_front();
        }
    };
    cmd.stderr(std::process::Stdio::piped());
    let (status, stderr) = crate::exec::output_lines(&mut cmd, &mut on_line)?;
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    for line in stderr.lines() {
        log::info!("provision: {line}");
    }
    if !status.success() {
        let last_command = stderr.lines().rev().find(|l| l.starts_with('+')).unwrap_or("(unknown)").to_string();
        let mut out: Vec<String> = tail.into_iter().collect();
        out.extend(stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().map(String::from));
        bail!("provision() failed ({status}); the last command was: {}\n--- its output ---\n{}", last_command.trim_start_matches('+').trim(), out.join("\n"));
    }
    std::fs::remove_dir_all(&dir).ok();
    log::info!("provision() finished");
    Ok(())
}

/// Environment variable names a POSIX shell accepts.
fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f == '_' || f.is_ascii_alphabetic()) && c.all(|x| x == '_' || x.is_ascii_alphanumeric())
}
