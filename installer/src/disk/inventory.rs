//! Block devices as sysfs describes them (there is no udev in the initramfs): size, sector
//! sizes, identity (model, serial, WWN and the /dev/disk/by-id names udev would give),
//! flags, partitions, what is mounted, and the signatures found on each by magic bytes.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::signature::{probe, Signature};
use crate::sysfs::{read_str, read_u64};

/// A whole disk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name, e.g. `vda`.
    pub name: String,
    /// Device node, e.g. `/dev/vda`.
    pub path: PathBuf,
    /// `major:minor`
    pub dev: String,
    pub size: u64,
    pub logical_sector: u32,
    pub physical_sector: u32,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    /// Names under /dev/disk/by-id that udev would create.
    pub by_id: Vec<String>,
    pub removable: bool,
    pub read_only: bool,
    /// `gpt` or `msdos` when a table is present.
    pub table: Option<String>,
    /// The table's own identity: the GPT disk GUID or the MBR disk signature
    /// ([`super::identity::table_id`]).
    pub table_id: Option<String>,
    pub signatures: Vec<Signature>,
    /// Where this disk itself is mounted (partitions list their own).
    pub mounted: Vec<String>,
    pub partitions: Vec<Partition>,
}

/// A partition the kernel knows on a disk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub path: PathBuf,
    pub dev: String,
    pub number: u32,
    /// Offset from the start of the disk, in bytes.
    pub start: u64,
    pub size: u64,
    pub by_id: Vec<String>,
    pub signatures: Vec<Signature>,
    pub mounted: Vec<String>,
}

impl Disk {
    /// Whether anything on this disk (itself or a partition) is mounted.
    pub fn in_use(&self) -> bool {
        !self.mounted.is_empty() || self.partitions.iter().any(|p| !p.mounted.is_empty())
    }
}

/// Lists the disks under `sysfs/block`, skipping RAM disks and unattached loop devices.
/// `mountinfo` is the text of /proc/self/mountinfo; devices are opened read-only to look
/// for signatures (if that is not allowed, none are reported).
pub fn inventory(sysfs: &Path, mountinfo: &str) -> Result<Vec<Disk>> {
    let block = sysfs.join("block");
    let entries = std::fs::read_dir(&block).with_context(|| format!("listing {}", block.display()))?;
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    let mut disks = Vec::new();
    for name in names {
        let dir = block.join(&name);
        let size = read_u64(&dir.join("size")).unwrap_or(0) * 512;
        if name.starts_with("ram") || name.starts_with("zram") || (name.starts_with("loop") && size == 0) {
            continue;
        }
        disks.push(disk(&dir, name, size, mountinfo)?);
    }
    Ok(disks)
}

fn disk(dir: &Path, name: String, size: u64, mountinfo: &str) -> Result<Disk> {
    let path = PathBuf::from("/dev").join(&name);
    let dev = read_str(&dir.join("dev")).unwrap_or_default();
    let logical = read_u64(&dir.join("queue/logical_block_size")).unwrap_or(512) as u32;
    let model = read_str(&dir.join("device/model"));
    let serial = read_str(&dir.join("device/serial")).or_else(|| read_str(&dir.join("serial"))).or_else(|| vpd_serial(dir));
    let wwn = read_str(&dir.join("device/wwid")).or_else(|| read_str(&dir.join("wwid")));
    let by_id = by_id_names(dir, &name, model.as_deref(), serial.as_deref(), wwn.as_deref());
    let file = File::open(&path).ok();
    let signatures = file.as_ref().map(|f| probe(f, 0, size, logical as u64)).unwrap_or_default();
    let table = if signatures.contains(&Signature::GptPrimary) || signatures.contains(&Signature::GptBackup) {
        Some("gpt".to_string())
    } else if signatures.contains(&Signature::Mbr) {
        Some("msdos".to_string())
    } else {
        None
    };
    let table_id = file.as_ref().and_then(|f| {
        let mut head = vec![0u8; 2 * logical as usize];
        std::os::unix::fs::FileExt::read_exact_at(f, &mut head, 0).ok()?;
        super::identity::table_id(&head, logical as usize)
    });
    let partitions = partitions(dir, &name, &by_id, file.as_ref(), logical as u64, mountinfo)?;
    Ok(Disk {
        mounted: mounts_of(mountinfo, &dev),
        dev,
        size,
        logical_sector: logical,
        physical_sector: read_u64(&dir.join("queue/physical_block_size")).unwrap_or(512) as u32,
        model,
        serial,
        wwn,
        by_id,
        removable: read_u64(&dir.join("removable")).unwrap_or(0) == 1,
        read_only: read_u64(&dir.join("ro")).unwrap_or(0) == 1,
        table,
        table_id,
        signatures,
        partitions,
        path,
        name,
    })
}

fn partitions(dir: &Path, disk: &str, disk_ids: &[String], file: Option<&File>, sector: u64, mountinfo: &str) -> Result<Vec<Partition>> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let pdir = entry.path();
        if !name.starts_with(disk) || !pdir.join("partition").exists() {
            continue;
        }
        let number = read_u64(&pdir.join("partition")).unwrap_or(0) as u32;
        let start = read_u64(&pdir.join("start")).unwrap_or(0) * 512;
        let size = read_u64(&pdir.join("size")).unwrap_or(0) * 512;
        let dev = read_str(&pdir.join("dev")).unwrap_or_default();
        parts.push(Partition {
            path: PathBuf::from("/dev").join(&name),
            by_id: disk_ids.iter().map(|id| format!("{id}-part{number}")).collect(),
            signatures: file.map(|f| probe(f, start, size, sector)).unwrap_or_default(),
            mounted: mounts_of(mountinfo, &dev),
            dev,
            number,
            start,
            size,
            name,
        });
    }
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

/// The names udev's persistent-storage rules give a disk under /dev/disk/by-id, computed
/// from the same sysfs attributes: `virtio-SERIAL`, `ata-MODEL_SERIAL`, `nvme-MODEL_SERIAL`,
/// `scsi-…`, and `wwn-0x…` / `nvme-eui.…` where the device reports a world-wide name.
fn by_id_names(dir: &Path, name: &str, model: Option<&str>, serial: Option<&str>, wwn: Option<&str>) -> Vec<String> {
    let clean = |s: &str| s.split_whitespace().collect::<Vec<_>>().join("_");
    let mut ids = Vec::new();
    let vendor = read_str(&dir.join("device/vendor"));
    if name.starts_with("vd") {
        if let Some(s) = serial {
            ids.push(format!("virtio-{}", clean(s)));
        }
    } else if name.starts_with("nvme") {
        if let (Some(m), Some(s)) = (model, serial) {
            ids.push(format!("nvme-{}_{}", clean(m), clean(s)));
        }
    } else if let (Some(m), Some(s)) = (model, serial) {
        match vendor.as_deref() {
            Some("ATA") => ids.push(format!("ata-{}_{}", clean(m), clean(s))),
            Some(v) => ids.push(format!("scsi-S{}_{}_{}", clean(v), clean(m), clean(s))),
            None => {}
        }
    }
    if let Some(w) = wwn {
        if let Some(hex) = w.strip_prefix("naa.") {
            ids.push(format!("wwn-0x{}", hex.to_ascii_lowercase()));
        } else if let Some(eui) = w.strip_prefix("eui.") {
            ids.push(format!("nvme-eui.{}", eui.to_ascii_lowercase()));
        }
    }
    ids
}

/// The unit serial number from SCSI VPD page 0x80 (header: 4 bytes, then the serial).
fn vpd_serial(dir: &Path) -> Option<String> {
    let page = std::fs::read(dir.join("device/vpd_pg80")).ok()?;
    let len = *page.get(3)? as usize;
    let s = String::from_utf8_lossy(page.get(4..4 + len)?).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Mount points whose source device is `dev` (`major:minor`) in /proc/self/mountinfo.
fn mounts_of(mountinfo: &str, dev: &str) -> Vec<String> {
    if dev.is_empty() {
        return Vec::new();
    }
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&dev)).then(|| crate::mount::unescape(f.get(4).copied().unwrap_or("")))
        })
        .collect()
}
