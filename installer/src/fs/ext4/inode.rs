//! Inodes, extent trees, directory blocks and the journal superblock of a new filesystem
//! (kernel Documentation/filesystems/ext4/inodes.rst, ifork.rst, directory.rst,
//! journal.rst). Each carries the metadata_csum checksum the kernel verifies.

use super::alloc::Extent;
use super::csum;
use super::geometry::{BS, INODE_SIZE};
use super::ondisk::{put16, put32};

pub const EXTENTS_FL: u32 = 0x80000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFREG: u16 = 0o100000;
const EXTENT_MAGIC: u16 = 0xF30A;
/// Extents (or index entries) per 4 KiB tree block: (4096 - header) / 12.
const EXTENTS_PER_BLOCK: u16 = ((BS - 12) / 12) as u16;
/// Byte offset of a directory block's checksum tail.
const DIR_TAIL: usize = BS as usize - 12;
const FT_DIR: u8 = 2;
/// `i_extra_isize`: the large-inode fields e2fsprogs fills (up to i_projid).
const EXTRA_ISIZE: u16 = 32;

/// What an inode holds; all times are the filesystem's creation time.
#[derive(Debug, Clone)]
pub struct Inode {
    pub mode: u16,
    pub links: u16,
    pub size: u64,
    /// Allocated blocks, counted in 4 KiB blocks (stored in 512-byte units).
    pub blocks: u64,
    pub flags: u32,
    pub i_block: [u8; 60],
    /// Whether the large-inode fields (extra size, crtime, checksum high half) are set.
    pub large: bool,
}

impl Inode {
    /// An inode that is only times (the bad-blocks inode, 1) or nothing at all.
    pub fn empty(large: bool) -> Inode {
        Inode { mode: 0, links: 0, size: 0, blocks: 0, flags: 0, i_block: [0; 60], large }
    }

    /// The 256 bytes of inode `ino`; `now` is None for a reserved inode left all zeros
    /// except its checksum (what mke2fs writes for inodes 3-6, 9 and 10).
    pub fn encode(&self, fs_seed: u32, ino: u32, now: Option<u64>) -> [u8; INODE_SIZE as usize] {
        let mut b = [0u8; INODE_SIZE as usize];
        put16(&mut b, 0x00, self.mode);
        put32(&mut b, 0x04, self.size as u32);
        if let Some(t) = now {
            for off in [0x08, 0x0C, 0x10] {
                put32(&mut b, off, t as u32);
            }
        }
        put16(&mut b, 0x1A, self.links);
        let sectors = self.blocks * (BS / 512);
        put32(&mut b, 0x1C, sectors as u32);
        put32(&mut b, 0x20, self.flags);
        b[0x28..0x64].copy_from_slice(&self.i_block);
        put32(&mut b, 0x6C, (self.size >> 32) as u32);
        put16(&mut b, 0x74, (sectors >> 32) as u16);
        if self.large {
            put16(&mut b, 0x80, EXTRA_ISIZE);
            if let Some(t) = now {
                let epoch = extra_time(t);
                for off in [0x84, 0x88, 0x8C, 0x94] {
                    put32(&mut b, off, epoch);
                }
                put32(&mut b, 0x90, t as u32);
            }
        }
        let sum = csum::crc32c(csum::inode_seed(fs_seed, ino, 0), &b);
        put16(&mut b, 0x7C, sum as u16);
        if self.large {
            put16(&mut b, 0x82, (sum >> 16) as u16);
        }
        b
    }
}

/// The epoch bits of an `*_extra` time field: seconds beyond the signed 32-bit range
/// (`ext4_encode_extra_time`); zero until 2038.
fn extra_time(t: u64) -> u32 {
    let t = t as i64;
    (((t - i64::from(t as i32)) >> 32) & 3) as u32
}

fn extent_header(b: &mut [u8], entries: u16, max: u16, depth: u16) {
    put16(b, 0, EXTENT_MAGIC);
    put16(b, 2, entries);
    put16(b, 4, max);
    put16(b, 6, depth);
}

fn extent_entry(b: &mut [u8], e: &Extent) {
    put32(b, 0, e.logical as u32);
    put16(b, 4, e.len as u16);
    put16(b, 6, (e.start >> 32) as u16);
    put32(b, 8, e.start as u32);
}

/// `i_block` of an extent-mapped file: the extents themselves when at most four, else
/// one index entry pointing at the leaf block `index`.
pub fn extent_root(extents: &[Extent], index: Option<u64>) -> [u8; 60] {
    let mut b = [0u8; 60];
    match index {
        None => {
            extent_header(&mut b, extents.len() as u16, 4, 0);
            for (i, e) in extents.iter().enumerate() {
                extent_entry(&mut b[12 + 12 * i..], e);
            }
        }
        Some(leaf) => {
            extent_header(&mut b, 1, 4, 1);
            put32(&mut b, 12, 0);
            put32(&mut b, 16, leaf as u32);
            put16(&mut b, 20, (leaf >> 32) as u16);
        }
    }
    b
}

/// The leaf block holding `extents` of inode `ino`, with its checksum tail.
pub fn extent_leaf(fs_seed: u32, ino: u32, extents: &[Extent]) -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    extent_header(&mut b, extents.len() as u16, EXTENTS_PER_BLOCK, 0);
    for (i, e) in extents.iter().enumerate() {
        extent_entry(&mut b[12 + 12 * i..], e);
    }
    let tail = 12 + 12 * usize::from(EXTENTS_PER_BLOCK);
    let sum = csum::crc32c(csum::inode_seed(fs_seed, ino, 0), &b[..tail]);
    put32(&mut b, tail, sum);
    b
}

/// A directory block of inode `dir` holding `entries` (inode, name), all directories;
/// the last entry stretches to the checksum tail. No entries gives an empty block.
pub fn dir_block(fs_seed: u32, dir: u32, entries: &[(u32, &str)]) -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    let mut off = 0;
    for (i, (ino, name)) in entries.iter().enumerate() {
        let len = if i + 1 == entries.len() { DIR_TAIL - off } else { 8 + name.len().next_multiple_of(4) };
        put32(&mut b, off, *ino);
        put16(&mut b, off + 4, len as u16);
        b[off + 6] = name.len() as u8;
        b[off + 7] = FT_DIR;
        b[off + 8..off + 8 + name.len()].copy_from_slice(name.as_bytes());
        off += len;
    }
    if entries.is_empty() {
        put16(&mut b, 4, DIR_TAIL as u16);
    }
    // struct ext4_dir_entry_tail: zero inode, rec_len 12, name_len 0, type 0xDE, crc.
    put16(&mut b, DIR_TAIL + 4, 12);
    b[DIR_TAIL + 7] = 0xDE;
    let sum = csum::crc32c(csum::inode_seed(fs_seed, dir, 0), &b[..DIR_TAIL]);
    put32(&mut b, DIR_TAIL + 8, sum);
    b
}

/// The journal superblock (JBD2 v2, big endian), as `ext2fs_create_journal_superblock2`
/// makes it: clean (`s_start = 0`), sequence 1, no features yet (the kernel turns on
/// 64bit, revoke and checksum v3 at the first mount of a metadata_csum filesystem), and
/// the filesystem's UUID, which seeds those checksums.
pub fn journal_superblock(blocks: u64, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    let mut be = |off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    be(0x00, 0xC03B_3998); // h_magic
    be(0x04, 4); // h_blocktype: superblock v2
    be(0x0C, BS as u32); // s_blocksize
    be(0x10, blocks as u32); // s_maxlen
    be(0x14, 1); // s_first
    be(0x18, 1); // s_sequence
    be(0x40, 1); // s_nr_users
    b[0x30..0x40].copy_from_slice(uuid);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_checksum_is_split_over_two_fields() {
        let ino = Inode { mode: S_IFDIR | 0o755, links: 3, size: 4096, blocks: 1, flags: EXTENTS_FL, i_block: [0; 60], large: true };
        let b = ino.encode(0x1234, 2, Some(1_700_000_000));
        let mut zeroed = b;
        zeroed[0x7C..0x7E].fill(0);
        zeroed[0x82..0x84].fill(0);
        let want = csum::crc32c(csum::inode_seed(0x1234, 2, 0), &zeroed);
        let got = u32::from(u16::from_le_bytes([b[0x7C], b[0x7D]])) | u32::from(u16::from_le_bytes([b[0x82], b[0x83]])) << 16;
        assert_eq!(got, want);
        assert_eq!(u16::from_le_bytes([b[0x80], b[0x81]]), 32);
        assert_eq!(u32::from_le_bytes(b[0x1C..0x20].try_into().unwrap()), 8);
    }

    #[test]
    fn times_past_2038_use_the_epoch_bits() {
        assert_eq!(extra_time(1_700_000_000), 0);
        assert_eq!(extra_time(1 << 31), 1);
        assert_eq!(extra_time((1 << 32) + 5), 1);
    }

    #[test]
    fn directory_entries_fill_the_block_up_to_the_tail() {
        let b = dir_block(1, 2, &[(2, "."), (2, ".."), (11, "lost+found")]);
        assert_eq!(&b[..12], &[2, 0, 0, 0, 12, 0, 1, 2, b'.', 0, 0, 0]);
        assert_eq!(u16::from_le_bytes([b[28], b[29]]), 4060);
        assert_eq!(&b[4084..4092], &[0, 0, 0, 0, 12, 0, 0, 0xDE]);
        let empty = dir_block(1, 11, &[]);
        assert_eq!(u16::from_le_bytes([empty[4], empty[5]]), 4084);
    }

    #[test]
    fn many_extents_go_through_an_index_block() {
        let ext = [Extent { logical: 0, start: 1 << 33, len: 32768 }];
        let root = extent_root(&ext, None);
        assert_eq!(&root[..8], &[0x0A, 0xF3, 1, 0, 4, 0, 0, 0]);
        assert_eq!(u16::from_le_bytes([root[18], root[19]]), 2); // start_hi
        let idx = extent_root(&ext, Some(77));
        assert_eq!((idx[6], u32::from_le_bytes(idx[16..20].try_into().unwrap())), (1, 77));
        let leaf = extent_leaf(9, 8, &ext);
        assert_eq!(u16::from_le_bytes([leaf[4], leaf[5]]), 340);
    }
}
