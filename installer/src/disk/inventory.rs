//! Block devices as sysfs describes them (there is no udev in the initramfs).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::sysfs::{read_str, read_u64};

/// A whole disk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name, e.g. `vda`.
    pub name: String,
    /// Device node, e.g. `/dev/vda`.
    pub path: PathBuf,
    pub size: u64,
    pub logical_sector: u32,
    pub physical_sector: u32,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub removable: bool,
    pub read_only: bool,
    pub partitions: Vec<Partition>,
}

/// A partition the kernel knows on a disk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub path: PathBuf,
    pub number: u32,
    /// Offset from the start of the disk, in bytes.
    pub start: u64,
    pub size: u64,
}

/// Lists the disks under `sysfs/block`, skipping RAM disks and unattached loop devices.
pub fn inventory(sysfs: &Path) -> Result<Vec<Disk>> {
    let block = sysfs.join("block");
    let mut disks = Vec::new();
    let entries = std::fs::read_dir(&block).with_context(|| format!("listing {}", block.display()))?;
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    for name in names {
        let dir = block.join(&name);
        let size = read_u64(&dir.join("size")).unwrap_or(0) * 512;
        if name.starts_with("ram") || (name.starts_with("loop") && size == 0) {
            continue;
        }
        disks.push(Disk {
            path: PathBuf::from("/dev").join(&name),
            size,
            logical_sector: read_u64(&dir.join("queue/logical_block_size")).unwrap_or(512) as u32,
            physical_sector: read_u64(&dir.join("queue/physical_block_size")).unwrap_or(512) as u32,
            model: read_str(&dir.join("device/model")),
            serial: read_str(&dir.join("device/serial")).or_else(|| read_str(&dir.join("serial"))),
            wwn: read_str(&dir.join("device/wwid")).or_else(|| read_str(&dir.join("wwid"))),
            removable: read_u64(&dir.join("removable")).unwrap_or(0) == 1,
            read_only: read_u64(&dir.join("ro")).unwrap_or(0) == 1,
            partitions: partitions(&dir, &name)?,
            name,
        });
    }
    Ok(disks)
}

fn partitions(dir: &Path, disk: &str) -> Result<Vec<Partition>> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let pdir = entry.path();
        if !name.starts_with(disk) || !pdir.join("partition").exists() {
            continue;
        }
        parts.push(Partition {
            path: PathBuf::from("/dev").join(&name),
            number: read_u64(&pdir.join("partition")).unwrap_or(0) as u32,
            start: read_u64(&pdir.join("start")).unwrap_or(0) * 512,
            size: read_u64(&pdir.join("size")).unwrap_or(0) * 512,
            name,
        });
    }
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}
