//! A reproducible newc ("070701") cpio archive, built in memory and written in one pass.
//!
//! Entries are kept sorted by path, so parents always precede their children, every missing
//! parent directory is created explicitly, owners are root, inode numbers are assigned in
//! order and every timestamp is the archive's single `mtime`. The same entries therefore
//! always give the same bytes, whatever order they were added in.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, ensure, Context, Result};

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        target: String,
    },
    CharDev {
        mode: u32,
        major: u32,
        minor: u32,
    },
    BlockDev {
        mode: u32,
        major: u32,
        minor: u32,
    },
    Fifo {
        mode: u32,
    },
    /// Another name for the regular file at `target` (an archive path).
    HardLink {
        target: String,
    },
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

/// A set of archive members keyed by their path (relative, no leading `/`).
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Node>,
    mtime: u32,
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the timestamp written for every member (default 0, the epoch).
    pub fn with_mtime(mut self, mtime: u32) -> Self {
        self.mtime = mtime;
        self
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.entries.get(path.trim_start_matches('/'))
    }

    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    /// Adds a member. Adding the same member twice is allowed; a different member at the
    /// same path is an error, as is a path that is not a clean relative path.
    pub fn add(&mut self, path: &str, node: Node) -> Result<()> {
        let path = clean(path)?;
        if let Some(old) = self.entries.get(&path) {
            ensure!(*old == node, "initramfs path /{path} added twice with different contents");
            return Ok(());
        }
        self.entries.insert(path, node);
        Ok(())
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.add(path, Node::Dir { mode })
    }

    pub fn file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) -> Result<()> {
        self.add(path, Node::File { mode, data: data.into() })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.add(path, Node::Symlink { target: target.to_string() })
    }

    /// Writes the archive (members, then the trailer) and returns the writer.
    pub fn write<W: Write>(&self, mut w: W) -> Result<W> {
        let entries = self.complete()?;
        // Hard-link groups: a target path and all its link names share one inode; the data
        // travels with the last member of the group (the GNU cpio convention, which the
        // kernel's unpacker also accepts).
        let mut links: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (path, node) in &entries {
            if let Node::HardLink { target } = node {
                let target = target.trim_start_matches('/');
                match entries.get(target) {
                    Some(Node::File { .. }) => links.entry(target).or_default().push(path),
                    _ => bail!("hard link /{path} points to /{target}, which is not a regular file in the archive"),
                }
            }
        }
        let mut inodes: BTreeMap<&str, u32> = BTreeMap::new();
        let mut next_ino = 1u32;
        for path in entries.keys() {
            let key = match entries.get(path.as_str()) {
                Some(Node::HardLink { target }) => target.trim_start_matches('/'),
                _ => path.as_str(),
            };
            if !inodes.contains_key(key) {
                inodes.insert(key, next_ino);
                next_ino += 1;
            }
        }
        // The last member (in archive order) of each hard-link group carries the data.
        let mut carrier: BTreeMap<&str, &str> = BTreeMap::new();
        for (target, names) in &links {
            let last = names.iter().copied().chain(std::iter::once(*target)).max().unwrap_or(target);
            carrier.insert(target, last);
        }
        for (path, node) in &entries {
            let group = match node {
                Node::HardLink { target } => Some(target.trim_start_matches('/')),
                Node::File { .. } if links.contains_key(path.as_str()) => Some(path.as_str()),
                _ => None,
            };
            let ino_key = group.unwrap_or(path.as_str());
            let ino = inodes[ino_key];
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match node {
                Node::Dir { mode } => (S_IFDIR | mode, &[], (0, 0)),
                Node::File { mode, data } => (S_IFREG | mode, data.as_slice(), (0, 0)),
                Node::Symlink { target } => (S_IFLNK | 0o777, target.as_bytes(), (0, 0)),
                Node::CharDev { mode, major, minor } => (S_IFCHR | mode, &[], (*major, *minor)),
                Node::BlockDev { mode, major, minor } => (S_IFBLK | mode, &[], (*major, *minor)),
                Node::Fifo { mode } => (S_IFIFO | mode, &[], (0, 0)),
                Node::HardLink { target } => match entries.get(target.trim_start_matches('/')) {
                    Some(Node::File { mode, data }) => (S_IFREG | mode, data.as_slice(), (0, 0)),
                    _ => bail!("hard link /{path} lost its target"),
                },
            };
            let (nlink, data) = match group {
                Some(g) => {
                    let n = links[g].len() as u32 + 1;
                    (n, if carrier[g] == path.as_str() { data } else { &[] })
                }
                None => (if matches!(node, Node::Dir { .. }) { 2 } else { 1 }, data),
            };
            let size = u32::try_from(data.len()).with_context(|| format!("/{path} is larger than newc's 4 GiB limit"))?;
            let mut writer = cpio::newc::Builder::new(path).ino(ino).mode(mode).uid(0).gid(0).nlink(nlink).mtime(self.mtime).rdev_major(rdev.0).rdev_minor(rdev.1).write(w, size);
            writer.write_all(data).with_context(|| format!("writing /{path} into the archive"))?;
            w = writer.finish().with_context(|| format!("finishing /{path} in the archive"))?;
        }
        cpio::newc::trailer(w).context("writing the cpio trailer")
    }

    /// Serialises the archive into a byte vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.write(Vec::new())
    }

    /// The members plus every parent directory that was not added explicitly.
    fn complete(&self) -> Result<BTreeMap<String, Node>> {
        let mut all = self.entries.clone();
        for path in self.entries.keys() {
            let mut parent = path.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                match all.get(p) {
                    None => {
                        all.insert(p.to_string(), Node::Dir { mode: 0o755 });
                    }
                    Some(Node::Dir { .. }) => {}
                    Some(_) => bail!("/{p} is both a parent directory of /{path} and not a directory"),
                }
                parent = p;
            }
        }
        Ok(all)
    }
}

/// Normalises an archive path: strips a leading `/`, refuses `..`, empty components and NULs.
fn clean(path: &str) -> Result<String> {
    let rel = path.trim_start_matches('/').trim_end_matches('/');
    ensure!(!rel.is_empty(), "empty path for an initramfs member");
    for part in rel.split('/') {
        ensure!(!part.is_empty() && part != "." && part != ".." && !part.contains('\0'), "initramfs path {path:?} is not a clean relative path");
    }
    Ok(rel.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_adding_does_not_change_bytes() {
        let mut a = Archive::new();
        a.file("etc/hosts", 0o644, "127.0.0.1 localhost\n").unwrap();
        a.symlink("bin", "usr/bin").unwrap();
        a.dir("usr/bin", 0o755).unwrap();
        let mut b = Archive::new();
        b.dir("usr/bin", 0o755).unwrap();
        b.symlink("bin", "usr/bin").unwrap();
        b.file("/etc/hosts", 0o644, "127.0.0.1 localhost\n").unwrap();
        assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
    }

    #[test]
    fn conflicting_duplicates_and_escapes_are_refused() {
        let mut a = Archive::new();
        a.file("x", 0o644, "1").unwrap();
        a.file("x", 0o644, "1").unwrap();
        assert!(a.file("x", 0o644, "2").is_err());
        assert!(a.file("../etc/passwd", 0o644, "").is_err());
        assert!(a.file("a//b", 0o644, "").is_err());
    }

    #[test]
    fn parents_are_created_and_read_back() {
        let mut a = Archive::new();
        a.file("lib/modules/x/kernel/a.ko", 0o644, vec![1, 2, 3]).unwrap();
        let bytes = a.to_bytes().unwrap();
        let mut names = Vec::new();
        let mut r = &bytes[..];
        loop {
            let reader = cpio::NewcReader::new(r).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            names.push(reader.entry().name().to_string());
            r = reader.finish().unwrap();
        }
        assert_eq!(names, ["lib", "lib/modules", "lib/modules/x", "lib/modules/x/kernel", "lib/modules/x/kernel/a.ko"]);
    }
}
