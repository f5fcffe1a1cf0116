//! A repair pass for directories made by `fatfs` 0.3.6, the newest release: its
//! `create_dir` writes long-name entries before "." and "..", and gives a first-level
//! directory's ".." the root's cluster instead of 0 (rafalh/rust-fatfs issues #117 and
//! #99, fixed on its master branch but not released). fsck.vfat rejects both, and the FAT
//! specification (fatgen103, "FAT Directory Structure") wants "." and ".." as the first two
//! entries. After writing, this walks every directory and puts the first four slots right:
//! ".", "..", and two deleted entries.

use anyhow::{bail, Result};

use super::target::Target;

const ENTRY: u64 = 32;
const ATTR_LFN: u8 = 0x0F;
const ATTR_DIR: u8 = 0x10;
const DELETED: u8 = 0xE5;
const END_OF_CHAIN: u32 = 0x0FFF_FFF8;
/// More clusters than any chain of a real volume has: stops a corrupt, looping chain.
const MAX_CHAIN: usize = 1 << 28;

struct Volume<'a> {
    target: &'a Target,
    cluster_bytes: u64,
    fat_start: u64,
    data_start: u64,
    root: u32,
}

impl<'a> Volume<'a> {
    fn open(target: &'a Target) -> Result<Volume<'a>> {
        let mut bs = [0u8; 512];
        target.read_at(0, &mut bs)?;
        let u16at = |o: usize| u64::from(u16::from_le_bytes([bs[o], bs[o + 1]]));
        let u32at = |o: usize| u32::from_le_bytes([bs[o], bs[o + 1], bs[o + 2], bs[o + 3]]);
        let (sector, per_cluster, reserved, fats) = (u16at(11), u64::from(bs[13]), u16at(14), u64::from(bs[16]));
        if &bs[82..87] != b"FAT32" || sector == 0 || per_cluster == 0 {
            bail!("{} does not hold FAT32", target.name());
        }
        let fat_start = reserved * sector;
        let data_start = fat_start + fats * u64::from(u32at(36)) * sector;
        Ok(Volume { target, cluster_bytes: per_cluster * sector, fat_start, data_start, root: u32at(44) })
    }

    fn next(&self, cluster: u32) -> Result<u32> {
        let mut e = [0u8; 4];
        self.target.read_at(self.fat_start + 4 * u64::from(cluster), &mut e)?;
        Ok(u32::from_le_bytes(e) & 0x0FFF_FFFF)
    }

    fn offset(&self, cluster: u32) -> u64 {
        self.data_start + u64::from(cluster - 2) * self.cluster_bytes
    }

    /// The clusters of the chain starting at `first`.
    fn chain(&self, first: u32) -> Result<Vec<u32>> {
        let mut out = vec![first];
        let mut c = first;
        loop {
            c = self.next(c)?;
            if !(2..END_OF_CHAIN).contains(&c) {
                return Ok(out);
            }
            if out.len() >= MAX_CHAIN {
                bail!("cluster chain from {first} on {} loops", self.target.name());
            }
            out.push(c);
        }
    }

    /// Subdirectories of the directory at `cluster`, by first cluster.
    fn subdirs(&self, cluster: u32) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for c in self.chain(cluster)? {
            let mut data = vec![0u8; self.cluster_bytes as usize];
            self.target.read_at(self.offset(c), &mut data)?;
            for e in data.chunks(ENTRY as usize) {
                match e[0] {
                    0 => return Ok(out),
                    DELETED | b'.' => continue,
                    _ => {}
                }
                if e[11] != ATTR_LFN && e[11] & ATTR_DIR != 0 {
                    let first = u32::from(u16::from_le_bytes([e[20], e[21]])) << 16 | u32::from(u16::from_le_bytes([e[26], e[27]]));
                    if first >= 2 {
                        out.push(first);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Rewrites the first slots of directory `cluster` (child of `parent`) if they are
    /// fatfs's [LFN, ".", LFN, ".."].
    fn fix(&self, cluster: u32, parent: u32) -> Result<()> {
        let mut head = [0u8; 4 * ENTRY as usize];
        self.target.read_at(self.offset(cluster), &mut head)?;
        let (e0, e1, e2, e3) = (&head[0..32], &head[32..64], &head[64..96], &head[96..128]);
        if !(e0[11] == ATTR_LFN && &e1[..11] == b".          " && e2[11] == ATTR_LFN && &e3[..11] == b"..         ") {
            return Ok(());
        }
        let mut fixed = [0u8; 4 * ENTRY as usize];
        fixed[..32].copy_from_slice(e1);
        fixed[32..64].copy_from_slice(e3);
        if parent == self.root {
            // ".." of a first-level directory names cluster 0, the root.
            for b in [52, 53, 58, 59] {
                fixed[b] = 0;
            }
        }
        fixed[64] = DELETED;
        fixed[96] = DELETED;
        self.target.write_at(self.offset(cluster), &fixed)
    }
}

/// Repairs every directory of the FAT32 filesystem on `target`.
pub fn fix_dot_entries(target: &Target) -> Result<()> {
    let vol = Volume::open(target)?;
    let mut todo = vec![(vol.root, 0u32)];
    let mut seen = std::collections::HashSet::new();
    while let Some((dir, parent)) = todo.pop() {
        if !seen.insert(dir) {
            bail!("directory cluster {dir} on {} is reached twice: the filesystem is damaged", target.name());
        }
        if dir != vol.root {
            vol.fix(dir, parent)?;
        }
        for sub in vol.subdirs(dir)? {
            todo.push((sub, dir));
        }
    }
    Ok(())
}
