//! ext4, made in-process: the filesystem `mke2fs -t ext4` makes on Debian 12 (e2fsprogs
//! 1.47, `/etc/mke2fs.conf`), written by us because the init has no mke2fs and the `mkext4`
//! crate lacks `64bit`.
//!
//! Features, exactly mke2fs's: has_journal ext_attr resize_inode dir_index filetype extent
//! 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum;
//! 256-byte inodes, 16 groups per flex group, 5 % reserved, default mount options
//! user_xattr and acl, half_md4 directory hashes with a random seed, a random UUID, and the
//! same inode count, journal size, reserved GDT blocks and block placement as mke2fs for
//! the same size (`geometry`, `alloc`). Like mke2fs it drops `resize_inode` above 2^32
//! blocks and makes no journal below 8 MiB. Two differences: the block size is always
//! 4 KiB (mke2fs uses 1 KiB below 512 MiB), and beyond about 192 TiB, where mke2fs
//! switches to `meta_bg`, we refuse.
//!
//! On a device full of old data nothing stale may pass for metadata. What is written is
//! written whole: superblocks, descriptors, the primary reserved GDT blocks, the bitmaps
//! of groups that are not BLOCK_UNINIT, the first inode-table block, the directories and
//! the journal superblock. The rest is made safe as mke2fs makes it:
//! - A regular file is first hole-punched over its whole range (mke2fs's discard of an
//!   image file does the same): everything then reads as zeros, so inode tables are
//!   flagged ITABLE_ZEROED and the journal needs no writing. Image files stay sparse.
//! - A block device is discarded when asked (`BLKDISCARD`, which promises no zeros), then
//!   the journal body and the first and last MiB (old signatures such as MD RAID
//!   superblocks) are zeroed with `BLKZEROOUT`. Inode tables are left to the kernel's lazy
//!   init: every group but 0 is INODE_UNINIT, `bg_itable_unused` covers all never-used
//!   inodes, and without ITABLE_ZEROED the kernel zeroes the tables in the background after
//!   the first mount (mke2fs's `lazy_itable_init`). `lazy_itable_init = false` zeroes them
//!   up front instead.
//! - The journal superblock is clean (`s_start = 0`) with sequence 1, so nothing is
//!   replayed; the kernel enables checksum v3, seeded by the new UUID, at the first mount.
//!
//! Memory stays small at any size: per-group facts are computed on demand and the
//! descriptor table is streamed a megabyte at a time.

mod alloc;
mod csum;
mod geometry;
mod inode;
mod ondisk;
mod write;

use anyhow::{Context, Result};

use crate::fs::target::Target;
use alloc::Layout;
use geometry::{Geometry, BS, FIRST_INO, FLEX};
use ondisk::Super;
use write::{Ctx, Out};

/// Inputs of one ext4 format besides the target.
#[derive(Debug, Clone)]
pub struct Ext4Params {
    pub label: [u8; 16],
    pub uuid: [u8; 16],
    pub hash_seed: [u8; 16],
    /// Creation time, seconds since the epoch.
    pub now: u64,
    pub discard: bool,
    pub lazy_itable_init: bool,
}

/// Makes an ext4 filesystem over all of `target`.
pub fn make(target: &Target, p: &Ext4Params) -> Result<()> {
    let written_before = target.bytes_written();
    let geo = Geometry::new(target.len()).with_context(|| format!("planning ext4 on {}", target.name()))?;
    let layout = Layout::new(geo).with_context(|| format!("placing ext4's own files on {}", target.name()))?;
    let itable_zeroed = prepare(target, &layout, p)?;
    let ctx = Ctx { layout: &layout, fs_seed: csum::fs_seed(&p.uuid), uuid: p.uuid, now: p.now, itable_zeroed };
    let mut out = Out::new(target);
    let bb_sums = ctx.write_block_bitmaps(&mut out)?;
    let ib_sum = ctx.write_inode_bitmap(&mut out)?;
    ctx.write_inode_table(&mut out)?;
    ctx.write_directories(&mut out)?;
    ctx.write_resize(&mut out)?;
    ctx.write_journal(&mut out)?;
    let geo = &layout.geo;
    let mut sb = Super {
        free_blocks: (0..geo.groups).map(|g| layout.group_free(g)).sum(),
        free_inodes: geo.inodes() - u64::from(FIRST_INO),
        uuid: p.uuid,
        hash_seed: p.hash_seed,
        label: p.label,
        now: p.now,
        jnl_blocks: ctx.jnl_blocks(),
        overhead: (0..geo.groups).map(|g| geo.fixed_used(g)).sum::<u64>() + geo.journal_blocks,
        kbytes_written: 0,
    };
    ctx.write_gdt(&mut out, &sb, &bb_sums, ib_sum)?;
    out.flush()?;
    // The primary superblock goes last: until it is there, nothing looks like a filesystem.
    sb.kbytes_written = (target.bytes_written() - written_before + BS).div_ceil(1024);
    let mut block0 = vec![0u8; BS as usize];
    block0[1024..2048].copy_from_slice(&sb.encode(geo, 0));
    target.write_at(0, &block0)?;
    target.sync()
}

/// Clears what must not be read as stale data; returns whether the inode tables now read
/// as zeros.
fn prepare(target: &Target, layout: &Layout, p: &Ext4Params) -> Result<bool> {
    if p.discard && target.discard()? {
        return Ok(true);
    }
    target.wipe_signatures()?;
    for e in &layout.journal {
        target.zero(e.start * BS, e.len * BS).context("zeroing the journal")?;
    }
    if p.lazy_itable_init {
        return Ok(false);
    }
    let geo: &Geometry = &layout.geo;
    for leader in (0..geo.groups).step_by(FLEX as usize) {
        let [_, _, (start, len)] = geo.flex_runs(leader);
        target.zero(start * BS, len * BS).context("zeroing inode tables")?;
    }
    Ok(true)
}
