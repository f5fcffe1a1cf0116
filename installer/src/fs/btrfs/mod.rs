//! btrfs made in-process: the empty file system `mkfs.btrfs` makes with its defaults
//! (btrfs-progs 6.x: 16 KiB nodes, 4 KiB sectors, CRC32C, DUP metadata and system chunks,
//! a single data chunk, the free-space tree, no-holes, skinny metadata), written as its
//! final layout in one pass — a system chunk holding the chunk tree, a metadata chunk
//! holding one leaf for each other tree, an empty data chunk — and the super block with
//! its mirrors. `btrfs check` judges the result (tests/btrfs.rs).
//!
//! Subvolumes are not made here: the installer asks the kernel for them once the file
//! system is mounted ([`subvol`]), as `btrfs subvolume create` does.

pub mod subvol;
mod tree;

use anyhow::{bail, ensure, Result};

use super::target::Target;
use super::{format_uuid, random_uuid, FsInfo, FsKind};
use tree::{id, ty, Key, Leaf, Out, Stamp};

const NODESIZE: u64 = 16384;
const SECTOR: u64 = 4096;
const STRIPE_LEN: u64 = 64 << 10;
const MIB: u64 = 1 << 20;
/// The primary super block and its mirrors (`btrfs_sb_offset`).
const SUPERS: [u64; 3] = [64 << 10, 64 << 20, 256 << 30];
const SUPER_SIZE: usize = 4096;
const MAGIC: &[u8; 8] = b"_BHRfS_M";
/// The smallest file system made: room for the chunks below and for the kernel to
/// allocate more (mkfs.btrfs refuses about 114 MiB with its defaults).
pub const MIN_SIZE: u64 = 128 * MIB;
const LABEL_MAX: usize = 255;
/// The kernel modules that mount it (their dependencies follow from modules.dep).
pub const MODULES: &[&str] = &["btrfs"];

/// Block group and chunk type flags.
const DATA: u64 = 1;
const SYSTEM: u64 = 2;
const METADATA: u64 = 4;
const DUP: u64 = 32;
/// incompat: MIXED_BACKREF, EXTENDED_IREF, SKINNY_METADATA, NO_HOLES (mkfs's 0x341).
const INCOMPAT: u64 = 1 | (1 << 6) | (1 << 8) | (1 << 9);
/// compat_ro: FREE_SPACE_TREE, FREE_SPACE_TREE_VALID.
const COMPAT_RO: u64 = 1 | 2;
const GENERATION: u64 = 1;

/// One chunk: a logical range, its type, and where its copies sit on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    logical: u64,
    len: u64,
    flags: u64,
    stripes: Vec<u64>,
}

impl Chunk {
    /// Logical ranges the kernel keeps out of allocation because a super block copy sits
    /// in them (`exclude_super_stripes`: the 64 KiB stripe holding the copy).
    fn super_ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &p in &self.stripes {
            for &s in &SUPERS {
                if s >= p && s < p + self.len {
                    let at = self.logical + (s - p) / STRIPE_LEN * STRIPE_LEN;
                    out.push((at, STRIPE_LEN.min(self.logical + self.len - at)));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    fn end(&self) -> u64 {
        self.logical + self.len
    }
}

/// The three chunks for a device of `size` bytes: system (DUP, 8 MiB), metadata (DUP,
/// a tenth of the device in 16 MiB steps, 16–256 MiB) and data (single, a tenth in 8 MiB
/// steps, 8 MiB–1 GiB), one after the other from 1 MiB; logical addresses start at
/// 1 MiB too. Metadata sizes in 16 MiB steps keep its second copy off the 64 MiB mirror.
fn chunks(size: u64) -> Result<[Chunk; 3]> {
    if size < MIN_SIZE {
        bail!("{size} bytes is too small for btrfs: at least {} MiB", MIN_SIZE / MIB);
    }
    let meta = (size / 10 / (16 * MIB) * (16 * MIB)).clamp(16 * MIB, 256 * MIB);
    let data = (size / 10 / (8 * MIB) * (8 * MIB)).clamp(8 * MIB, 1024 * MIB);
    let sys = 8 * MIB;
    let system = Chunk { logical: MIB, len: sys, flags: SYSTEM | DUP, stripes: vec![MIB, MIB + sys] };
    let mp = MIB + 2 * sys;
    let metadata = Chunk { logical: system.end(), len: meta, flags: METADATA | DUP, stripes: vec![mp, mp + meta] };
    let dp = mp + 2 * meta;
    let data = Chunk { logical: metadata.end(), len: data, flags: DATA, stripes: vec![dp] };
    ensure!(dp + data.len <= size, "{size} bytes cannot hold btrfs's first chunks");
    Ok([system, metadata, data])
}

/// Who owns the tree blocks, in the order they sit in the metadata chunk.
const META_TREES: [u64; 8] = [id::ROOT_TREE, id::EXTENT_TREE, id::DEV_TREE, id::FS_TREE, id::CSUM_TREE, id::UUID_TREE, id::FREE_SPACE_TREE, id::DATA_RELOC_TREE];

/// Everything one file system's trees are made from.
struct Fs {
    chunks: [Chunk; 3],
    total: u64,
    fsid: [u8; 16],
    dev_uuid: [u8; 16],
    chunk_tree_uuid: [u8; 16],
    top_uuid: [u8; 16],
    now: u64,
}

impl Fs {
    fn chunk_root(&self) -> u64 {
        self.chunks[0].logical
    }

    /// Where tree `owner`'s (only) leaf is.
    fn block(&self, owner: u64) -> u64 {
        if owner == id::CHUNK_TREE {
            return self.chunk_root();
        }
        let i = META_TREES.iter().position(|&t| t == owner).unwrap_or(0) as u64;
        self.chunks[1].logical + i * NODESIZE
    }

    /// Every tree block: (logical address, owner).
    fn blocks(&self) -> Vec<(u64, u64)> {
        let mut all = vec![(self.chunk_root(), id::CHUNK_TREE)];
        all.extend(META_TREES.iter().map(|&t| (self.block(t), t)));
        all
    }

    /// Bytes of `chunk` the tree blocks use.
    fn used(&self, chunk: &Chunk) -> u64 {
        self.blocks().iter().filter(|(at, _)| *at >= chunk.logical && *at < chunk.end()).count() as u64 * NODESIZE
    }

    fn stamp(&self) -> Stamp {
        Stamp { fsid: self.fsid, chunk_tree_uuid: self.chunk_tree_uuid, generation: GENERATION }
    }
}

/// Makes btrfs over all of `target`, labelled `label`, with file system UUID `uuid`.
pub fn make(target: &Target, label: Option<&str>, uuid: [u8; 16], now: u64, discard: bool) -> Result<FsInfo> {
    let label = label.unwrap_or("");
    if label.len() > LABEL_MAX || label.contains('\0') {
        bail!("btrfs label '{label}' is too long or has a NUL byte: at most {LABEL_MAX} bytes");
    }
    let total = target.len() / SECTOR * SECTOR;
    let fs = Fs { chunks: chunks(total)?, total, fsid: uuid, dev_uuid: random_uuid()?, chunk_tree_uuid: random_uuid()?, top_uuid: random_uuid()?, now };
    for chunk in &fs.chunks {
        for (at, len) in chunk.super_ranges() {
            ensure!(at >= chunk.logical + fs.used(chunk), "btrfs: a tree block would cover the super block copy at logical {at} (+{len})");
        }
    }
    if discard {
        target.discard()?;
    }
    target.wipe_signatures()?;
    for (at, owner) in fs.blocks() {
        let leaf = leaf(&fs, owner);
        let Some(block) = leaf.encode(NODESIZE as usize, at, owner, &fs.stamp()) else { bail!("btrfs: tree {owner} does not fit in one leaf") };
        let chunk = fs.chunks.iter().find(|c| at >= c.logical && at < c.end()).expect("every tree block is inside a chunk");
        for &p in &chunk.stripes {
            target.write_at(p + (at - chunk.logical), &block)?;
        }
    }
    for &at in SUPERS.iter().filter(|&&s| s + SUPER_SIZE as u64 <= total) {
        target.write_at(at, &super_block(&fs, label, at))?;
    }
    target.sync()?;
    Ok(FsInfo { kind: FsKind::Btrfs, uuid: format_uuid(&uuid), label: (!label.is_empty()).then(|| label.to_string()) })
}

/// The items of tree `owner`'s leaf.
fn leaf(fs: &Fs, owner: u64) -> Leaf {
    match owner {
        id::ROOT_TREE => root_tree(fs),
        id::EXTENT_TREE => extent_tree(fs),
        id::CHUNK_TREE => chunk_tree(fs),
        id::DEV_TREE => dev_tree(fs),
        id::FS_TREE | id::DATA_RELOC_TREE => top_dir(fs),
        id::UUID_TREE => uuid_tree(fs),
        id::FREE_SPACE_TREE => free_space_tree(fs),
        _ => Leaf::default(), // the checksum tree: no data yet
    }
}

fn root_tree(fs: &Fs) -> Leaf {
    let mut leaf = Leaf::default();
    for owner in [id::EXTENT_TREE, id::DEV_TREE, id::FS_TREE, id::CSUM_TREE, id::UUID_TREE, id::FREE_SPACE_TREE, id::DATA_RELOC_TREE] {
        let file_tree = owner == id::FS_TREE || owner == id::DATA_RELOC_TREE;
        let (dirid, uuid) = if file_tree { (id::FIRST_FREE, if owner == id::FS_TREE { fs.top_uuid } else { [0; 16] }) } else { (0, [0; 16]) };
        leaf.push(Key(owner, ty::ROOT_ITEM, 0), tree::root_item(fs.block(owner), NODESIZE, GENERATION, dirid, uuid, fs.now));
    }
    // The root tree's directory (object 6) with its "default" entry: the subvolume mounted
    // when no subvol= is given, the top level (5) until `btrfs subvolume set-default`.
    leaf.push(Key(id::ROOT_TREE_DIR, ty::INODE_ITEM, 0), tree::dir_inode(GENERATION, NODESIZE, fs.now));
    leaf.push(Key(id::ROOT_TREE_DIR, ty::INODE_REF, id::ROOT_TREE_DIR), tree::dotdot_ref());
    let default = Key(id::FS_TREE, ty::ROOT_ITEM, u64::MAX);
    leaf.push(Key(id::ROOT_TREE_DIR, ty::DIR_ITEM, tree::name_hash(b"default")), tree::dir_item(default, 0, b"default", 2));
    leaf.push(Key(id::FS_TREE, ty::INODE_REF, id::ROOT_TREE_DIR), Out::default().u64(0).u16(7).bytes(b"default").done());
    leaf
}

fn extent_tree(fs: &Fs) -> Leaf {
    let mut leaf = Leaf::default();
    for (at, owner) in fs.blocks() {
        leaf.push(Key(at, ty::METADATA_ITEM, 0), tree::tree_block_extent(GENERATION, owner));
    }
    for c in &fs.chunks {
        leaf.push(Key(c.logical, ty::BLOCK_GROUP_ITEM, c.len), tree::block_group(fs.used(c), c.flags));
    }
    leaf
}

/// The device item: also in the super block.
fn dev_item(fs: &Fs) -> Vec<u8> {
    let used: u64 = fs.chunks.iter().map(|c| c.len * c.stripes.len() as u64).sum();
    let mut o = Out::default();
    o.u64(1).u64(fs.total).u64(used); // devid, total_bytes, bytes_used
    o.u32(SECTOR as u32).u32(SECTOR as u32).u32(SECTOR as u32).u64(0); // io_align, io_width, sector_size, type
    o.u64(0).u64(0).u32(0).u8(0).u8(0); // generation, start_offset, dev_group, seek_speed, bandwidth
    o.bytes(&fs.dev_uuid).bytes(&fs.fsid).done()
}

fn chunk_item(fs: &Fs, c: &Chunk) -> Vec<u8> {
    let mut o = Out::default();
    o.u64(c.len).u64(id::EXTENT_TREE).u64(STRIPE_LEN).u64(c.flags); // length, owner, stripe_len, type
    o.u32(STRIPE_LEN as u32).u32(STRIPE_LEN as u32).u32(SECTOR as u32); // io_align, io_width, sector_size
    o.u16(c.stripes.len() as u16).u16(1); // num_stripes, sub_stripes
    for &p in &c.stripes {
        o.u64(1).u64(p).bytes(&fs.dev_uuid); // devid, offset, dev_uuid
    }
    o.done()
}

fn chunk_tree(fs: &Fs) -> Leaf {
    let mut leaf = Leaf::default();
    leaf.push(Key(id::DEV_ITEMS, ty::DEV_ITEM, 1), dev_item(fs));
    for c in &fs.chunks {
        leaf.push(Key(id::FIRST_CHUNK_TREE, ty::CHUNK_ITEM, c.logical), chunk_item(fs, c));
    }
    leaf
}

fn dev_tree(fs: &Fs) -> Leaf {
    let mut leaf = Leaf::default();
    for c in &fs.chunks {
        for &p in &c.stripes {
            let extent = Out::default().u64(id::CHUNK_TREE).u64(id::FIRST_CHUNK_TREE).u64(c.logical).u64(c.len).bytes(&fs.chunk_tree_uuid).done();
            leaf.push(Key(1, ty::DEV_EXTENT, p), extent);
        }
    }
    leaf
}

/// A file tree with only its root directory (the top-level subvolume, the data
/// relocation tree).
fn top_dir(fs: &Fs) -> Leaf {
    let mut leaf = Leaf::default();
    leaf.push(Key(id::FIRST_FREE, ty::INODE_ITEM, 0), tree::dir_inode(GENERATION, NODESIZE, fs.now));
    leaf.push(Key(id::FIRST_FREE, ty::INODE_REF, id::FIRST_FREE), tree::dotdot_ref());
    leaf
}

/// The top-level subvolume's UUID → its id, as `btrfs subvolume show` looks it up.
fn uuid_tree(fs: &Fs) -> Leaf {
    let mut leaf = Leaf::default();
    let half = |r: std::ops::Range<usize>| u64::from_le_bytes(fs.top_uuid[r].try_into().unwrap_or_default());
    leaf.push(Key(half(0..8), ty::UUID_SUBVOL, half(8..16)), id::FS_TREE.to_le_bytes().to_vec());
    leaf
}

/// Per block group: its free-space info and free extents (all of it but the tree blocks
/// at its start and the stripes that hold super block copies).
fn free_space_tree(fs: &Fs) -> Leaf {
    let mut leaf = Leaf::default();
    for c in &fs.chunks {
        let mut free = Vec::new();
        let mut at = c.logical + fs.used(c);
        let first = at;
        for (skip, len) in c.super_ranges().into_iter().filter(|(s, _)| *s >= first) {
            if skip > at {
                free.push((at, skip - at));
            }
            at = skip + len;
        }
        if at < c.end() {
            free.push((at, c.end() - at));
        }
        leaf.push(Key(c.logical, ty::FREE_SPACE_INFO, c.len), Out::default().u32(free.len() as u32).u32(0).done());
        for (start, len) in free {
            leaf.push(Key(start, ty::FREE_SPACE_EXTENT, len), Vec::new());
        }
    }
    leaf
}

/// The super block copy at `bytenr`.
fn super_block(fs: &Fs, label: &str, bytenr: u64) -> Vec<u8> {
    let used: u64 = fs.chunks.iter().map(|c| fs.used(c)).sum();
    let mut o = Out(vec![0; 32]);
    o.bytes(&fs.fsid).u64(bytenr).u64(1).bytes(MAGIC).u64(GENERATION); // fsid, bytenr, flags WRITTEN, magic, generation
    o.u64(fs.block(id::ROOT_TREE)).u64(fs.chunk_root()).u64(0).u64(0); // root, chunk_root, log_root, (log_root_transid)
    o.u64(fs.total).u64(used).u64(id::ROOT_TREE_DIR).u64(1); // total_bytes, bytes_used, root_dir_objectid, num_devices
    o.u32(SECTOR as u32).u32(NODESIZE as u32).u32(NODESIZE as u32).u32(SECTOR as u32); // sectorsize, nodesize, leafsize, stripesize
    let system = &fs.chunks[0];
    let mut array = Key(id::FIRST_CHUNK_TREE, ty::CHUNK_ITEM, system.logical).bytes().to_vec();
    array.extend(chunk_item(fs, system));
    o.u32(array.len() as u32).u64(GENERATION).u64(0).u64(COMPAT_RO).u64(INCOMPAT); // sys_chunk_array_size, chunk_root_generation, compat, compat_ro, incompat
    o.u16(0).u8(0).u8(0).u8(0).bytes(&dev_item(fs)); // csum_type crc32c, root_level, chunk_root_level, log_root_level
    let mut label_field = [0u8; 256];
    label_field[..label.len()].copy_from_slice(label.as_bytes());
    o.bytes(&label_field).u64(0).u64(GENERATION).bytes(&fs.fsid); // cache_generation, uuid_tree_generation, metadata_uuid
    let mut b = o.done();
    debug_assert_eq!(b.len(), 587);
    b.resize(811, 0); // nr_global_roots, remap roots, reserved
    b.extend(&array);
    b.resize(SUPER_SIZE, 0); // the rest of the array, backup roots (the kernel fills them), padding
    tree::checksum(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_fit_and_keep_tree_blocks_off_the_mirrors() {
        for mib in [128u64, 129, 300, 640, 1000, 4096, 300 * 1024] {
            let c = chunks(mib * MIB).unwrap();
            assert!(c[2].stripes[0] + c[2].len <= mib * MIB, "{mib} MiB");
            assert_eq!(c[1].logical, c[0].end());
            for stripe in &c[1].stripes {
                assert!(!(*stripe..stripe + 8 * NODESIZE).contains(&SUPERS[1]), "{mib} MiB");
            }
        }
        assert!(chunks(MIN_SIZE - SECTOR).is_err());
    }

    #[test]
    fn a_chunk_over_a_mirror_excludes_its_stripe() {
        let c = Chunk { logical: 9 * MIB, len: 256 * MIB, flags: METADATA | DUP, stripes: vec![17 * MIB, 273 * MIB] };
        assert_eq!(c.super_ranges(), vec![(9 * MIB + 47 * MIB, STRIPE_LEN)]);
    }
}
