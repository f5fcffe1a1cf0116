//! Byte layouts of the ext4 superblock and group descriptors (Documentation/filesystems/
//! ext4/super.rst and group_descr.rst in the kernel; `struct ext2_super_block` and
//! `struct ext4_group_desc` in e2fsprogs' ext2_fs.h). Everything is little endian.

use super::csum;
use super::geometry::{Geometry, DESC_SIZE, FIRST_INO, FLEX, INODE_SIZE};

pub fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
/// Low and high 32 bits of a 64-bit value.
pub fn lo(v: u64) -> u32 {
    v as u32
}
pub fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}

// Feature flags (ext2_fs.h).
pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
pub const COMPAT_EXT_ATTR: u32 = 0x8;
pub const COMPAT_RESIZE_INODE: u32 = 0x10;
pub const COMPAT_DIR_INDEX: u32 = 0x20;
pub const INCOMPAT_FILETYPE: u32 = 0x2;
pub const INCOMPAT_EXTENTS: u32 = 0x40;
pub const INCOMPAT_64BIT: u32 = 0x80;
pub const INCOMPAT_FLEX_BG: u32 = 0x200;
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
pub const RO_COMPAT_HUGE_FILE: u32 = 0x8;
pub const RO_COMPAT_DIR_NLINK: u32 = 0x20;
pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

// Group descriptor flags.
pub const BG_INODE_UNINIT: u16 = 0x1;
pub const BG_BLOCK_UNINIT: u16 = 0x2;
pub const BG_INODE_ZEROED: u16 = 0x4;

/// `s_default_mount_opts`: user_xattr and acl (mke2fs.conf `default_mntopts`).
const DEFM_XATTR_USER_ACL: u32 = 0x0004 | 0x0008;
/// `s_flags`: directory hashes use signed chars, as on x86 (`ext2fs_initialize`).
const FLAGS_SIGNED_HASH: u32 = 0x1;
const HASH_HALF_MD4: u8 = 1;
const JNL_BACKUP_BLOCKS: u8 = 1;
const CRC32C_CHKSUM: u8 = 1;
pub const JOURNAL_INO: u32 = 8;

/// The values of a superblock that are not derived from the geometry.
#[derive(Debug, Clone)]
pub struct Super {
    pub free_blocks: u64,
    pub free_inodes: u64,
    pub uuid: [u8; 16],
    pub hash_seed: [u8; 16],
    pub label: [u8; 16],
    pub now: u64,
    /// The journal inode's `i_block` words, then `i_size_high` and `i_size` (s_jnl_blocks).
    pub jnl_blocks: Option<[u32; 17]>,
    /// Blocks of fixed metadata plus the journal (s_overhead_clusters, as mke2fs 1.47).
    pub overhead: u64,
    pub kbytes_written: u64,
}

/// Feature words (compat, incompat, ro_compat) for `geo`.
pub fn features(geo: &Geometry) -> (u32, u32, u32) {
    let mut compat = COMPAT_EXT_ATTR | COMPAT_DIR_INDEX;
    if geo.journal_blocks > 0 {
        compat |= COMPAT_HAS_JOURNAL;
    }
    if geo.resize_inode {
        compat |= COMPAT_RESIZE_INODE;
    }
    let incompat = INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG;
    let ro = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_HUGE_FILE | RO_COMPAT_DIR_NLINK | RO_COMPAT_EXTRA_ISIZE | RO_COMPAT_METADATA_CSUM;
    (compat, incompat, ro)
}

impl Super {
    /// The 1024 bytes of the superblock copy kept in `group` (0 = primary). Backups are
    /// marked not clean, as `ext2fs_flush` writes them, so a check run from one knows.
    pub fn encode(&self, geo: &Geometry, group: u64) -> [u8; 1024] {
        let mut b = [0u8; 1024];
        let now = lo(self.now);
        put32(&mut b, 0x00, geo.inodes() as u32);
        put32(&mut b, 0x04, lo(geo.blocks));
        put32(&mut b, 0x08, lo(geo.r_blocks));
        put32(&mut b, 0x0C, lo(self.free_blocks));
        put32(&mut b, 0x10, self.free_inodes as u32);
        put32(&mut b, 0x18, 2); // log2(4096) - 10
        put32(&mut b, 0x1C, 2);
        put32(&mut b, 0x20, geo.bpg as u32);
        put32(&mut b, 0x24, geo.bpg as u32);
        put32(&mut b, 0x28, geo.ipg as u32);
        put32(&mut b, 0x30, now); // s_wtime
        put16(&mut b, 0x36, 0xFFFF); // s_max_mnt_count = -1: no periodic check
        put16(&mut b, 0x38, 0xEF53);
        put16(&mut b, 0x3A, u16::from(group == 0)); // s_state: clean
        put16(&mut b, 0x3C, 1); // s_errors: continue
        put32(&mut b, 0x40, now); // s_lastcheck
        put32(&mut b, 0x4C, 1); // s_rev_level: dynamic
        put32(&mut b, 0x54, FIRST_INO);
        put16(&mut b, 0x58, INODE_SIZE as u16);
        put16(&mut b, 0x5A, group.min(0xFFFF) as u16);
        let (compat, incompat, ro) = features(geo);
        put32(&mut b, 0x5C, compat);
        put32(&mut b, 0x60, incompat);
        put32(&mut b, 0x64, ro);
        b[0x68..0x78].copy_from_slice(&self.uuid);
        b[0x78..0x88].copy_from_slice(&self.label);
        put16(&mut b, 0xCE, geo.rsv_gdt as u16);
        b[0xEC..0xFC].copy_from_slice(&self.hash_seed);
        b[0xFC] = HASH_HALF_MD4;
        put16(&mut b, 0xFE, DESC_SIZE as u16);
        put32(&mut b, 0x100, DEFM_XATTR_USER_ACL);
        put32(&mut b, 0x108, now); // s_mkfs_time
        if let Some(jnl) = &self.jnl_blocks {
            put32(&mut b, 0xE0, JOURNAL_INO);
            b[0xFD] = JNL_BACKUP_BLOCKS;
            for (i, w) in jnl.iter().enumerate() {
                put32(&mut b, 0x10C + 4 * i, *w);
            }
        }
        put32(&mut b, 0x150, hi(geo.blocks));
        put32(&mut b, 0x154, hi(geo.r_blocks));
        put32(&mut b, 0x158, hi(self.free_blocks));
        put16(&mut b, 0x15C, 32); // s_min_extra_isize
        put16(&mut b, 0x15E, 32); // s_want_extra_isize
        put32(&mut b, 0x160, FLAGS_SIGNED_HASH);
        b[0x174] = FLEX.trailing_zeros() as u8;
        b[0x175] = CRC32C_CHKSUM;
        put64(&mut b, 0x178, self.kbytes_written);
        put32(&mut b, 0x248, self.overhead as u32);
        // The high bytes of the timestamps (they count past 2038).
        let t_hi = (self.now >> 32) as u8;
        b[0x274] = t_hi; // s_wtime_hi
        b[0x276] = t_hi; // s_mkfs_time_hi
        b[0x277] = t_hi; // s_lastcheck_hi
        let sum = csum::crc32c(!0, &b[..0x3FC]);
        put32(&mut b, 0x3FC, sum);
        b
    }
}

/// One group's descriptor values.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupDesc {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub free_blocks: u64,
    pub free_inodes: u64,
    pub used_dirs: u64,
    pub flags: u16,
    pub block_bitmap_csum: u32,
    pub inode_bitmap_csum: u32,
    pub itable_unused: u64,
}

impl GroupDesc {
    /// The 64-byte descriptor of group `group`, with its checksum: the low 16 bits of
    /// crc32c over the group number and the descriptor with the checksum field zeroed.
    pub fn encode(&self, fs_seed: u32, group: u64, out: &mut [u8]) {
        let b = &mut out[..DESC_SIZE as usize];
        b.fill(0);
        put32(b, 0x00, lo(self.block_bitmap));
        put32(b, 0x04, lo(self.inode_bitmap));
        put32(b, 0x08, lo(self.inode_table));
        put16(b, 0x0C, self.free_blocks as u16);
        put16(b, 0x0E, self.free_inodes as u16);
        put16(b, 0x10, self.used_dirs as u16);
        put16(b, 0x12, self.flags);
        put16(b, 0x18, self.block_bitmap_csum as u16);
        put16(b, 0x1A, self.inode_bitmap_csum as u16);
        put16(b, 0x1C, self.itable_unused as u16);
        put32(b, 0x20, hi(self.block_bitmap));
        put32(b, 0x24, hi(self.inode_bitmap));
        put32(b, 0x28, hi(self.inode_table));
        put16(b, 0x2C, (self.free_blocks >> 16) as u16);
        put16(b, 0x2E, (self.free_inodes >> 16) as u16);
        put16(b, 0x30, (self.used_dirs >> 16) as u16);
        put16(b, 0x32, (self.itable_unused >> 16) as u16);
        put16(b, 0x38, (self.block_bitmap_csum >> 16) as u16);
        put16(b, 0x3A, (self.inode_bitmap_csum >> 16) as u16);
        let sum = csum::crc32c(csum::crc32c(fs_seed, &(group as u32).to_le_bytes()), b);
        put16(b, 0x1E, sum as u16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Geometry, Super) {
        let geo = Geometry::new(1 << 30).unwrap();
        let s = Super {
            free_blocks: 249189,
            free_inodes: 65525,
            uuid: [0x11; 16],
            hash_seed: [0x22; 16],
            label: *b"root\0\0\0\0\0\0\0\0\0\0\0\0",
            now: 0x6B07_3565,
            jnl_blocks: Some([7; 17]),
            overhead: 12949,
            kbytes_written: 533,
        };
        (geo, s)
    }

    #[test]
    fn superblock_fields_sit_at_their_offsets() {
        let (geo, s) = sample();
        let b = s.encode(&geo, 0);
        let u32at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u16at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
        assert_eq!((u32at(0x0), u32at(0x4), u32at(0x8)), (65536, 262144, 13107));
        assert_eq!((u32at(0xC), u32at(0x10)), (249189, 65525));
        assert_eq!((u16at(0x38), u16at(0x3A), u16at(0x5A)), (0xEF53, 1, 0));
        assert_eq!((u32at(0x5C), u32at(0x60), u32at(0x64)), (0x3C, 0x2C2, 0x46B));
        assert_eq!(&b[0x78..0x7C], b"root");
        assert_eq!((u16at(0xCE), u16at(0xFE), u32at(0x248)), (127, 64, 12949));
        assert_eq!((b[0x174], b[0x175], u32at(0xE0)), (4, 1, 8));
        assert_eq!(u32at(0x3FC), csum::crc32c(!0, &b[..0x3FC]));
        let backup = s.encode(&geo, 3);
        assert_eq!((backup[0x3A], backup[0x5A]), (0, 3));
    }

    #[test]
    fn descriptor_checksum_covers_group_number() {
        let d = GroupDesc { block_bitmap: 129, inode_bitmap: 137, inode_table: 145, flags: BG_INODE_ZEROED, ..Default::default() };
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        d.encode(5, 0, &mut a);
        d.encode(5, 1, &mut b);
        assert_eq!(a[..0x1E], b[..0x1E]);
        assert_ne!(a[0x1E..0x20], b[0x1E..0x20]);
        let mut zeroed = a;
        zeroed[0x1E..0x20].fill(0);
        let want = csum::crc32c(csum::crc32c(5, &0u32.to_le_bytes()), &zeroed) as u16;
        assert_eq!(u16::from_le_bytes([a[0x1E], a[0x1F]]), want);
    }
}
