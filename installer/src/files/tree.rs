//! Input trees (`files/` and any further input directories): what is in them, read without
//! following any symbolic link. Regular files and symlinks are copied; `*.makeimg.patch` and
//! `*.makeimg.template` files are applied and rendered instead; other file types (fifos,
//! sockets, devices) are skipped, as makeimg skips them.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub const PATCH_SUFFIX: &str = ".makeimg.patch";
pub const TEMPLATE_SUFFIX: &str = ".makeimg.template";

/// Symlinks followed before a resolution counts as a loop (Linux's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink { target: String },
    Patch,
    Template,
}

/// One member of an input tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the tree, `/`-separated, as it is in the tree (suffix included).
    pub rel: String,
    pub kind: EntryKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
}

impl Entry {
    /// Where the entry lands in the target: its path without a patch/template suffix.
    pub fn target_path(&self) -> &str {
        match self.kind {
            EntryKind::Patch => self.rel.strip_suffix(PATCH_SUFFIX).unwrap_or(&self.rel),
            EntryKind::Template => self.rel.strip_suffix(TEMPLATE_SUFFIX).unwrap_or(&self.rel),
            _ => &self.rel,
        }
    }
}

/// An input directory: where it is, and how messages name it (`files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDir {
    pub path: PathBuf,
    pub label: String,
}

/// A scanned input tree, entries sorted by path.
#[derive(Debug, Clone)]
pub struct Tree {
    pub dir: InputDir,
    pub entries: Vec<Entry>,
    /// Paths skipped because they are neither files, directories nor symlinks.
    pub skipped: Vec<String>,
}

impl Tree {
    pub fn source(&self, e: &Entry) -> PathBuf {
        self.dir.path.join(&e.rel)
    }

    pub fn count(&self, f: impl Fn(&EntryKind) -> bool) -> usize {
        self.entries.iter().filter(|e| f(&e.kind)).count()
    }
}

/// Reads an input directory. A missing directory is an empty tree.
pub fn scan(dir: &InputDir) -> Result<Tree> {
    let mut tree = Tree { dir: dir.clone(), entries: Vec::new(), skipped: Vec::new() };
    match std::fs::symlink_metadata(&dir.path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(tree),
        Err(e) => return Err(e).with_context(|| format!("reading input directory {}", dir.path.display())),
        Ok(m) if !m.is_dir() => bail!("input directory {} is not a directory (a symlink to one is not followed either)", dir.path.display()),
        Ok(_) => {}
    }
    walk(&dir.path, "", &mut tree)?;
    tree.entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(tree)
}

fn walk(base: &Path, rel: &str, tree: &mut Tree) -> Result<()> {
    let here = base.join(rel);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&here).with_context(|| format!("listing {}", here.display()))? {
        let entry = entry.with_context(|| format!("listing {}", here.display()))?;
        let name = entry.file_name().into_string().map_err(|n| anyhow::anyhow!("{}/{}: file names must be UTF-8", tree.dir.label, Path::new(rel).join(n).display()))?;
        names.push(name);
    }
    names.sort();
    for name in names {
        let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        let path = base.join(&child);
        let shown = format!("{}/{child}", tree.dir.label);
        let md = std::fs::symlink_metadata(&path).with_context(|| format!("reading {shown}"))?;
        let mode = md.permissions().mode() & 0o7777;
        let ft = md.file_type();
        let special = name.ends_with(PATCH_SUFFIX) || name.ends_with(TEMPLATE_SUFFIX);
        let kind = if ft.is_dir() {
            tree.entries.push(Entry { rel: child.clone(), kind: EntryKind::Dir, mode });
            walk(base, &child, tree)?;
            continue;
        } else if ft.is_symlink() {
            if special {
                bail!("{shown}: is a symlink; a patch or template must be a regular file (links are not followed)");
            }
            let target = std::fs::read_link(&path).with_context(|| format!("reading link {shown}"))?;
            let target = target.into_os_string().into_string().map_err(|_| anyhow::anyhow!("{shown}: link target is not UTF-8"))?;
            EntryKind::Symlink { target }
        } else if ft.is_file() && name.ends_with(PATCH_SUFFIX) {
            EntryKind::Patch
        } else if ft.is_file() && name.ends_with(TEMPLATE_SUFFIX) {
            EntryKind::Template
        } else if ft.is_file() {
            EntryKind::File
        } else {
            tree.skipped.push(child);
            continue;
        };
        if special && (name == PATCH_SUFFIX || name == TEMPLATE_SUFFIX) {
            bail!("{shown}: the name is only a suffix; it must name the file it patches or renders");
        }
        tree.entries.push(Entry { rel: child, kind, mode });
    }
    Ok(())
}

/// The union of the trees as the target will see it (later trees win), for following links.
fn namespace(trees: &[Tree]) -> BTreeMap<String, (EntryKind, String)> {
    let mut map = BTreeMap::new();
    for t in trees {
        for e in &t.entries {
            let mut parent = e.rel.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                map.entry(p.to_string()).or_insert_with(|| (EntryKind::Dir, format!("{}/{p}", t.dir.label)));
                parent = p;
            }
            map.insert(e.target_path().to_string(), (e.kind.clone(), format!("{}/{}", t.dir.label, e.rel)));
        }
    }
    map
}

/// Follows every symlink of the trees through the trees themselves (absolute targets from
/// the tree root, as in the target) and reports the first one that loops. A link that leads
/// out of the trees is fine: it may point at something a package installs.
pub fn check_links(trees: &[Tree]) -> Result<()> {
    let map = namespace(trees);
    for (path, (kind, shown)) in &map {
        if let EntryKind::Symlink { .. } = kind {
            follow(&map, path).map_err(|chain| anyhow::anyhow!("{shown}: symlink loop ({})", chain.join(" -> ")))?;
        }
    }
    Ok(())
}

fn follow(map: &BTreeMap<String, (EntryKind, String)>, start: &str) -> std::result::Result<(), Vec<String>> {
    let mut parts: Vec<String> = start.split('/').map(String::from).collect();
    let mut chain = vec![format!("/{start}")];
    let mut seen = std::collections::BTreeSet::from([start.to_string()]);
    let mut i = 0;
    let mut hops = 0;
    while i < parts.len() {
        let prefix = parts[..=i].join("/");
        match map.get(&prefix) {
            Some((EntryKind::Symlink { target }, _)) => {
                hops += 1;
                chain.push(target.clone());
                if hops > MAX_LINKS {
                    chain.truncate(6);
                    chain.push("…".into());
                    return Err(chain);
                }
                let mut base: Vec<String> = if target.starts_with('/') { Vec::new() } else { parts[..i].to_vec() };
                for c in target.split('/') {
                    match c {
                        "" | "." => {}
                        ".." => {
                            base.pop();
                        }
                        c => base.push(c.to_string()),
                    }
                }
                let rest: Vec<String> = parts[i + 1..].to_vec();
                base.extend(rest);
                parts = base;
                // The same path again: a cycle, shown once round.
                if !seen.insert(parts.join("/")) {
                    return Err(chain);
                }
                i = 0;
                if parts.is_empty() {
                    return Ok(());
                }
            }
            Some(_) => i += 1,
            None => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(links: &[(&str, &str)], files: &[&str]) -> Tree {
        let mut entries: Vec<Entry> = links.iter().map(|(p, t)| Entry { rel: p.to_string(), kind: EntryKind::Symlink { target: t.to_string() }, mode: 0o777 }).collect();
        entries.extend(files.iter().map(|f| Entry { rel: f.to_string(), kind: EntryKind::File, mode: 0o644 }));
        Tree { dir: InputDir { path: "/nonexistent".into(), label: "files".into() }, entries, skipped: Vec::new() }
    }

    #[test]
    fn loops_are_found_and_dangling_links_are_fine() {
        assert!(check_links(&[tree(&[("etc/a", "b"), ("etc/b", "/etc/a")], &[])]).unwrap_err().to_string().contains("symlink loop (/etc/a -> b -> /etc/a"));
        assert!(check_links(&[tree(&[("self", "self/x")], &[])]).is_err());
        check_links(&[tree(&[("etc/x", "/usr/lib/x"), ("lib", "usr/lib"), ("usr/lib/y", "../../lib/z")], &["etc/f"])]).unwrap();
        check_links(&[tree(&[("up", "../../..")], &[])]).unwrap();
        // A loop made by two trees together.
        assert!(check_links(&[tree(&[("a", "b")], &[]), tree(&[("b", "a")], &[])]).is_err());
    }
}
