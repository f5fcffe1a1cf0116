//! Where the few blocks a new filesystem owns beyond its fixed metadata go: the root and
//! lost+found directories, the resize inode's double-indirect block and the journal.
//!
//! The choices repeat mke2fs's allocator: first free block at or after a goal, the root
//! directory and lost+found from the start of their flex group, the resize block after the
//! first inode table (`ext2fs_create_resize_inode`), and the journal from the middle of the
//! filesystem (`get_midpoint_journal_block` in mkjournal.c) in free runs of at most 32768
//! blocks, with its extent index block just before its first run when it needs more than
//! the four extents an inode holds. Nothing here touches the disk; the result is a list of
//! runs, small enough to keep in memory for any size.

use anyhow::{bail, Result};

use super::geometry::{Geometry, FLEX};

/// Longest initialized extent (`EXT_INIT_MAX_LEN`).
pub const MAX_EXTENT: u64 = 32768;
/// Extents that fit in an inode's `i_block` next to the extent header.
pub const INODE_EXTENTS: usize = 4;
/// Blocks of lost+found: mke2fs grows it to 16 KiB so fsck has room without allocating.
pub const LPF_BLOCKS: u64 = 4;

/// A run of blocks of a file: logical block, first physical block, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub logical: u64,
    pub start: u64,
    pub len: u64,
}

/// The dynamic part of the layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub geo: Geometry,
    pub root: Vec<Extent>,
    pub lpf: Vec<Extent>,
    /// The resize inode's double-indirect block.
    pub dind: Option<u64>,
    pub journal: Vec<Extent>,
    /// The journal's extent index block, when it has more than [`INODE_EXTENTS`] runs.
    pub journal_index: Option<u64>,
    /// Every block allocated above, as sorted (start, len) runs.
    used: Vec<(u64, u64)>,
}

impl Layout {
    /// Allocates everything in mke2fs's order.
    pub fn new(geo: Geometry) -> Result<Layout> {
        let mut l = Layout { geo, root: Vec::new(), lpf: Vec::new(), dind: None, journal: Vec::new(), journal_index: None, used: Vec::new() };
        l.root = l.alloc_blocks(0, 1)?;
        l.lpf = l.alloc_blocks(0, LPF_BLOCKS)?;
        if l.geo.resize_inode {
            let goal = 2 + l.geo.desc_blocks + l.geo.rsv_gdt + l.geo.ibpg;
            let b = l.next_free(goal)?;
            l.mark(b, 1);
            l.dind = Some(b);
        }
        if l.geo.journal_blocks > 0 {
            l.alloc_journal()?;
        }
        Ok(l)
    }

    /// `n` blocks one at a time, each at the first free block after the previous one (how
    /// `ext2fs_mkdir` and `ext2fs_expand_dir` grow a directory), merged into extents.
    fn alloc_blocks(&mut self, goal: u64, n: u64) -> Result<Vec<Extent>> {
        let mut out: Vec<Extent> = Vec::new();
        let mut goal = goal;
        for logical in 0..n {
            let b = self.next_free(goal)?;
            self.mark(b, 1);
            match out.last_mut() {
                Some(e) if e.start + e.len == b => e.len += 1,
                _ => out.push(Extent { logical, start: b, len: 1 }),
            }
            goal = b + 1;
        }
        Ok(out)
    }

    fn alloc_journal(&mut self) -> Result<()> {
        let mut goal = self.journal_goal();
        let mut left = self.geo.journal_blocks;
        let mut logical = 0;
        while left > 0 {
            let start = self.next_free(goal)?;
            let len = self.free_run(start, left.min(MAX_EXTENT));
            self.mark(start, len);
            self.journal.push(Extent { logical, start, len });
            if self.journal.len() == INODE_EXTENTS + 1 {
                // The inode's extent root splits: the new leaf block goes just before the
                // first extent if that block is free (extent_node_split in extent.c).
                let b = self.next_free(self.journal[0].start.saturating_sub(1))?;
                self.mark(b, 1);
                self.journal_index = Some(b);
            }
            logical += len;
            left -= len;
            goal = start + len;
        }
        if self.journal.len() > 340 {
            bail!("the journal would need {} extents; the filesystem is too fragmented", self.journal.len());
        }
        Ok(())
    }

    /// First block of the group the journal starts in: the middle group, moved to the
    /// start of its flex group, then whichever of it and its neighbour has more free blocks.
    fn journal_goal(&self) -> u64 {
        let geo = &self.geo;
        let mut group = geo.group_of(geo.blocks / 2);
        let (start, end);
        if group > FLEX {
            group &= !(FLEX - 1);
            while group < geo.groups && self.group_free(group) == 0 {
                group += 1;
            }
            if group == geo.groups {
                group = 0;
            }
            start = group;
        } else {
            start = group.saturating_sub(1);
        }
        end = if group + 1 < geo.groups { group + 1 } else { group };
        let mut best = start;
        for g in start + 1..=end {
            if self.group_free(g) > self.group_free(best) {
                best = g;
            }
        }
        geo.group_start(best)
    }

    fn mark(&mut self, start: u64, len: u64) {
        let at = self.used.partition_point(|r| r.0 < start);
        self.used.insert(at, (start, len));
    }

    /// The used run containing `b`, if any (fixed metadata or allocated here).
    fn used_run_at(&self, b: u64) -> Option<(u64, u64)> {
        let g = self.geo.group_of(b);
        let fixed = self.geo.fixed_runs(g).into_iter();
        let at = self.used.partition_point(|r| r.0 <= b);
        let dynamic = at.checked_sub(1).map(|i| self.used[i]);
        fixed.chain(dynamic).find(|&(s, l)| s <= b && b < s + l)
    }

    /// The first free block at or after `goal`, wrapping around once like ext2fs.
    fn next_free(&self, goal: u64) -> Result<u64> {
        let mut b = if goal >= self.geo.blocks { 0 } else { goal };
        let mut wrapped = false;
        loop {
            match self.used_run_at(b) {
                None => return Ok(b),
                Some((s, l)) => b = s + l,
            }
            if b >= self.geo.blocks {
                if wrapped {
                    bail!("no free block left for the filesystem's own files");
                }
                wrapped = true;
                b = 0;
            }
        }
    }

    /// How many blocks from the free block `start` are free, up to `max`.
    fn free_run(&self, start: u64, max: u64) -> u64 {
        let limit = (start + max).min(self.geo.blocks);
        let mut next_used = limit;
        for g in self.geo.group_of(start)..=self.geo.group_of(limit - 1) {
            for (s, _) in self.geo.fixed_runs(g) {
                if s > start && s < next_used {
                    next_used = s;
                }
            }
        }
        let at = self.used.partition_point(|r| r.0 <= start);
        if let Some(&(s, _)) = self.used.get(at) {
            next_used = next_used.min(s.max(start + 1));
        }
        next_used - start
    }

    /// Blocks allocated here inside group `g`.
    pub fn dynamic_in(&self, g: u64) -> u64 {
        let (gs, ge) = (self.geo.group_start(g), self.geo.group_start(g) + self.geo.group_len(g));
        self.used.iter().map(|&(s, l)| (s + l).min(ge).saturating_sub(s.max(gs))).sum()
    }

    /// The runs allocated here that overlap group `g`, clipped to it.
    pub fn dynamic_runs(&self, g: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let (gs, ge) = (self.geo.group_start(g), self.geo.group_start(g) + self.geo.group_len(g));
        self.used.iter().filter_map(move |&(s, l)| {
            let (a, b) = (s.max(gs), (s + l).min(ge));
            (a < b).then(|| (a, b - a))
        })
    }

    /// Free blocks in group `g`.
    pub fn group_free(&self, g: u64) -> u64 {
        self.geo.group_len(g) - self.geo.fixed_used(g) - self.dynamic_in(g)
    }

    /// Whether group `g` keeps BLOCK_UNINIT: nothing but superblock copies in it and not
    /// the last group (whose bitmap needs its padding written).
    pub fn block_uninit(&self, g: u64) -> bool {
        g + 1 != self.geo.groups && g % FLEX != 0 && self.dynamic_in(g) == 0
    }

    /// Blocks in the journal file, including its index block.
    pub fn journal_file_blocks(&self) -> u64 {
        self.geo.journal_blocks + u64::from(self.journal_index.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Block numbers read with debugfs from mke2fs's filesystems of the same sizes.
    #[test]
    fn allocates_where_mke2fs_does() {
        let l = Layout::new(Geometry::new(1 << 30).unwrap()).unwrap();
        assert_eq!(l.root, vec![Extent { logical: 0, start: 4241, len: 1 }]);
        assert_eq!(l.lpf, vec![Extent { logical: 0, start: 4242, len: 4 }]);
        assert_eq!(l.dind, Some(4246));
        assert_eq!(l.journal, vec![Extent { logical: 0, start: 131072, len: 8192 }]);
        assert!(l.block_uninit(1) && !l.block_uninit(4) && !l.block_uninit(7) && !l.block_uninit(0));

        let l = Layout::new(Geometry::new(16 << 20).unwrap()).unwrap();
        assert_eq!((l.root[0].start, l.lpf[0].start, l.dind), (4, 5, Some(291)));
        let runs: Vec<_> = l.journal.iter().map(|e| (e.logical, e.start, e.len)).collect();
        assert_eq!(runs, vec![(0, 9, 10), (10, 20, 15), (25, 292, 999)]);

        let l = Layout::new(Geometry::new(1 << 40).unwrap()).unwrap();
        assert_eq!(l.journal_index, Some(134250495));
        assert_eq!(l.journal.len(), 8);
        assert_eq!(l.journal[0].start, 134250496);
        assert!(l.journal.iter().all(|e| e.len == MAX_EXTENT));
    }
}
