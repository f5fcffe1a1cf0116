//! The shape of a new ext4 filesystem, computed from its size alone: block and group
//! counts, inodes, reserved GDT blocks, journal size, and where each group's bitmaps and
//! inode table go. Every rule follows what e2fsprogs 1.47 `mke2fs -t ext4` does with
//! Debian's `/etc/mke2fs.conf` (`misc/mke2fs.c` PRS(), `lib/ext2fs/initialize.c`,
//! `alloc_tables.c`, `mkjournal.c`), so that the result matches it field by field, except
//! that the block size is always 4 KiB (mke2fs picks 1 KiB below 512 MiB; 4 KiB is what the
//! kernel and GRUB handle best, and the brief asks for it).

use anyhow::{bail, Result};

/// Block size in bytes.
pub const BS: u64 = 4096;
/// Bits in a bitmap block: the most blocks (and inodes) a group can have. mke2fs uses
/// this many blocks per group unless the inodes do not fit (see [`Geometry::new`]).
pub const BPG: u64 = BS * 8;
/// Inode size in bytes (mke2fs.conf `inode_size = 256`).
pub const INODE_SIZE: u64 = 256;
/// Groups per flex group (mke2fs default `flex_bg_size = 16`).
pub const FLEX: u64 = 16;
/// First inode for ordinary files: 1..=10 are reserved, 11 is lost+found.
pub const FIRST_INO: u32 = 11;
/// Group descriptor size with the 64bit feature.
pub const DESC_SIZE: u64 = 64;
/// Block numbers per indirect block.
const ADDR_PER_BLOCK: u64 = BS / 4;
/// The largest inode count: s_inodes_count is 32 bits.
const MAX_INODES: u64 = u32::MAX as u64;

/// Everything about the layout that follows from the size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Blocks in the filesystem (the device size, less a last group too small to keep).
    pub blocks: u64,
    /// Blocks per group: [`BPG`], or less when that many blocks would need more inodes
    /// per group than a bitmap holds.
    pub bpg: u64,
    /// Block groups.
    pub groups: u64,
    /// Blocks of group descriptors (in group 0 and in every backup group).
    pub desc_blocks: u64,
    /// Blocks reserved after the descriptors for online growth (resize_inode).
    pub rsv_gdt: u64,
    /// Inodes per group.
    pub ipg: u64,
    /// Inode-table blocks per group.
    pub ibpg: u64,
    /// Blocks reserved for root (5 %).
    pub r_blocks: u64,
    /// Journal blocks; 0 when the filesystem is too small for one (mke2fs drops it too).
    pub journal_blocks: u64,
    /// Whether the resize inode is made (not above 2^32 blocks, as mke2fs).
    pub resize_inode: bool,
}

/// Bytes-per-inode as mke2fs.conf's usage types give it: `floppy` below 3 MiB, `small`
/// below 512 MiB, `default`, `big` from 4 TiB, `huge` from 16 TiB (mke2fs PRS()).
fn inode_ratio(blocks: u64) -> u64 {
    let meg = (1 << 20) / BS;
    if blocks < 3 * meg {
        8192
    } else if blocks < 512 * meg {
        4096
    } else if blocks < 4 * 1024 * 1024 * meg {
        16384
    } else if blocks < 16 * 1024 * 1024 * meg {
        32768
    } else {
        65536
    }
}

/// Journal size in blocks for a filesystem of `blocks` blocks
/// (`ext2fs_default_journal_size`); `None` below 2048 blocks.
pub fn journal_size(blocks: u64) -> Option<u64> {
    let j = match blocks {
        b if b < 2048 => return None,
        b if b < 32768 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16384,
        b if b < 8192 * 1024 => 32768,
        b if b < 16384 * 1024 => 65536,
        b if b < 32768 * 1024 => 131072,
        _ => 262144,
    };
    Some(j)
}

/// Reserved GDT blocks: room for the descriptor table to grow to 1024 times the current
/// size or to 2^32 blocks, at most one indirect block's worth (`calc_reserved_gdt_blocks`).
fn reserved_gdt_blocks(blocks: u64, bpg: u64, desc_blocks: u64) -> u64 {
    let max_blocks: u64 = if blocks < 0xFFFF_FFFF / 1024 { blocks * 1024 } else { 0xFFFF_FFFF };
    let rsv_groups = max_blocks.div_ceil(bpg);
    let rsv = rsv_groups.div_ceil(BS / DESC_SIZE).saturating_sub(desc_blocks);
    rsv.min(ADDR_PER_BLOCK)
}

/// Inodes per group and inode-table blocks per group for `inodes` inodes in `groups`
/// groups: rounded up to fill whole table blocks, down to a multiple of 8, and shrunk until
/// the total fits in 32 bits (the `ipg_retry` loop of `ext2fs_initialize`).
fn inodes_per_group(inodes: u64, groups: u64) -> (u64, u64) {
    let mut ipg = inodes.div_ceil(groups);
    loop {
        let ibpg = (ipg * INODE_SIZE).div_ceil(BS);
        let filled = (ibpg * BS / INODE_SIZE).max(8) & !7;
        let ibpg = (filled * INODE_SIZE).div_ceil(BS);
        if filled * groups <= MAX_INODES {
            return (filled, ibpg);
        }
        ipg -= 1;
    }
}

impl Geometry {
    /// The geometry of an ext4 filesystem filling `bytes` bytes.
    pub fn new(bytes: u64) -> Result<Geometry> {
        let orig = bytes / BS;
        if orig >= 1 << 48 {
            bail!("{bytes} bytes is beyond what ext4 with 4 KiB blocks can address");
        }
        let inodes = (orig * BS / inode_ratio(orig)).min(MAX_INODES).max(u64::from(FIRST_INO) + 1);
        // mke2fs computes 5 % in floating point, and recomputes it the same way when it
        // drops a short last group; the same operations give the same rounding.
        let r_orig = (5.0 * orig as f64 / 100.0) as u64;
        let resize_inode = orig <= 0xFFFF_FFFF;
        let (mut blocks, mut bpg, mut r_blocks) = (orig, BPG, r_orig);
        // The retry loop of ext2fs_initialize: shrink groups by 8 blocks while their inodes
        // overflow a bitmap, drop a last group too small for its own metadata.
        loop {
            let groups = blocks.div_ceil(bpg);
            if groups == 0 {
                bail!("{bytes} bytes is too small for an ext4 filesystem");
            }
            if inodes.div_ceil(groups) > BPG {
                bpg -= 8;
                blocks = orig;
                continue;
            }
            let desc_blocks = groups.div_ceil(BS / DESC_SIZE);
            let (ipg, ibpg) = inodes_per_group(inodes, groups);
            let rsv_gdt = if resize_inode { reserved_gdt_blocks(blocks, bpg, desc_blocks) } else { 0 };
            if rsv_gdt + desc_blocks > bpg * 3 / 4 {
                // mke2fs switches to meta_bg here (beyond about 192 TiB); we do not make it.
                bail!("{bytes} bytes would need the meta_bg layout, which is not supported (at most about 192 TiB)");
            }
            let mut last_overhead = 2 + ibpg;
            if has_super(groups - 1) {
                last_overhead += 1 + desc_blocks + rsv_gdt;
            }
            let rem = blocks % bpg;
            if groups == 1 && rem != 0 && rem < last_overhead {
                bail!("{bytes} bytes is too small for an ext4 filesystem");
            }
            if rem != 0 && rem < last_overhead + 50 {
                blocks -= rem;
                let ratio = 100.0 * r_orig as f64 / orig as f64;
                r_blocks = (ratio * blocks as f64 / 100.0) as u64;
                continue;
            }
            let journal_blocks = journal_size(blocks).unwrap_or(0);
            let geo = Geometry { blocks, bpg, groups, desc_blocks, rsv_gdt, ipg, ibpg, r_blocks, journal_blocks, resize_inode };
            geo.check_flex_fits()?;
            return Ok(geo);
        }
    }

    /// Total inodes.
    pub fn inodes(&self) -> u64 {
        self.ipg * self.groups
    }

    /// First block of group `g`.
    pub fn group_start(&self, g: u64) -> u64 {
        g * self.bpg
    }

    /// Blocks in group `g` (the last one may be short).
    pub fn group_len(&self, g: u64) -> u64 {
        if g + 1 == self.groups {
            self.blocks - g * self.bpg
        } else {
            self.bpg
        }
    }

    /// Group holding block `b`.
    pub fn group_of(&self, b: u64) -> u64 {
        b / self.bpg
    }

    /// Blocks used at the start of a group with a superblock copy: the superblock, the
    /// descriptors and the reserved GDT blocks.
    pub fn super_blocks(&self) -> u64 {
        1 + self.desc_blocks + self.rsv_gdt
    }

    /// Groups of the flex group that `g` belongs to: its first group and how many.
    pub fn flex_of(&self, g: u64) -> (u64, u64) {
        let leader = g & !(FLEX - 1);
        (leader, (self.groups - leader).min(FLEX))
    }

    /// Spacing between the block-bitmap, inode-bitmap and inode-table runs of a flex group
    /// (`table_offset` in `ext2fs_allocate_group_table`): a full flex group's size, except
    /// that the last flex group packs its tables by its own group count, unless it has just
    /// one group.
    fn table_offset(&self, leader: u64) -> u64 {
        if leader + FLEX < self.groups {
            return FLEX;
        }
        let t = (self.groups - 1) & (FLEX - 1);
        if t == 0 {
            FLEX
        } else {
            t + 1
        }
    }

    /// First block of the metadata of the flex group led by `leader`: right after the
    /// reserved GDT blocks in group 0, the group's first block elsewhere (flex leaders
    /// are even, so never hold a backup superblock).
    fn flex_base(&self, leader: u64) -> u64 {
        if leader == 0 {
            self.super_blocks()
        } else {
            self.group_start(leader)
        }
    }

    /// Where group `g`'s block bitmap, inode bitmap and inode table are.
    pub fn tables(&self, g: u64) -> GroupTables {
        let (leader, _) = self.flex_of(g);
        let base = self.flex_base(leader);
        let t = self.table_offset(leader);
        let i = g - leader;
        GroupTables { block_bitmap: base + i, inode_bitmap: base + t + i, inode_table: base + 2 * t + i * self.ibpg }
    }

    /// The three runs of metadata blocks a flex leader holds, as (start, len).
    pub fn flex_runs(&self, leader: u64) -> [(u64, u64); 3] {
        let (_, n) = self.flex_of(leader);
        let first = self.tables(leader);
        [(first.block_bitmap, n), (first.inode_bitmap, n), (first.inode_table, n * self.ibpg)]
    }

    fn check_flex_fits(&self) -> Result<()> {
        let mut leader = 0;
        while leader < self.groups {
            let [_, _, (table, len)] = self.flex_runs(leader);
            if table + len > self.group_start(leader) + self.group_len(leader) {
                bail!("the inode tables of groups {leader}.. do not fit in group {leader}; choose another size");
            }
            leader += FLEX;
        }
        Ok(())
    }

    /// Blocks taken by fixed metadata in group `g` (superblock copy, descriptors,
    /// reserved GDT, and the flex group's bitmaps and tables if `g` leads one).
    pub fn fixed_used(&self, g: u64) -> u64 {
        let mut used = if has_super(g) { self.super_blocks() } else { 0 };
        if g % FLEX == 0 {
            used += self.flex_runs(g).iter().map(|r| r.1).sum::<u64>();
        }
        used
    }

    /// The runs of fixed metadata in group `g`, sorted, as (start, len).
    pub fn fixed_runs(&self, g: u64) -> Vec<(u64, u64)> {
        let mut runs = Vec::with_capacity(4);
        if has_super(g) {
            runs.push((self.group_start(g), self.super_blocks()));
        }
        if g % FLEX == 0 {
            runs.extend(self.flex_runs(g));
        }
        runs
    }
}

/// Block and inode bitmap and inode table locations of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupTables {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
}

/// Whether group `g` holds a superblock copy with sparse_super: groups 0 and 1 and the
/// powers of 3, 5 and 7.
pub fn has_super(g: u64) -> bool {
    fn power_of(mut g: u64, base: u64) -> bool {
        while g % base == 0 {
            g /= base;
        }
        g == 1
    }
    g <= 1 || (g % 2 == 1 && (power_of(g, 3) || power_of(g, 5) || power_of(g, 7)))
}

/// The backup groups below `groups` in the order the resize inode lists them (1, 3, 5,
/// 7, 9, 25, 27, …: `list_backups` in res_gdt.c).
pub fn backup_groups(groups: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut next = [1u64, 5, 7];
    let mult = [3u64, 5, 7];
    loop {
        let mut i = 0;
        for j in 1..3 {
            if next[j] < next[i] {
                i = j;
            }
        }
        if next[i] >= groups {
            return out;
        }
        out.push(next[i]);
        next[i] *= mult[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_are_sparse_super_groups() {
        assert_eq!(backup_groups(100), vec![1, 3, 5, 7, 9, 25, 27, 49, 81]);
        for g in 1..100_000 {
            assert_eq!(has_super(g), backup_groups(100_000).contains(&g), "group {g}");
        }
        assert!(has_super(0));
    }

    /// Figures read from `dumpe2fs -h` of `mke2fs -t ext4 -b 4096` on files of these sizes.
    #[test]
    fn matches_mke2fs_geometry() {
        let mib = 1u64 << 20;
        let g = Geometry::new(1 << 30).unwrap();
        assert_eq!((g.blocks, g.inodes(), g.r_blocks, g.rsv_gdt, g.ipg, g.ibpg), (262144, 65536, 13107, 127, 8192, 512));
        assert_eq!(g.journal_blocks, 8192);
        assert_eq!(g.tables(0), GroupTables { block_bitmap: 129, inode_bitmap: 137, inode_table: 145 });
        assert_eq!(g.tables(7).inode_table, 3729);
        let g = Geometry::new(16 * mib).unwrap();
        assert_eq!((g.blocks, g.inodes(), g.r_blocks, g.rsv_gdt, g.journal_blocks), (4096, 4096, 204, 1, 1024));
        assert_eq!(g.tables(0), GroupTables { block_bitmap: 3, inode_bitmap: 19, inode_table: 35 });
        let g = Geometry::new(2 * mib).unwrap();
        assert_eq!((g.inodes(), g.r_blocks, g.rsv_gdt, g.journal_blocks), (256, 25, 0, 0));
        let g = Geometry::new(600 * mib).unwrap();
        assert_eq!((g.inodes(), g.ipg, g.rsv_gdt, g.journal_blocks), (38400, 7680, 74, 4096));
        let g = Geometry::new(1 << 40).unwrap();
        assert_eq!((g.inodes(), g.r_blocks, g.rsv_gdt, g.journal_blocks), (67108864, 13421772, 1024, 262144));
    }

    #[test]
    fn short_last_group_is_dropped() {
        // 9 groups, the last of 100 blocks: less than its overhead plus 50.
        let g = Geometry::new((8 * BPG + 100) * BS).unwrap();
        assert_eq!((g.blocks, g.groups, g.r_blocks), (8 * BPG, 8, 13107));
        // Below 512 MiB there is an inode per block: dropping the last group would put
        // more inodes in a group than a bitmap holds, so mke2fs shrinks the groups
        // instead (figures from mke2fs on a file of this size).
        let g = Geometry::new((2 * BPG + 100) * BS).unwrap();
        assert_eq!((g.blocks, g.bpg, g.groups, g.ipg, g.r_blocks, g.rsv_gdt), (65636, 32104, 3, 21888, 3210, 32));
        assert!(Geometry::new(3 * BS).is_err());
    }

    #[test]
    fn above_16_tib_drops_the_resize_inode() {
        let g = Geometry::new(17 << 40).unwrap();
        assert!(!g.resize_inode);
        assert_eq!(g.rsv_gdt, 0);
        assert!(g.inodes() <= u64::from(u32::MAX));
    }
}
