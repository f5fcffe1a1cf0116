//! btrfs subvolumes (`subvolumes=`): made at the top level of a btrfs partition or logical
//! volume, each mounted by `subvol=NAME`; and the rules they follow.

use serde::{Deserialize, Serialize};

use super::rules::{At, Problem};
use super::types::{Filesystem, Layout, PartSize};

/// A subvolume of the btrfs on a partition or logical volume: at its top level, or inside
/// another subvolume of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subvolume {
    /// The partition (or, failing that, logical volume) holding the file system, by name.
    pub filesystem: String,
    /// Its path from the top level (`@`, `@home`, or `@/.snapshots` inside `@`).
    pub name: String,
    pub mountpoint: Option<String>,
    /// fstab options besides `subvol=NAME`.
    pub options: String,
}

/// What holds a mounted file system: a partition, or a logical volume of the volume group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder<'a> {
    Partition(&'a str),
    Volume(&'a str),
}

impl Holder<'_> {
    /// The partition's or volume's name.
    pub fn name(&self) -> &str {
        match self {
            Holder::Partition(n) | Holder::Volume(n) => n,
        }
    }
}

impl Layout {
    /// The file system `name` refers to: a partition's, else a logical volume's.
    pub fn filesystem(&self, name: &str) -> Option<(Holder<'_>, Filesystem, PartSize)> {
        if let Some(p) = self.partitions.iter().find(|p| p.name == name) {
            return Some((Holder::Partition(&p.name), p.fs, p.size));
        }
        let v = self.volume_group.iter().flat_map(|g| &g.volumes).find(|v| v.name == name)?;
        Some((Holder::Volume(&v.name), v.fs, v.size))
    }

    /// The subvolumes made on the file system of partition or volume `name`.
    pub fn subvolumes_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Subvolume> + 'a {
        self.subvolumes.iter().filter(move |s| s.filesystem == name)
    }

    /// Whether any partition or volume holds btrfs.
    pub fn uses_btrfs(&self) -> bool {
        self.partitions.iter().any(|p| p.fs == Filesystem::Btrfs) || self.volume_group.iter().flat_map(|g| &g.volumes).any(|v| v.fs == Filesystem::Btrfs)
    }

    /// What holds the file system mounted at `mountpoint`: the partition or volume mounted
    /// there, or whose subvolume is.
    pub fn holder_of(&self, mountpoint: &str) -> Option<Holder<'_>> {
        if let Some(p) = self.partitions.iter().find(|p| p.mountpoint.as_deref() == Some(mountpoint)) {
            return Some(Holder::Partition(&p.name));
        }
        if let Some(v) = self.volume_group.iter().flat_map(|g| &g.volumes).find(|v| v.mountpoint.as_deref() == Some(mountpoint)) {
            return Some(Holder::Volume(&v.name));
        }
        self.filesystem(&self.subvolume_at(mountpoint)?.filesystem).map(|(h, _, _)| h)
    }

    /// What holds `/`.
    pub fn root_holder(&self) -> Option<Holder<'_>> {
        self.holder_of("/")
    }

    /// The subvolume mounted at `mountpoint`, if one is.
    pub fn subvolume_at(&self, mountpoint: &str) -> Option<&Subvolume> {
        self.subvolumes.iter().find(|s| s.mountpoint.as_deref() == Some(mountpoint))
    }

    /// The subvolume mounted at `/`, if `/` is one.
    pub fn root_subvolume(&self) -> Option<&Subvolume> {
        self.subvolume_at("/")
    }

    /// The rules of `subvolumes=`: each names a btrfs partition or volume, a name btrfs
    /// takes, once per file system; and btrfs partitions and volumes are large enough.
    pub(super) fn subvolume_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, s) in self.subvolumes.iter().enumerate() {
            let mut at = |message: String| out.push(Problem { at: At::Subvolume(i), message });
            match self.filesystem(&s.filesystem) {
                None => at(format!("there is no partition or volume {:?} to make subvolume {:?} on", s.filesystem, s.name)),
                Some((_, fs, _)) if fs != Filesystem::Btrfs => at(format!("{:?} holds {}: subvolumes need btrfs", s.filesystem, fs.name())),
                Some(_) => {}
            }
            if let Some(bad) = s.name.split('/').find_map(name_problem) {
                at(format!("subvolume name {:?}: {bad}", s.name));
            } else if let Some((parent, _)) = s.name.rsplit_once('/') {
                // Made inside its parent, which must be made before it.
                if !self.subvolumes[..i].iter().any(|t| t.filesystem == s.filesystem && t.name == parent) {
                    at(format!("subvolume {:?} is inside {parent:?}, which is not a subvolume listed before it on {:?}", s.name, s.filesystem));
                }
            }
            if self.subvolumes[..i].iter().any(|t| t.filesystem == s.filesystem && t.name == s.name) {
                at(format!("subvolume {:?} is named twice on {:?}", s.name, s.filesystem));
            }
        }
        let min = crate::fs::btrfs::MIN_SIZE;
        for (i, p) in self.partitions.iter().enumerate().filter(|(_, p)| p.fs == Filesystem::Btrfs) {
            if matches!(p.size, PartSize::Bytes(b) if b < min) {
                out.push(Problem { at: At::Partition(i), message: format!("partition {:?} is too small for btrfs: give it at least {}M", p.name, min >> 20) });
            }
        }
        for (i, v) in self.volume_group.iter().flat_map(|g| &g.volumes).enumerate().filter(|(_, v)| v.fs == Filesystem::Btrfs) {
            if matches!(v.size, PartSize::Bytes(b) if b < min) {
                out.push(Problem { at: At::Volume(i), message: format!("volume {:?} is too small for btrfs: give it at least {}M", v.name, min >> 20) });
            }
        }
        out
    }
}

/// Why btrfs would refuse one component of a subvolume's path (or the install could not
/// mount it), if so.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 255 {
        Some("use 1 to 255 characters")
    } else if name == "." || name == ".." {
        Some("not . or ..")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || "@_.-+".contains(c)) {
        Some("use letters, digits, '@', '_', '.', '-', '+' (and '/' between a parent subvolume and its child)")
    } else {
        None
    }
}
