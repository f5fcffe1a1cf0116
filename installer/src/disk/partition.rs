//! Writing a planned layout to a disk (block device or image file): wipe what would
//! confuse the kernel or the new system (old signatures at both ends of the disk — the
//! primary and backup GPT, md superblocks — and at both ends of each new partition), write
//! the table, make the kernel see it.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::layout::PlannedLayout;
use crate::fs::Target;
use crate::plan::TableType;
use crate::sys;

/// Writes the partition table of `layout` (GPT with protective MBR, or msdos).
pub fn write_table(disk: &Target, layout: &PlannedLayout) -> Result<()> {
    let mut dev = disk.io();
    match layout.table {
        TableType::Gpt => write_gpt(&mut dev, layout),
        TableType::Msdos => write_mbr(&mut dev, layout),
    }
    .context("writing the partition table")?;
    dev.flush().context("flushing the partition table")?;
    disk.sync().context("syncing the partition table")
}

fn write_gpt<D: std::io::Read + Write + Seek>(dev: &mut D, layout: &PlannedLayout) -> Result<()> {
    let ss = layout.sector_size;
    let mut gpt = gptman::GPT::new_from(dev, ss, layout.disk_guid.to_bytes_le()).context("creating a GPT header")?;
    for p in &layout.parts {
        gpt[p.number] = gptman::GPTPartitionEntry {
            partition_type_guid: p.type_guid.to_bytes_le(),
            unique_partition_guid: p.part_guid.to_bytes_le(),
            starting_lba: p.start / ss,
            ending_lba: (p.start + p.size) / ss - 1,
            attribute_bits: 0,
            partition_name: p.name.as_str().into(),
        };
    }
    dev.seek(SeekFrom::Start(0))?;
    gptman::GPT::write_protective_mbr_into(dev, ss).context("writing the protective MBR")?;
    gpt.write_into(dev).context("writing the GPT headers and entries")?;
    Ok(())
}

fn write_mbr<D: std::io::Read + Write + Seek>(dev: &mut D, layout: &PlannedLayout) -> Result<()> {
    let ss = layout.sector_size as u32;
    let mut mbr = mbrman::MBR::new_from(dev, ss, layout.mbr_signature.to_le_bytes()).context("creating an MBR")?;
    for (i, p) in layout.parts.iter().enumerate() {
        if p.mbr_type == 0 {
            bail!("partition {} has no msdos type", p.name);
        }
        let sys = p.mbr_type;
        let start = u32::try_from(p.start / ss as u64).context("partition start beyond msdos's 2 TiB")?;
        let sectors = u32::try_from(p.size / ss as u64).context("partition size beyond msdos's 2 TiB")?;
        // The plan marks the root partition active: some BIOSes boot nothing otherwise.
        let boot = if p.bootable { mbrman::BOOT_ACTIVE } else { mbrman::BOOT_INACTIVE };
        mbr[i + 1] = mbrman::MBRPartitionEntry { boot, first_chs: mbrman::CHS::empty(), sys, last_chs: mbrman::CHS::empty(), starting_lba: start, sectors };
    }
    mbr.write_into(dev).context("writing the MBR")?;
    Ok(())
}

/// Makes the kernel use the new table: BLKRRPART, or (when that is refused, e.g. a loop
/// device without partition scanning or a busy disk) BLKPG per partition. Then waits for the
/// partition devices to appear.
pub fn reread(dev: &File, disk: &Path, layout: &PlannedLayout) -> Result<Vec<PathBuf>> {
    if let Err(e) = sys::reread_partitions(dev) {
        log::info!("BLKRRPART on {} refused ({e}); telling the kernel partition by partition", disk.display());
        for n in 1..=128 {
            let _ = sys::delete_partition(dev, n);
        }
        for p in &layout.parts {
            sys::add_partition(dev, p.number, p.start, p.size).with_context(|| format!("adding partition {} to the kernel's view of {}", p.number, disk.display()))?;
        }
    }
    let nodes: Vec<PathBuf> = layout.parts.iter().map(|p| partition_path(disk, p.number)).collect();
    wait_for(&nodes, Duration::from_secs(10))?;
    Ok(nodes)
}

/// Makes a half-installed disk unbootable: the partition table (and with it any boot code
/// in the first sectors) is zeroed at both ends, while the kernel keeps using the partitions
/// it knows, so mounted filesystems stay readable from the rescue console.
pub fn invalidate(disk: &Path, table: TableType, sector: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(disk).with_context(|| format!("opening {}", disk.display()))?;
    let target = Target::from_file(f, &disk.display().to_string())?;
    // Everything before the first (1 MiB aligned) partition: MBR, GPT header and entries,
    // GRUB's core image in the msdos gap.
    target.zero(0, super::layout::ALIGN.min(target.len()))?;
    if table == TableType::Gpt {
        // The backup entries (16 KiB) and header (one sector).
        let tail = 16384 + sector;
        target.zero(target.len().saturating_sub(tail), tail.min(target.len()))?;
    }
    target.sync()
}

/// The GPT name of partition `number` of `disk`, if it has a GPT.
pub fn gpt_name(disk: &Path, number: u32) -> Option<String> {
    let mut f = File::open(disk).ok()?;
    let gpt = gptman::GPT::find_from(&mut f).ok()?;
    let entry = gpt.iter().find(|(n, e)| *n == number && e.is_used())?.1;
    Some(entry.partition_name.as_str().to_string())
}

/// `/dev/vda` + 1 → `/dev/vda1`; `/dev/nvme0n1` + 1 → `/dev/nvme0n1p1`.
pub fn partition_path(disk: &Path, number: u32) -> PathBuf {
    let s = disk.to_string_lossy();
    if s.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{s}p{number}"))
    } else {
        PathBuf::from(format!("{s}{number}"))
    }
}

fn wait_for(nodes: &[PathBuf], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let missing: Vec<&PathBuf> = nodes.iter().filter(|n| !n.exists()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("partition devices {} did not appear within {} s after the table was written", missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "), timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything, in order, on a disk or image file: wipe the disk's ends, write the table,
/// wipe each new partition's ends, and (on a block device) make the kernel see the new
/// partitions. A block device is opened exclusively, so a disk with a mounted filesystem
/// or another user is refused by the kernel itself. Returns the partition device nodes
/// (empty for an image file).
pub fn apply(path: &Path, layout: &PlannedLayout) -> Result<Vec<PathBuf>> {
    let disk = Target::open(path)?;
    if disk.len() != layout.disk_size {
        bail!("{} is {} bytes, but the layout was planned for {} bytes; nothing was written", path.display(), disk.len(), layout.disk_size);
    }
    log::info!("writing to {}:\n{layout}", path.display());
    disk.wipe_signatures().with_context(|| format!("wiping old signatures on {}", path.display()))?;
    write_table(&disk, layout).with_context(|| format!("partitioning {}", path.display()))?;
    for p in &layout.parts {
        disk.slice(p.start, p.size)?.wipe_signatures().with_context(|| format!("wiping old signatures in partition {} of {}", p.number, path.display()))?;
    }
    disk.sync()?;
    if !disk.is_block_device() {
        return Ok(Vec::new());
    }
    // A second handle for the ioctls; the exclusive one is released before the partitions
    // are formatted (they are opened exclusively in turn).
    let dev = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    drop(disk);
    reread(&dev, path, layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths() {
        assert_eq!(partition_path(Path::new("/dev/vda"), 2), Path::new("/dev/vda2"));
        assert_eq!(partition_path(Path::new("/dev/nvme0n1"), 1), Path::new("/dev/nvme0n1p1"));
        assert_eq!(partition_path(Path::new("/dev/loop3"), 1), Path::new("/dev/loop3p1"));
    }
}
