//! btrfs leaves and the items mkfs puts in them, as the kernel reads them
//! (`include/uapi/linux/btrfs_tree.h`): every structure is packed little-endian. A leaf is
//! a 101-byte header, the item headers (key, data offset, data size) growing from the
//! front and the item data growing from the back; the first 32 bytes are the CRC32C of
//! the rest.

/// Item key types (`BTRFS_*_KEY`).
pub mod ty {
    pub const INODE_ITEM: u8 = 1;
    pub const INODE_REF: u8 = 12;
    pub const UUID_SUBVOL: u8 = 251;
    pub const DIR_ITEM: u8 = 84;
    pub const ROOT_ITEM: u8 = 132;
    pub const METADATA_ITEM: u8 = 169;
    pub const TREE_BLOCK_REF: u8 = 176;
    pub const BLOCK_GROUP_ITEM: u8 = 192;
    pub const FREE_SPACE_INFO: u8 = 198;
    pub const FREE_SPACE_EXTENT: u8 = 199;
    pub const DEV_EXTENT: u8 = 204;
    pub const DEV_ITEM: u8 = 216;
    pub const CHUNK_ITEM: u8 = 228;
}

/// Tree (and special object) ids (`BTRFS_*_OBJECTID`).
pub mod id {
    pub const ROOT_TREE: u64 = 1;
    pub const EXTENT_TREE: u64 = 2;
    pub const CHUNK_TREE: u64 = 3;
    pub const DEV_TREE: u64 = 4;
    pub const FS_TREE: u64 = 5;
    pub const ROOT_TREE_DIR: u64 = 6;
    pub const CSUM_TREE: u64 = 7;
    pub const UUID_TREE: u64 = 9;
    pub const FREE_SPACE_TREE: u64 = 10;
    pub const DATA_RELOC_TREE: u64 = -9i64 as u64;
    pub const FIRST_FREE: u64 = 256;
    pub const FIRST_CHUNK_TREE: u64 = 256;
    pub const DEV_ITEMS: u64 = 1;
}

pub const HEADER_SIZE: usize = 101;
const ITEM_SIZE: usize = 25;
/// `BTRFS_HEADER_FLAG_WRITTEN` with the mixed back-reference revision in the top byte.
const HEADER_FLAGS: u64 = 1 | (1 << 56);
const S_IFDIR_0755: u32 = 0o040755;

/// A key: (object id, type, offset), ordered in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(pub u64, pub u8, pub u64);

impl Key {
    pub fn bytes(&self) -> [u8; 17] {
        let mut b = [0u8; 17];
        b[..8].copy_from_slice(&self.0.to_le_bytes());
        b[8] = self.1;
        b[9..].copy_from_slice(&self.2.to_le_bytes());
        b
    }
}

/// What every tree block of one file system carries in its header.
pub struct Stamp {
    pub fsid: [u8; 16],
    pub chunk_tree_uuid: [u8; 16],
    pub generation: u64,
}

/// A leaf under construction: items in any order, sorted when encoded.
#[derive(Default)]
pub struct Leaf {
    items: Vec<(Key, Vec<u8>)>,
}

impl Leaf {
    pub fn push(&mut self, key: Key, data: Vec<u8>) {
        self.items.push((key, data));
    }

    /// The leaf at logical address `bytenr`, owned by tree `owner`, checksummed; `None`
    /// when the items do not fit in one node of `nodesize` bytes.
    pub fn encode(mut self, nodesize: usize, bytenr: u64, owner: u64, stamp: &Stamp) -> Option<Vec<u8>> {
        self.items.sort_by_key(|(k, _)| *k);
        let data: usize = self.items.iter().map(|(_, d)| d.len() + ITEM_SIZE).sum();
        if HEADER_SIZE + data > nodesize {
            return None;
        }
        let mut b = vec![0u8; nodesize];
        b[32..48].copy_from_slice(&stamp.fsid);
        b[48..56].copy_from_slice(&bytenr.to_le_bytes());
        b[56..64].copy_from_slice(&HEADER_FLAGS.to_le_bytes());
        b[64..80].copy_from_slice(&stamp.chunk_tree_uuid);
        b[80..88].copy_from_slice(&stamp.generation.to_le_bytes());
        b[88..96].copy_from_slice(&owner.to_le_bytes());
        b[96..100].copy_from_slice(&(self.items.len() as u32).to_le_bytes());
        // b[100], the level, is 0: a leaf.
        let mut end = nodesize - HEADER_SIZE; // item data offsets count from the header's end
        for (i, (key, item)) in self.items.iter().enumerate() {
            end -= item.len();
            let at = HEADER_SIZE + i * ITEM_SIZE;
            b[at..at + 17].copy_from_slice(&key.bytes());
            b[at + 17..at + 21].copy_from_slice(&(end as u32).to_le_bytes());
            b[at + 21..at + 25].copy_from_slice(&(item.len() as u32).to_le_bytes());
            b[HEADER_SIZE + end..HEADER_SIZE + end + item.len()].copy_from_slice(item);
        }
        checksum(&mut b);
        Some(b)
    }
}

/// Stores the CRC32C of `block[32..]` in its first four bytes (tree blocks and the super
/// block alike).
pub fn checksum(block: &mut [u8]) {
    let crc = crc32c::crc32c(&block[32..]);
    block[..32].fill(0);
    block[..4].copy_from_slice(&crc.to_le_bytes());
}

/// The name hash of directory items: CRC32C seeded with ~1, without inversions.
pub fn name_hash(name: &[u8]) -> u64 {
    u64::from(!crc32c::crc32c_append(1, name))
}

/// Little-endian field writer.
#[derive(Default)]
pub struct Out(pub Vec<u8>);

impl Out {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// A `btrfs_timespec`: seconds and nanoseconds.
    pub fn time(&mut self, secs: u64) -> &mut Self {
        self.u64(secs).u32(0)
    }
    pub fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// A directory's `btrfs_inode_item` (160 bytes): an empty directory, mode 0755.
pub fn dir_inode(generation: u64, nbytes: u64, now: u64) -> Vec<u8> {
    let mut o = Out::default();
    o.u64(generation).u64(0).u64(0).u64(nbytes).u64(0); // generation, transid, size, nbytes, block_group
    o.u32(1).u32(0).u32(0).u32(S_IFDIR_0755); // nlink, uid, gid, mode
    o.u64(0).u64(0).u64(0).bytes(&[0; 32]); // rdev, flags, sequence, reserved
    for _ in 0..4 {
        o.time(now); // atime, ctime, mtime, otime
    }
    o.done()
}

/// An inode's reference to itself as ".." (the root directory of a tree).
pub fn dotdot_ref() -> Vec<u8> {
    Out::default().u64(0).u16(2).bytes(b"..").done()
}

/// A `btrfs_root_item` (439 bytes) for a tree whose root is the leaf at `bytenr`.
/// File trees (`dirid` 256) get a UUID and times, as mkfs gives the top-level subvolume.
pub fn root_item(bytenr: u64, nodesize: u64, generation: u64, dirid: u64, uuid: [u8; 16], now: u64) -> Vec<u8> {
    let file_tree = dirid != 0;
    let mut inode = dir_inode(generation, nodesize, 0);
    inode[16..24].copy_from_slice(&3u64.to_le_bytes()); // the root item's inode: size 3, as mkfs
    if file_tree {
        inode[64..72].copy_from_slice(&u64::from(1u32 << 31).to_le_bytes()); // BTRFS_INODE_ROOT_ITEM_INIT
    }
    let mut o = Out(inode);
    o.u64(generation).u64(dirid).u64(bytenr).u64(0).u64(nodesize).u64(0).u64(0); // generation, root_dirid, bytenr, byte_limit, bytes_used, last_snapshot, flags
    o.u32(1).bytes(&[0; 17]).u8(0).u8(0); // refs, drop_progress, drop_level, level
    o.u64(generation).bytes(&uuid).bytes(&[0; 32]); // generation_v2, uuid, parent_uuid, received_uuid
    o.u64(0).u64(0).u64(0).u64(0); // ctransid, otransid, stransid, rtransid
    let t = if file_tree { now } else { 0 };
    o.time(t).time(t).time(0).time(0).bytes(&[0; 64]); // ctime, otime, stime, rtime, reserved
    o.done()
}

/// A `btrfs_dir_item` naming `location` (a subvolume's root item for the "default" entry).
pub fn dir_item(location: Key, generation: u64, name: &[u8], file_type: u8) -> Vec<u8> {
    Out::default().bytes(&location.bytes()).u64(generation).u16(0).u16(name.len() as u16).u8(file_type).bytes(name).done()
}

/// A skinny `btrfs_extent_item` for a tree block with one inline reference from `root`.
pub fn tree_block_extent(generation: u64, root: u64) -> Vec<u8> {
    Out::default().u64(1).u64(generation).u64(2).u8(ty::TREE_BLOCK_REF).u64(root).done()
    // refs, generation, flags TREE_BLOCK
}

/// A `btrfs_block_group_item`: bytes used, the chunk tree's object id, the type flags.
pub fn block_group(used: u64, flags: u64) -> Vec<u8> {
    Out::default().u64(used).u64(id::FIRST_CHUNK_TREE).u64(flags).done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_have_the_kernels_sizes() {
        assert_eq!(dir_inode(1, 16384, 0).len(), 160);
        assert_eq!(root_item(0, 16384, 1, 256, [0; 16], 0).len(), 439);
        assert_eq!(dir_item(Key(5, ty::ROOT_ITEM, u64::MAX), 1, b"default", 2).len(), 30 + 7);
        assert_eq!(tree_block_extent(1, 5).len(), 33);
    }

    #[test]
    fn the_name_hash_is_the_kernels() {
        // btrfs_name_hash("default"), as mkfs.btrfs stores it in the root tree's key.
        assert_eq!(name_hash(b"default"), 0x8dbf_c2d2);
    }

    #[test]
    fn leaves_sort_their_items_and_checksum() {
        let stamp = Stamp { fsid: [1; 16], chunk_tree_uuid: [2; 16], generation: 1 };
        let mut leaf = Leaf::default();
        leaf.push(Key(7, 1, 0), vec![0xbb; 3]);
        leaf.push(Key(5, 1, 0), vec![0xaa; 2]);
        let b = leaf.encode(4096, 65536, 1, &stamp).unwrap();
        assert_eq!(&b[HEADER_SIZE..HEADER_SIZE + 8], &5u64.to_le_bytes());
        assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()), crc32c::crc32c(&b[32..]));
        assert_eq!(&b[4096 - 2..], &[0xaa; 2]);
        let mut big = Leaf::default();
        big.push(Key(1, 1, 0), vec![0; 4096]);
        assert!(big.encode(4096, 0, 1, &stamp).is_none());
    }
}
