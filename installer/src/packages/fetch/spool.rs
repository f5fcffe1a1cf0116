//! Verify first, then use. A package or index is read whole from its [`super::VerifiedReader`]
//! — which reports its end only once the size and SHA-256 the signed index promised match —
//! into a spool, and only then decompressed, parsed or unpacked. So no byte of a tampered
//! download is ever interpreted, let alone written into the target.
//!
//! Small downloads stay in memory (allocated fallibly, within [`IN_MEMORY`]); larger ones go
//! to an unnamed file (`O_TMPFILE`, mode 0600) in a directory the caller names — the target
//! root, whose file system the install fills anyway and which, unlike the initramfs's
//! tmpfs, is not RAM — and vanish when closed.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, Write};

use anyhow::{bail, Context, Result};

/// Downloads up to this size are kept in memory.
pub const IN_MEMORY: u64 = 4 << 20;

/// A complete, verified download.
#[derive(Debug)]
pub enum Spool {
    Memory(Cursor<Vec<u8>>),
    File(File, u64),
}

impl Spool {
    /// Reads `source` to its end into memory, refusing more than `limit` bytes. For indexes
    /// (read by the installer before any disk is touched).
    pub fn in_memory(source: &mut dyn Read, size: Option<u64>, limit: u64, what: &str) -> Result<Spool> {
        if size.is_some_and(|s| s > limit) {
            bail!("{what} is {} bytes, more than the {limit} accepted", size.unwrap_or(0));
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(size.unwrap_or(0) as usize).with_context(|| format!("no memory to hold {what}"))?;
        let n = source.take(limit + 1).read_to_end(&mut buf).with_context(|| format!("downloading {what}"))?;
        if n as u64 > limit {
            bail!("{what} is larger than the {limit} bytes accepted");
        }
        Ok(Spool::Memory(Cursor::new(buf)))
    }

    /// Reads `source` to its end: into memory when `size` is at most [`IN_MEMORY`], else
    /// into the file `file()` makes (an unnamed temporary file).
    pub fn fill(source: &mut dyn Read, size: u64, file: impl FnOnce() -> Result<File>, what: &str) -> Result<Spool> {
        if size <= IN_MEMORY {
            return Spool::in_memory(source, Some(size), IN_MEMORY, what);
        }
        let mut f = file().with_context(|| format!("making a temporary file for {what}"))?;
        let n = io::copy(source, &mut f).with_context(|| format!("downloading {what}"))?;
        f.flush()?;
        Ok(Spool::File(f, n))
    }

    /// The verified bytes from their start.
    pub fn reader(&mut self) -> io::Result<&mut dyn Read> {
        Ok(match self {
            Spool::Memory(c) => {
                c.rewind()?;
                c
            }
            Spool::File(f, _) => {
                f.rewind()?;
                f
            }
        })
    }

    pub fn len(&self) -> u64 {
        match self {
            Spool::Memory(c) => c.get_ref().len() as u64,
            Spool::File(_, n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when they are in memory.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Spool::Memory(c) => Some(c.get_ref()),
            Spool::File(..) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_in_memory_large_in_a_file_and_limits_hold() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut s = Spool::fill(&mut &data[..], data.len() as u64, || panic!("no file for a small download"), "x").unwrap();
        assert!(s.bytes().is_some());
        let mut back = Vec::new();
        s.reader().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let big = vec![7u8; (IN_MEMORY + 1) as usize];
        let dir = std::env::temp_dir();
        let mut s = Spool::fill(&mut &big[..], big.len() as u64, || Ok(tempfile_in(&dir)), "big").unwrap();
        assert!(s.bytes().is_none());
        assert_eq!(s.len(), big.len() as u64);
        for _ in 0..2 {
            let mut back = Vec::new();
            s.reader().unwrap().read_to_end(&mut back).unwrap();
            assert!(back == big, "read twice from the start");
        }
        let e = Spool::in_memory(&mut &data[..], None, 1000, "the index").unwrap_err().to_string();
        assert!(e.contains("larger than the 1000 bytes"), "{e}");
        assert!(Spool::in_memory(&mut &data[..], Some(1 << 40), 1000, "the index").is_err(), "a declared size beyond the limit");
    }

    fn tempfile_in(dir: &std::path::Path) -> File {
        let fd = rustix::fs::open(dir, rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        File::from(fd)
    }
}
