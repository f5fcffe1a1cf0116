//! Writing a planned layout to a disk (block device or image file): wipe what would
//! confuse the kernel or the new system, write the table, make the kernel see it.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::layout::{PlannedLayout, TableKind, ALIGN};
use crate::sys;

/// Bytes cleared at each end of the disk and of each new partition: covers every signature
/// in `signature.rs` (btrfs at 64 KiB, md 0.90 in the last 64–128 KiB, the GPT backup).
const WIPE: u64 = ALIGN;

/// Zeroes a byte range: BLKZEROOUT on block devices (cheap where the device can write
/// zeroes or unmap), a punched hole (falling back to written zeros) in image files.
pub fn zero(dev: &File, offset: u64, len: u64) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let ctx = || format!("zeroing {len} bytes at offset {offset}");
    if dev.metadata().with_context(ctx)?.file_type().is_block_device() {
        return sys::zero_out(dev, offset, len).with_context(ctx);
    }
    let punched = rustix::fs::fallocate(dev, rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE, offset, len);
    if punched.is_ok() {
        return Ok(());
    }
    let chunk = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        dev.write_all_at(&chunk[..n], offset + done).with_context(ctx)?;
        done += n as u64;
    }
    Ok(())
}

/// Clears the first and last MiB of the disk: old MBR/GPT (primary and backup), RAID, LVM
/// and filesystem signatures on the whole disk.
pub fn wipe_disk(dev: &File, size: u64) -> Result<()> {
    zero(dev, 0, WIPE.min(size)).context("wiping the start of the disk")?;
    if size > WIPE {
        zero(dev, size - WIPE, WIPE).context("wiping the end of the disk")?;
    }
    Ok(())
}

/// Clears the first and last MiB of every new partition, so no old filesystem shows
/// through before (or instead of) the new one.
pub fn wipe_partitions(dev: &File, layout: &PlannedLayout) -> Result<()> {
    for p in &layout.parts {
        let n = WIPE.min(p.size);
        zero(dev, p.start, n).with_context(|| format!("wiping the start of partition {}", p.number))?;
        if p.size > 2 * WIPE {
            zero(dev, p.start + p.size - WIPE, WIPE).with_context(|| format!("wiping the end of partition {}", p.number))?;
        }
    }
    Ok(())
}

/// Writes the partition table of `layout` (GPT with protective MBR, or msdos).
pub fn write_table(dev: &mut File, layout: &PlannedLayout) -> Result<()> {
    match layout.table {
        TableKind::Gpt => write_gpt(dev, layout),
        TableKind::Mbr => write_mbr(dev, layout),
    }
    .context("writing the partition table")?;
    dev.flush().context("flushing the partition table")?;
    dev.sync_all().context("syncing the partition table")
}

fn write_gpt(dev: &mut File, layout: &PlannedLayout) -> Result<()> {
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

fn write_mbr(dev: &mut File, layout: &PlannedLayout) -> Result<()> {
    let ss = layout.sector_size as u32;
    let mut mbr = mbrman::MBR::new_from(dev, ss, layout.mbr_signature.to_le_bytes()).context("creating an MBR")?;
    for (i, p) in layout.parts.iter().enumerate() {
        let sys = p.kind.mbr_type().with_context(|| format!("partition {} has no msdos type", p.name))?;
        let start = u32::try_from(p.start / ss as u64).context("partition start beyond msdos's 2 TiB")?;
        let sectors = u32::try_from(p.size / ss as u64).context("partition size beyond msdos's 2 TiB")?;
        // The root (or only) partition is marked active: some BIOSes boot nothing otherwise.
        let boot = if p.kind == super::layout::PartKind::Root || layout.parts.len() == 1 {
            mbrman::BOOT_ACTIVE
        } else {
            mbrman::BOOT_INACTIVE
        };
        mbr[i + 1] = mbrman::MBRPartitionEntry {
            boot,
            first_chs: mbrman::CHS::empty(),
            sys,
            last_chs: mbrman::CHS::empty(),
            starting_lba: start,
            sectors,
        };
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
            sys::add_partition(dev, p.number, p.start, p.size)
                .with_context(|| format!("adding partition {} to the kernel's view of {}", p.number, disk.display()))?;
        }
    }
    let nodes: Vec<PathBuf> = layout.parts.iter().map(|p| partition_path(disk, p.number)).collect();
    wait_for(&nodes, Duration::from_secs(10))?;
    Ok(nodes)
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
            bail!(
                "partition devices {} did not appear within {} s after the table was written",
                missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// Everything, in order, on a disk or image file: wipe the disk's ends, write the table,
/// wipe each new partition's ends, and (on a block device) make the kernel see the new
/// partitions. A block device is opened exclusively, so a disk with a mounted filesystem
/// or another user is refused by the kernel itself. Returns the partition device nodes
/// (empty for an image file).
pub fn apply(path: &Path, layout: &PlannedLayout) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::OpenOptionsExt;
    let is_block = std::fs::metadata(path)
        .with_context(|| format!("looking at {}", path.display()))?
        .file_type()
        .is_block_device();
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true);
    if is_block {
        options.custom_flags(rustix::fs::OFlags::EXCL.bits() as i32);
    }
    let mut dev = options
        .open(path)
        .with_context(|| format!("opening {} for writing (exclusively: it must not be mounted or in use)", path.display()))?;
    let size = dev.seek(SeekFrom::End(0)).with_context(|| format!("finding the size of {}", path.display()))?;
    if size != layout.disk_size {
        bail!("{} is {} bytes, but the layout was planned for {} bytes; nothing was written", path.display(), size, layout.disk_size);
    }
    log::info!("writing to {}:\n{layout}", path.display());
    wipe_disk(&dev, size).with_context(|| format!("wiping old signatures on {}", path.display()))?;
    write_table(&mut dev, layout).with_context(|| format!("partitioning {}", path.display()))?;
    wipe_partitions(&dev, layout).with_context(|| format!("wiping old signatures in the new partitions of {}", path.display()))?;
    dev.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    if is_block {
        reread(&dev, path, layout)
    } else {
        Ok(Vec::new())
    }
}
