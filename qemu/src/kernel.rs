//! The kernel the harness boots: Debian's linux-image-amd64, fetched into a cache outside the
//! repository by `qemu/fetch-kernel.sh` (`make kernel`).

use std::path::PathBuf;

use anyhow::{Context, Result};

/// A kernel image with its module tree.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// `…/lib/modules/RELEASE`
    pub modules_dir: PathBuf,
    pub release: String,
}

impl Kernel {
    /// The cached kernel: `$ANEMOS_TEST_KERNEL`, else `~/.cache/anemos/kernel/current`.
    pub fn cached() -> Result<Kernel> {
        let root = match std::env::var_os("ANEMOS_TEST_KERNEL") {
            Some(p) => PathBuf::from(p),
            None => cache_dir().join("kernel/current"),
        };
        let modules = root.join("lib/modules");
        let release = std::fs::read_dir(&modules)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .with_context(|| format!("no kernel in {}: run qemu/fetch-kernel.sh (make kernel)", root.display()))?;
        Ok(Kernel { vmlinuz: root.join(format!("boot/vmlinuz-{release}")), modules_dir: modules.join(&release), release })
    }
}

/// `$XDG_CACHE_HOME/anemos` or `~/.cache/anemos`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"))).unwrap_or_else(|| PathBuf::from("/tmp")).join("anemos")
}
