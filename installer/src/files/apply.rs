//! The three steps, in makeimg's order: files (every tree in order, so later trees win),
//! then patches (every tree in order, each patch in path order), then templates (for one
//! target path, the last tree's template wins). Each step scans the trees itself, so it can
//! run alone; symlink loops in the trees are refused before anything is written.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::root::RootDir;
use super::tree::{check_links, scan, Entry, EntryKind, InputDir, Tree};
use super::{patch, template};

/// What a step wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub files: usize,
    pub symlinks: usize,
    pub patches: usize,
    pub templates: usize,
}

fn scan_all(inputs: &[InputDir]) -> Result<Vec<Tree>> {
    let trees = inputs.iter().map(scan).collect::<Result<Vec<_>>>()?;
    check_links(&trees)?;
    Ok(trees)
}

/// Copies regular files (mode kept, owned by root) and symlinks (not followed) of every
/// input tree into `root`.
pub fn apply_files(root: &Path, inputs: &[InputDir]) -> Result<Applied> {
    let trees = scan_all(inputs)?;
    let dir = RootDir::open(root)?;
    let mut done = Applied::default();
    for t in &trees {
        for e in &t.entries {
            let shown = format!("{}/{}", t.dir.label, e.rel);
            match &e.kind {
                EntryKind::File => {
                    let data = std::fs::read(t.source(e)).with_context(|| format!("reading {shown}"))?;
                    dir.write_file(&e.rel, &data, e.mode).with_context(|| format!("copying {shown}"))?;
                    done.files += 1;
                }
                EntryKind::Symlink { target } => {
                    dir.symlink(&e.rel, target).with_context(|| format!("copying {shown}"))?;
                    done.symlinks += 1;
                }
                EntryKind::Dir | EntryKind::Patch | EntryKind::Template => {}
            }
        }
    }
    Ok(done)
}

/// Applies every `*.makeimg.patch` to the file of the same path in `root`.
pub fn apply_patches(root: &Path, inputs: &[InputDir]) -> Result<Applied> {
    let trees = scan_all(inputs)?;
    let dir = RootDir::open(root)?;
    let mut done = Applied::default();
    for t in &trees {
        for e in t.entries.iter().filter(|e| e.kind == EntryKind::Patch) {
            let shown = format!("{}/{}", t.dir.label, e.rel);
            let text = std::fs::read(t.source(e)).with_context(|| format!("reading {shown}"))?;
            let target = e.target_path();
            if dir.read(target)?.is_none() {
                anyhow::bail!("{shown}: /{target} does not exist in the target; a patch changes a file a package installed (to add a file, put it in the tree without the suffix)");
            }
            dir.rewrite(target, |old| patch::apply(old, &text).map_err(|err| anyhow::anyhow!("{shown}: {err} /{target}")))?;
            done.patches += 1;
        }
    }
    Ok(done)
}

/// Which templates to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Templates {
    All,
    /// Those that use no secret (an image that is not to hold any).
    WithoutSecrets,
}

/// Renders every `*.makeimg.template` into the same path without the suffix. The file gets
/// the template's mode, at most 0600 when it uses a secret.
pub fn render_templates(root: &Path, inputs: &[InputDir], vars: &BTreeMap<String, String>, secrets: &BTreeMap<String, Vec<u8>>, which: Templates) -> Result<Applied> {
    let trees = scan_all(inputs)?;
    let dir = RootDir::open(root)?;
    let mut winners: BTreeMap<&str, (&Tree, &Entry)> = BTreeMap::new();
    for t in &trees {
        for e in t.entries.iter().filter(|e| e.kind == EntryKind::Template) {
            winners.insert(e.target_path(), (t, e));
        }
    }
    let mut done = Applied::default();
    for (target, (t, e)) in winners {
        let shown = format!("{}/{}", t.dir.label, e.rel);
        let src = std::fs::read(t.source(e)).with_context(|| format!("reading {shown}"))?;
        let uses_secret = template::names(&src).map(|n| !n.secrets.is_empty()).unwrap_or(true);
        if uses_secret && which == Templates::WithoutSecrets {
            log::info!("{shown}: uses a secret; rendered on each host, not in the image");
            continue;
        }
        let out = template::render(&src, vars, secrets).map_err(|err| anyhow::anyhow!("{shown}:{err}"))?;
        let mode = if uses_secret { e.mode & 0o600 } else { e.mode };
        dir.write_file(target, &out, mode).with_context(|| format!("rendering {shown}"))?;
        done.templates += 1;
    }
    Ok(done)
}

/// Files, then patches, then templates.
pub fn apply_all(root: &Path, inputs: &[InputDir], vars: &BTreeMap<String, String>, secrets: &BTreeMap<String, Vec<u8>>, which: Templates) -> Result<Applied> {
    let f = apply_files(root, inputs)?;
    let p = apply_patches(root, inputs)?;
    let t = render_templates(root, inputs, vars, secrets, which)?;
    Ok(Applied { files: f.files, symlinks: f.symlinks, patches: p.patches, templates: t.templates })
}
