//! Writing the payload on the workstation. The archive is [`Archive`]'s reproducible newc
//! (sorted, root-owned, mtime 0) compressed with ruzstd, which has no threads and no
//! clock, so identical inputs give identical bytes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::{DIR, IMGBUILD_FILE, PLAN_FILE, PROJECT_DIR, SECRETS_DIR};
use crate::files::{scan, EntryKind, InputDir};
use crate::initramfs::Archive;
use crate::plan::Plan;

/// The payload archive for a checked plan and its revealed secrets.
pub fn archive(project: &Path, plan: &Plan, secrets: &BTreeMap<String, Vec<u8>>) -> Result<Archive> {
    let mut a = Archive::new();
    let mut json = serde_json::to_vec_pretty(plan).context("serialising the plan")?;
    json.push(b'\n');
    a.file(&format!("{DIR}/{PLAN_FILE}"), 0o644, json)?;
    let imgbuild = std::fs::read(project.join("IMGBUILD")).with_context(|| format!("reading {}/IMGBUILD", project.display()))?;
    a.file(&format!("{DIR}/{IMGBUILD_FILE}"), 0o644, imgbuild)?;
    for input in &plan.inputs {
        let tree = scan(&InputDir { path: project.join(&input.source), label: input.source.clone() })?;
        let base = format!("{DIR}/{}", input.payload_dir);
        a.dir(&base, 0o755)?;
        for e in &tree.entries {
            let path = format!("{base}/{}", e.rel);
            match &e.kind {
                EntryKind::Dir => a.dir(&path, e.mode)?,
                EntryKind::Symlink { target } => a.symlink(&path, target)?,
                EntryKind::File | EntryKind::Patch | EntryKind::Template => {
                    let data = std::fs::read(tree.source(e)).with_context(|| format!("reading {}/{}", input.source, e.rel))?;
                    a.file(&path, e.mode, data)?;
                }
            }
        }
    }
    if !plan.secrets.is_empty() {
        a.dir(&format!("{DIR}/{SECRETS_DIR}"), 0o700)?;
    }
    for s in &plan.secrets {
        let value = secrets.get(&s.name).with_context(|| format!("secret {:?} was not revealed", s.name))?;
        a.file(&format!("{DIR}/{SECRETS_DIR}/{}", s.name), 0o600, value.clone())?;
    }
    for rel in &plan.project_files {
        let data = std::fs::read(project.join(rel)).with_context(|| format!("reading {}/{rel}", project.display()))?;
        a.file(&format!("{DIR}/{PROJECT_DIR}/{rel}"), 0o644, data)?;
    }
    Ok(a)
}

/// The payload bytes: the archive, zstd-compressed.
pub fn pack(project: &Path, plan: &Plan, secrets: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>> {
    let cpio = archive(project, plan, secrets)?.to_bytes()?;
    Ok(ruzstd::encoding::compress_to_vec(&cpio[..], ruzstd::encoding::CompressionLevel::Fastest))
}
