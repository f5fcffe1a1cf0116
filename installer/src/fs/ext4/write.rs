//! Writing a planned filesystem: bitmaps, inode table, directories, resize inode, journal,
//! group descriptors and superblocks, streamed group by group so memory stays small at
//! any size (the descriptor table is built and written a megabyte at a time).

use std::collections::HashMap;

use anyhow::Result;

use super::alloc::{Extent, Layout};
use super::geometry::{backup_groups, has_super, Geometry, BPG, BS, FIRST_INO, INODE_SIZE};
use super::inode::{dir_block, extent_leaf, extent_root, journal_superblock, Inode, EXTENTS_FL, S_IFDIR, S_IFREG};
use super::ondisk::{put32, GroupDesc, Super, BG_BLOCK_UNINIT, BG_INODE_UNINIT, BG_INODE_ZEROED, JOURNAL_INO};
use crate::fs::target::Target;

const ROOT_INO: u32 = 2;
const RESIZE_INO: u32 = 7;
const LPF_INO: u32 = 11;
/// Descriptor blocks built and written at once.
const GDT_CHUNK: u64 = 256;
/// Largest run of blocks gathered before it is written.
const MAX_RUN: usize = 1 << 20;

/// Gathers block writes into contiguous runs, so neighbouring blocks cost one syscall.
pub struct Out<'a> {
    target: &'a Target,
    start: u64,
    buf: Vec<u8>,
}

impl<'a> Out<'a> {
    pub fn new(target: &'a Target) -> Out<'a> {
        Out { target, start: 0, buf: Vec::new() }
    }

    /// Queues whole blocks starting at block `block`.
    pub fn put(&mut self, block: u64, data: &[u8]) -> Result<()> {
        debug_assert_eq!(data.len() as u64 % BS, 0);
        if self.buf.is_empty() || block != self.start + self.buf.len() as u64 / BS || self.buf.len() >= MAX_RUN {
            self.flush()?;
            self.start = block;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.target.write_at(self.start * BS, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// What the writer needs beyond the layout.
pub struct Ctx<'a> {
    pub layout: &'a Layout,
    pub fs_seed: u32,
    pub uuid: [u8; 16],
    pub now: u64,
    /// Whether every inode table reads back as zeros (ITABLE_ZEROED).
    pub itable_zeroed: bool,
}

impl Ctx<'_> {
    fn geo(&self) -> &Geometry {
        &self.layout.geo
    }

    /// Sets bits `from..to`, whole bytes at a time where it can.
    fn set_bits(bitmap: &mut [u8], from: u64, to: u64) {
        let mut bit = from;
        while bit < to {
            if bit % 8 == 0 && to - bit >= 8 {
                let bytes = (to - bit) / 8;
                bitmap[(bit / 8) as usize..(bit / 8 + bytes) as usize].fill(0xFF);
                bit += bytes * 8;
            } else {
                bitmap[(bit / 8) as usize] |= 1 << (bit % 8);
                bit += 1;
            }
        }
    }

    /// Block bitmap of group `g`: its fixed metadata, what was allocated in it, and the
    /// bits past the end of a short last group.
    fn block_bitmap(&self, g: u64) -> Vec<u8> {
        let mut bm = vec![0u8; BS as usize];
        let start = self.geo().group_start(g);
        let runs = self.geo().fixed_runs(g).into_iter().chain(self.layout.dynamic_runs(g));
        for (s, l) in runs {
            Self::set_bits(&mut bm, s - start, s - start + l);
        }
        Self::set_bits(&mut bm, self.geo().group_len(g), BPG);
        bm
    }

    /// Writes the block bitmaps of every group not left BLOCK_UNINIT and returns their
    /// checksums by group.
    pub fn write_block_bitmaps(&self, out: &mut Out) -> Result<HashMap<u64, u32>> {
        let mut sums = HashMap::new();
        for g in 0..self.geo().groups {
            if self.layout.block_uninit(g) {
                continue;
            }
            let bm = self.block_bitmap(g);
            // The checksum covers the group's blocks only (EXT4_CLUSTERS_PER_GROUP / 8).
            sums.insert(g, super::csum::crc32c(self.fs_seed, &bm[..(self.geo().bpg / 8) as usize]));
            out.put(self.geo().tables(g).block_bitmap, &bm)?;
        }
        Ok(sums)
    }

    /// Writes group 0's inode bitmap (inodes 1 to 11 in use, bits past the group's inodes
    /// set) and returns its checksum, taken over the group's inodes only.
    pub fn write_inode_bitmap(&self, out: &mut Out) -> Result<u32> {
        let mut bm = vec![0u8; BS as usize];
        Self::set_bits(&mut bm, 0, u64::from(FIRST_INO));
        Self::set_bits(&mut bm, self.geo().ipg, BPG);
        out.put(self.geo().tables(0).inode_bitmap, &bm)?;
        Ok(super::csum::crc32c(self.fs_seed, &bm[..(self.geo().ipg / 8) as usize]))
    }

    fn dir_inode(mode: u16, links: u16, extents: &[Extent]) -> Inode {
        let blocks = extents.iter().map(|e| e.len).sum::<u64>();
        Inode { mode: S_IFDIR | mode, links, size: blocks * BS, blocks, flags: EXTENTS_FL, i_block: extent_root(extents, None), large: true }
    }

    fn resize_inode(&self) -> Option<Inode> {
        let dind = self.layout.dind?;
        let mut i_block = [0u8; 60];
        put32(&mut i_block, 13 * 4, dind as u32);
        let rsv = self.geo().rsv_gdt;
        let blocks = 1 + rsv * (1 + backup_groups(self.geo().groups).len() as u64);
        // The largest file an indirect map addresses: 12 + 1024 + 1024² blocks.
        let size = (12 + 1024 + 1024 * 1024) * BS;
        Some(Inode { mode: S_IFREG | 0o600, links: 1, size, blocks, flags: 0, i_block, large: true })
    }

    fn journal_inode(&self) -> Option<Inode> {
        let l = self.layout;
        if l.journal.is_empty() {
            return None;
        }
        let i_block = extent_root(&l.journal, l.journal_index);
        let size = l.geo.journal_blocks * BS;
        Some(Inode { mode: S_IFREG | 0o600, links: 1, size, blocks: l.journal_file_blocks(), flags: EXTENTS_FL, i_block, large: true })
    }

    /// `s_jnl_blocks`: the journal inode's block map and size, kept in the superblock.
    pub fn jnl_blocks(&self) -> Option<[u32; 17]> {
        let j = self.journal_inode()?;
        let mut w = [0u32; 17];
        for (i, c) in j.i_block.chunks(4).enumerate() {
            w[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        w[15] = (j.size >> 32) as u32;
        w[16] = j.size as u32;
        Some(w)
    }

    /// The first inode-table block: inodes 1 to 16, the reserved ones as mke2fs writes
    /// them (checksummed zeros), root, resize, journal and lost+found.
    pub fn write_inode_table(&self, out: &mut Out) -> Result<()> {
        let mut block = vec![0u8; BS as usize];
        let now = Some(self.now);
        for ino in 1..=FIRST_INO {
            let bytes = match ino {
                1 => Inode::empty(false).encode(self.fs_seed, ino, now),
                ROOT_INO => Self::dir_inode(0o755, 3, &self.layout.root).encode(self.fs_seed, ino, now),
                LPF_INO => Self::dir_inode(0o700, 2, &self.layout.lpf).encode(self.fs_seed, ino, now),
                RESIZE_INO if self.layout.dind.is_some() => self.resize_inode().map(|i| i.encode(self.fs_seed, ino, now)).unwrap_or([0; 256]),
                JOURNAL_INO if !self.layout.journal.is_empty() => self.journal_inode().map(|i| i.encode(self.fs_seed, ino, now)).unwrap_or([0; 256]),
                _ => Inode::empty(false).encode(self.fs_seed, ino, None),
            };
            let off = ((ino - 1) as u64 * INODE_SIZE) as usize;
            block[off..off + INODE_SIZE as usize].copy_from_slice(&bytes);
        }
        out.put(self.geo().tables(0).inode_table, &block)
    }

    /// Root and lost+found directory blocks.
    pub fn write_directories(&self, out: &mut Out) -> Result<()> {
        let root = dir_block(self.fs_seed, ROOT_INO, &[(ROOT_INO, "."), (ROOT_INO, ".."), (LPF_INO, "lost+found")]);
        out.put(self.layout.root[0].start, &root)?;
        for e in &self.layout.lpf {
            for n in e.logical..e.logical + e.len {
                let entries: &[(u32, &str)] = if n == 0 { &[(LPF_INO, "."), (ROOT_INO, "..")] } else { &[] };
                out.put(e.start + n - e.logical, &dir_block(self.fs_seed, LPF_INO, entries))?;
            }
        }
        Ok(())
    }

    /// The resize inode's blocks: the double-indirect block naming each primary reserved
    /// GDT block, and each of those naming its copies in the backup groups (res_gdt.c).
    pub fn write_resize(&self, out: &mut Out) -> Result<()> {
        let Some(dind) = self.layout.dind else { return Ok(()) };
        let geo = self.geo();
        let backups = backup_groups(geo.groups);
        let mut dind_block = vec![0u8; BS as usize];
        let mut block = vec![0u8; BS as usize];
        for k in 0..geo.rsv_gdt {
            let primary = 1 + geo.desc_blocks + k;
            put32(&mut dind_block, (((geo.desc_blocks + k) % (BS / 4)) * 4) as usize, primary as u32);
            for (i, grp) in backups.iter().enumerate() {
                put32(&mut block, i * 4, (geo.group_start(*grp) + primary) as u32);
            }
            out.put(primary, &block)?;
        }
        out.put(dind, &dind_block)
    }

    /// The journal superblock and, when the journal has one, its extent leaf block. The
    /// rest of the journal was zeroed beforehand.
    pub fn write_journal(&self, out: &mut Out) -> Result<()> {
        let l = self.layout;
        let Some(first) = l.journal.first() else { return Ok(()) };
        if let Some(index) = l.journal_index {
            out.put(index, &extent_leaf(self.fs_seed, JOURNAL_INO, &l.journal))?;
        }
        out.put(first.start, &journal_superblock(l.geo.journal_blocks, &self.uuid))
    }

    fn descriptor(&self, g: u64, bb_sums: &HashMap<u64, u32>, ib_sum: u32) -> GroupDesc {
        let geo = self.geo();
        let t = geo.tables(g);
        let reserved = if g == 0 { u64::from(FIRST_INO) } else { 0 };
        let mut flags = if self.itable_zeroed { BG_INODE_ZEROED } else { 0 };
        if g != 0 {
            flags |= BG_INODE_UNINIT;
        }
        if self.layout.block_uninit(g) {
            flags |= BG_BLOCK_UNINIT;
        }
        GroupDesc {
            block_bitmap: t.block_bitmap,
            inode_bitmap: t.inode_bitmap,
            inode_table: t.inode_table,
            free_blocks: self.layout.group_free(g),
            free_inodes: geo.ipg - reserved,
            used_dirs: if g == 0 { 2 } else { 0 },
            flags,
            block_bitmap_csum: bb_sums.get(&g).copied().unwrap_or(0),
            inode_bitmap_csum: if g == 0 { ib_sum } else { 0 },
            itable_unused: geo.ipg - reserved,
        }
    }

    /// The descriptor table, a chunk at a time, into group 0 and every backup group,
    /// with each backup group's superblock copy.
    pub fn write_gdt(&self, out: &mut Out, sb: &Super, bb_sums: &HashMap<u64, u32>, ib_sum: u32) -> Result<()> {
        let geo = self.geo();
        let copies: Vec<u64> = (0..geo.groups).filter(|&g| has_super(g)).collect();
        for &c in copies.iter().skip(1) {
            let mut block = vec![0u8; BS as usize];
            block[..1024].copy_from_slice(&sb.encode(geo, c));
            out.put(geo.group_start(c), &block)?;
        }
        let per_block = BS / 64;
        let mut first = 0;
        while first < geo.desc_blocks {
            let n = GDT_CHUNK.min(geo.desc_blocks - first);
            let mut chunk = vec![0u8; (n * BS) as usize];
            let groups = first * per_block..((first + n) * per_block).min(geo.groups);
            for g in groups {
                let off = ((g - first * per_block) * 64) as usize;
                self.descriptor(g, bb_sums, ib_sum).encode(self.fs_seed, g, &mut chunk[off..off + 64]);
            }
            for &c in &copies {
                out.put(geo.group_start(c) + 1 + first, &chunk)?;
            }
            first += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Ctx;

    #[test]
    fn bit_ranges_are_set_exactly() {
        for (from, to) in [(0, 0), (3, 5), (0, 16), (5, 30), (8, 9), (7, 64)] {
            let mut bm = [0u8; 8];
            Ctx::set_bits(&mut bm, from, to);
            for bit in 0..64 {
                assert_eq!(bm[bit / 8] >> (bit % 8) & 1 == 1, (from..to).contains(&(bit as u64)), "{from}..{to} bit {bit}");
            }
        }
    }
}
