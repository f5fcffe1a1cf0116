//! Shared helpers: running commands, the built binaries, scratch space, host apt sources.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is in the workspace").to_path_buf()
}

pub fn anemos_bin() -> PathBuf {
    workspace().join("target/x86_64-unknown-linux-musl/release/anemos")
}

pub fn init_bin() -> PathBuf {
    workspace().join("target/x86_64-unknown-linux-musl/release/anemos-init")
}

/// A scratch directory under target/bench/NAME (emptied first).
pub fn scratch(name: &str) -> Result<PathBuf> {
    let dir = workspace().join("target/bench").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs a shell command, returning stdout; failure carries stderr.
pub fn sh(cmd: &str) -> Result<String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!("`{cmd}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The host's apt sources in deb822 form, the mirror baseline tools are pointed at (never a
/// host name of our own).
pub fn host_apt_sources() -> Result<PathBuf> {
    for p in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("no apt sources on this host (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)")
}
