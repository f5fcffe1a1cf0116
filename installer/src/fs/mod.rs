//! Filesystems made in-process: ext4, btrfs, FAT32 (the EFI system partition) and swap, on a
//! [`Target`] — a block device such as `/dev/vda2` in the init, or a byte range of an image
//! file on the host. No external mkfs binary is run; the static init has none.
//!
//! [`make`] formats and returns what fstab needs ([`FsInfo`]: type, UUID as blkid shows
//! it, label); [`probe`] reads the same from an existing filesystem, for disks that are
//! kept and mounted by UUID. [`fat::FatWriter`] copies files into a FAT filesystem without
//! mounting it (bootloader files on host-built images).

pub mod btrfs;
pub mod ext4;
pub mod fat;
mod fat_fix;
mod probe;
pub mod swap;
pub mod target;
mod uuid;

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};

pub use fat::FatWriter;
pub use probe::{probe, probe_uuid};
pub use target::{Target, TargetIo};
pub use uuid::{format_uuid, random_bytes, random_uuid};

/// The filesystems we make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsKind {
    Ext4,
    Btrfs,
    /// FAT32, for EFI system partitions.
    Vfat,
    Swap,
}

impl FsKind {
    /// The type name blkid reports and fstab uses.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Btrfs => "btrfs",
            FsKind::Vfat => "vfat",
            FsKind::Swap => "swap",
        }
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FsKind {
    type Err = anyhow::Error;

    /// `ext4`, `btrfs`, `vfat` or `fat32`, `swap` (case-insensitive).
    fn from_str(name: &str) -> Result<FsKind> {
        match name.to_ascii_lowercase().as_str() {
            "ext4" => Ok(FsKind::Ext4),
            "btrfs" => Ok(FsKind::Btrfs),
            "vfat" | "fat32" => Ok(FsKind::Vfat),
            "swap" => Ok(FsKind::Swap),
            _ => bail!("unknown filesystem type '{name}': supported are ext4, btrfs, vfat (or fat32) and swap"),
        }
    }
}

/// Choices for [`make`]; `FsOptions::default()` is what mke2fs, mkfs.vfat and mkswap do.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Volume label: at most 16 bytes for ext4 and swap, 11 ASCII characters for FAT.
    pub label: Option<String>,
    /// The UUID (for FAT, its first four bytes are the volume id); random when `None`.
    pub uuid: Option<[u8; 16]>,
    /// Discard the whole range first: hole-punch a file, `BLKDISCARD` a device (default).
    pub discard: bool,
    /// ext4: leave inode tables for the kernel to zero after mounting (default), instead
    /// of zeroing them now. Only matters where discarding did not already zero them.
    pub lazy_itable_init: bool,
    /// Creation time in seconds since the epoch; now when `None`.
    pub time: Option<u64>,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions { label: None, uuid: None, discard: true, lazy_itable_init: true, time: None }
    }
}

/// What fstab and the installer need to know about a filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    pub kind: FsKind,
    /// The UUID as blkid prints it: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` for ext4 and
    /// swap, `XXXX-XXXX` (the volume id) for FAT.
    pub uuid: String,
    pub label: Option<String>,
}

impl FsInfo {
    /// The fstab source field: `UUID=…`.
    pub fn fstab_source(&self) -> String {
        format!("UUID={}", self.uuid)
    }
}

/// Makes a filesystem of `kind` over all of `target`.
pub fn make(kind: FsKind, target: &Target, options: &FsOptions) -> Result<FsInfo> {
    let uuid = match options.uuid {
        Some(u) => u,
        None => random_uuid()?,
    };
    let now = match options.time {
        Some(t) => t,
        None => now_secs(),
    };
    log::info!("making {kind} on {} ({} bytes)", target.name(), target.len());
    match kind {
        FsKind::Ext4 => make_ext4(target, options, uuid, now),
        FsKind::Btrfs => btrfs::make(target, options.label.as_deref(), uuid, now, options.discard),
        FsKind::Vfat => fat::make(target, options.label.as_deref(), uuid, options.discard),
        FsKind::Swap => swap::make(target, options.label.as_deref(), uuid),
    }
}

fn make_ext4(target: &Target, options: &FsOptions, uuid: [u8; 16], now: u64) -> Result<FsInfo> {
    let params = ext4::Ext4Params { label: label16(options.label.as_deref(), "ext4")?, uuid, hash_seed: random_uuid()?, now, discard: options.discard, lazy_itable_init: options.lazy_itable_init };
    ext4::make(target, &params)?;
    Ok(FsInfo { kind: FsKind::Ext4, uuid: format_uuid(&uuid), label: options.label.clone().filter(|l| !l.is_empty()) })
}

/// A label in a 16-byte, zero-padded field (ext4 `s_volume_name`, swap `volume_name`).
pub(crate) fn label16(label: Option<&str>, what: &str) -> Result<[u8; 16]> {
    let mut out = [0u8; 16];
    let label = label.unwrap_or("");
    if label.len() > 16 || label.contains('\0') {
        bail!("{what} label '{label}' is too long or has a NUL byte: at most 16 bytes");
    }
    out[..label.len()].copy_from_slice(label.as_bytes());
    Ok(out)
}

/// Seconds since the epoch (0 if the clock is before it).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_name() {
        assert_eq!("ext4".parse::<FsKind>().unwrap(), FsKind::Ext4);
        assert_eq!("FAT32".parse::<FsKind>().unwrap(), FsKind::Vfat);
        assert_eq!("vfat".parse::<FsKind>().unwrap(), FsKind::Vfat);
        assert_eq!("swap".parse::<FsKind>().unwrap(), FsKind::Swap);
        assert_eq!("btrfs".parse::<FsKind>().unwrap(), FsKind::Btrfs);
        let err = "xfs".parse::<FsKind>().unwrap_err().to_string();
        assert!(err.contains("'xfs'") && err.contains("ext4, btrfs, vfat (or fat32) and swap"), "{err}");
    }

    #[test]
    fn labels_are_checked() {
        assert_eq!(&label16(Some("root"), "ext4").unwrap()[..5], b"root\0");
        assert!(label16(Some("seventeen-bytes!!"), "ext4").is_err());
    }
}
