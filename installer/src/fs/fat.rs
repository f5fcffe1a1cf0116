//! FAT32 for EFI system partitions, made and filled with the `fatfs` crate on a
//! [`Target`] range (the UEFI specification asks for FAT32 on the system partition).
//!
//! Formatting takes the cluster size Microsoft's table gives (512 B up to 260 MiB, 4 KiB up
//! to 8 GiB, more above), a volume id from the first four bytes of the UUID passed in
//! (blkid shows it as `XXXX-XXXX`), and the label both in the boot sector and as a
//! volume-label entry in the root directory, where blkid and Windows look first (both
//! written by fatfs; without a label neither names one, as with mkfs.fat). [`FatWriter`] creates directories and copies files in without a mount,
//! for images built on the host; file times are the current UTC time.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use fatfs::{Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions as FatFsOptions, Time, TimeProvider};

use super::target::{Target, TargetIo};
use super::{FsInfo, FsKind};

/// Characters a FAT label may not hold (besides control characters and lower case).
const LABEL_FORBIDDEN: &str = "\"*+,./:;<=>?[\\]|";
/// Bytes per directory entry.
const DIR_ENTRY: usize = 32;

/// The 11-byte, space-padded label field, "NO NAME" when there is none (mkfs.fat).
fn label11(label: Option<&str>) -> Result<[u8; 11]> {
    let label = label.unwrap_or("");
    let ok = label.len() <= 11 && label.bytes().all(|b| (0x20..0x7F).contains(&b) && !b.is_ascii_lowercase() && !LABEL_FORBIDDEN.contains(b as char));
    if !ok {
        bail!("FAT label '{label}' is not allowed: at most 11 upper-case ASCII letters, digits, spaces and -_!#$%&'()@^`{{}}~");
    }
    let mut out = *b"NO NAME    ";
    if !label.is_empty() {
        out = [b' '; 11];
        out[..label.len()].copy_from_slice(label.as_bytes());
    }
    Ok(out)
}

/// `XXXX-XXXX`, as blkid prints a FAT volume id.
pub fn format_volume_id(id: u32) -> String {
    format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)
}

/// Makes FAT32 over all of `target`.
pub fn make(target: &Target, label: Option<&str>, uuid: [u8; 16], discard: bool) -> Result<FsInfo> {
    let label_field = label11(label)?;
    let id = u32::from_le_bytes([uuid[0], uuid[1], uuid[2], uuid[3]]);
    if target.len() < 34 << 20 {
        bail!("{} is {} bytes: FAT32 needs at least 34 MiB (65525 clusters)", target.name(), target.len());
    }
    if target.len() / 512 > u64::from(u32::MAX) {
        bail!("{} is too big for FAT32 (at most 2 TiB with 512-byte sectors)", target.name());
    }
    if discard {
        target.discard()?;
    }
    target.wipe_signatures()?;
    let options = FormatVolumeOptions::new().fat_type(FatType::Fat32).volume_id(id).volume_label(label_field);
    fatfs::format_volume(target.io(), options).with_context(|| format!("formatting FAT32 on {}", target.name()))?;
    if label.is_none_or(str::is_empty) {
        // fatfs puts a "NO NAME" volume-label entry in the root directory, which blkid
        // would report as the label; mkfs.fat writes none.
        target.write_at(root_dir_offset(target)?, &[0u8; DIR_ENTRY])?;
    }
    // Count the free clusters into the FSInfo sector, as mkfs.fat does: fsck.fat
    // complains about an uninitialised free-cluster summary.
    let fs = FileSystem::new(target.io(), FatFsOptions::new()).with_context(|| format!("reopening the new FAT32 on {}", target.name()))?;
    fs.stats().with_context(|| format!("counting free clusters on {}", target.name()))?;
    fs.unmount().with_context(|| format!("writing the FSInfo sector on {}", target.name()))?;
    target.sync()?;
    Ok(FsInfo { kind: FsKind::Vfat, uuid: format_volume_id(id), label: label.filter(|l| !l.is_empty()).map(str::to_string) })
}

/// Byte offset of the root directory's first cluster, from the FAT32 boot sector.
fn root_dir_offset(target: &Target) -> Result<u64> {
    let mut bs = [0u8; 512];
    target.read_at(0, &mut bs)?;
    let u16at = |o: usize| u64::from(u16::from_le_bytes([bs[o], bs[o + 1]]));
    let u32at = |o: usize| u64::from(u32::from_le_bytes([bs[o], bs[o + 1], bs[o + 2], bs[o + 3]]));
    let (sector, per_cluster, reserved, fats) = (u16at(11), u64::from(bs[13]), u16at(14), u64::from(bs[16]));
    let (fat_size, root_cluster) = (u32at(36), u32at(44));
    let data_start = (reserved + fats * fat_size) * sector;
    Ok(data_start + root_cluster.saturating_sub(2) * per_cluster * sector)
}

/// The time source for file times written by [`FatWriter`]: now, in UTC.
#[derive(Debug)]
struct UtcClock;

static CLOCK: UtcClock = UtcClock;

impl TimeProvider for UtcClock {
    fn get_current_date(&self) -> Date {
        self.get_current_date_time().date
    }

    fn get_current_date_time(&self) -> DateTime {
        let secs = super::now_secs();
        let (year, month, day) = civil_from_days((secs / 86400) as i64);
        let s = secs % 86400;
        // FAT dates run from 1980 to 2107.
        let year = year.clamp(1980, 2107) as u16;
        DateTime { date: Date { year, month, day }, time: Time { hour: (s / 3600) as u16, min: (s / 60 % 60) as u16, sec: (s % 60) as u16, millis: 0 } }
    }
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u16, u16) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u16;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u16;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes directories and files into an existing FAT filesystem without mounting it.
pub struct FatWriter {
    fs: FileSystem<TargetIo>,
    target: Target,
}

impl FatWriter {
    /// Opens the FAT filesystem on `target`.
    pub fn open(target: &Target) -> Result<FatWriter> {
        let fs = FileSystem::new(target.io(), FatFsOptions::new().time_provider(&CLOCK)).with_context(|| format!("opening the FAT filesystem on {}", target.name()))?;
        Ok(FatWriter { fs, target: target.clone() })
    }

    /// Creates directory `path` (`/`-separated, from the root) and its parents.
    pub fn create_dir_all(&self, path: &str) -> Result<()> {
        let mut dir = self.fs.root_dir();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            dir = match dir.open_dir(part) {
                Ok(d) => d,
                Err(_) => dir.create_dir(part).with_context(|| format!("creating directory {path} on {}", self.target.name()))?,
            };
        }
        Ok(())
    }

    /// Writes `data` to file `path`, creating its directories and replacing an old file.
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<()> {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.create_dir_all(parent)?;
        }
        let mut file = self.fs.root_dir().create_file(path).with_context(|| format!("creating {path} on {}", self.target.name()))?;
        file.truncate().with_context(|| format!("truncating {path} on {}", self.target.name()))?;
        file.write_all(data).with_context(|| format!("writing {path} on {}", self.target.name()))?;
        file.flush().with_context(|| format!("writing {path} on {}", self.target.name()))
    }

    /// Copies the host file `host` to `path`.
    pub fn copy_file(&self, host: &Path, path: &str) -> Result<()> {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        self.write_file(path, &data)
    }

    /// Copies the host directory tree `host` into directory `path`.
    pub fn copy_tree(&self, host: &Path, path: &str) -> Result<()> {
        self.create_dir_all(path)?;
        let mut entries: Vec<_> =
            std::fs::read_dir(host).with_context(|| format!("listing {}", host.display()))?.collect::<std::io::Result<_>>().with_context(|| format!("listing {}", host.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let dest = format!("{}/{name}", path.trim_end_matches('/'));
            if e.file_type().with_context(|| format!("looking at {}", e.path().display()))?.is_dir() {
                self.copy_tree(&e.path(), &dest)?;
            } else {
                self.copy_file(&e.path(), &dest)?;
            }
        }
        Ok(())
    }

    /// Reads file `path`.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        let path = path.trim_start_matches('/');
        let mut file = self.fs.root_dir().open_file(path).with_context(|| format!("opening {path} on {}", self.target.name()))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).with_context(|| format!("reading {path} on {}", self.target.name()))?;
        Ok(data)
    }

    /// Writes the free-cluster summary, closes the filesystem, puts the "." and ".."
    /// entries of new directories right (see `fat_fix`) and flushes.
    pub fn finish(self) -> Result<()> {
        let target = self.target;
        self.fs.unmount().with_context(|| format!("closing the FAT filesystem on {}", target.name()))?;
        super::fat_fix::fix_dot_entries(&target).with_context(|| format!("repairing directories on {}", target.name()))?;
        target.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_fat_rules() {
        assert_eq!(&label11(Some("ESP")).unwrap(), b"ESP        ");
        assert_eq!(&label11(None).unwrap(), b"NO NAME    ");
        assert!(label11(Some("esp")).is_err());
        assert!(label11(Some("TWELVE CHARS")).is_err());
        assert!(label11(Some("A/B")).is_err());
    }

    #[test]
    fn dates_come_from_day_counts() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn volume_ids_print_like_blkid() {
        assert_eq!(format_volume_id(0x1A2B_3C4D), "1A2B-3C4D");
    }
}
