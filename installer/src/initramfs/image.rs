//! The base archive of an initramfs: `/init`, device nodes the kernel needs before the init
//! runs, the directories the init mounts on, the skeleton files, and kernel modules.

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use super::{Archive, Node};
use crate::kmod::ModuleIndex;

/// Kernel modules to carry: a subset of one module tree.
pub struct ModulesSpec<'a> {
    pub index: &'a ModuleIndex,
    /// The kernel release the tree belongs to (`uname -r` of that kernel).
    pub release: &'a str,
    /// Module names, already closed under dependencies.
    pub modules: &'a BTreeSet<String>,
}

/// Everything the base archive is made from.
pub struct BaseSpec<'a> {
    /// The static init binary, installed as `/init`.
    pub init: &'a [u8],
    /// Skeleton files: (path, mode, contents).
    pub skel: &'a [(&'a str, u32, &'a [u8])],
    pub modules: Option<ModulesSpec<'a>>,
}

/// Mount points and working directories the init expects to exist.
const DIRS: &[(&str, u32)] = &[("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("run", 0o755), ("tmp", 0o1777), ("mnt", 0o755), ("root", 0o700), ("etc", 0o755)];

/// Builds the base archive.
pub fn base_archive(spec: &BaseSpec) -> Result<Archive> {
    let mut archive = Archive::new();
    for (dir, mode) in DIRS {
        archive.dir(dir, *mode)?;
    }
    // The kernel opens /dev/console for the init's stdio before devtmpfs is mounted.
    archive.add("dev/console", Node::CharDev { mode: 0o600, major: 5, minor: 1 })?;
    archive.file("init", 0o755, spec.init)?;
    for (path, mode, data) in spec.skel {
        archive.file(path, *mode, *data).with_context(|| format!("adding skeleton file {path}"))?;
    }
    if let Some(m) = &spec.modules {
        add_modules(&mut archive, m)?;
    }
    Ok(archive)
}

fn add_modules(archive: &mut Archive, spec: &ModulesSpec) -> Result<()> {
    let base = format!("lib/modules/{}", spec.release);
    for name in spec.modules {
        let Some(entry) = spec.index.module(name) else { continue };
        let src = spec.index.root().join(&entry.path);
        let data = std::fs::read(&src).with_context(|| format!("reading kernel module {}", src.display()))?;
        archive.file(&format!("{base}/{}", entry.path), 0o644, data)?;
    }
    let files = spec.index.subset(spec.modules);
    archive.file(&format!("{base}/modules.dep"), 0o644, files.dep)?;
    archive.file(&format!("{base}/modules.alias"), 0o644, files.alias)?;
    archive.file(&format!("{base}/modules.softdep"), 0o644, files.softdep)?;
    archive.file(&format!("{base}/modules.builtin"), 0o644, files.builtin)?;
    Ok(())
}
