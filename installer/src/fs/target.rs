//! Where a filesystem is made: a byte range of a block device or of a regular file.
//!
//! The formatters never see a path. They write through a [`Target`], which checks every
//! access against its range (so a filesystem made at an offset inside a disk image cannot
//! touch the bytes around it) and knows the cheapest way to make a range read back as zeros:
//! `BLKZEROOUT` on a block device, punching a hole in a regular file (which also keeps image
//! files sparse), and writing zeros only when neither works. `BLKDISCARD` is offered
//! separately because a device need not return zeros after it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use crate::sys;

/// Largest buffer of zeros written at once when a range cannot be zeroed any cheaper way.
const ZERO_CHUNK: usize = 1 << 20;
/// Bytes at each end of a range where old signatures are looked for and wiped.
const SIGNATURE_AREA: u64 = 1 << 20;

/// A byte range of a block device or regular file that a filesystem is made on.
#[derive(Debug, Clone)]
pub struct Target {
    file: Arc<File>,
    name: String,
    base: u64,
    len: u64,
    block_device: bool,
    sector: u64,
    written: Arc<AtomicU64>,
}

impl Target {
    /// Opens a whole block device or regular file for writing. Block devices are opened
    /// exclusively (`O_EXCL`), so a device that is mounted or otherwise in use is refused.
    pub fn open(path: &Path) -> Result<Target> {
        let meta = std::fs::metadata(path).with_context(|| format!("looking at {}", path.display()))?;
        let block_device = meta.file_type().is_block_device();
        if !block_device && !meta.is_file() {
            bail!("{} is neither a block device nor a regular file: cannot make a filesystem on it", path.display());
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if block_device {
            options.custom_flags(libc::O_EXCL);
        }
        let file = options.open(path).with_context(|| format!("opening {} for writing (a block device that is mounted or in use is refused)", path.display()))?;
        Target::from_file(file, &path.display().to_string())
    }

    /// Opens a whole block device or file read-only and not exclusively (to probe what is on
    /// a disk that may be mounted, such as a preserved one).
    pub fn open_read_only(path: &Path) -> Result<Target> {
        let file = File::open(path).with_context(|| format!("opening {} to read it", path.display()))?;
        Target::from_file(file, &path.display().to_string())
    }

    /// Wraps an open file or block device as a target covering all of it.
    pub fn from_file(file: File, name: &str) -> Result<Target> {
        let meta = file.metadata().with_context(|| format!("looking at {name}"))?;
        let block_device = meta.file_type().is_block_device();
        let (len, sector) = if block_device {
            let len = sys::block_size_bytes(&file).with_context(|| format!("reading the size of {name} (BLKGETSIZE64)"))?;
            let sector = rustix::fs::ioctl_blksszget(&file).with_context(|| format!("reading the sector size of {name}"))?;
            (len, u64::from(sector))
        } else {
            (meta.len(), 512)
        };
        Ok(Target { file: Arc::new(file), name: name.to_string(), base: 0, len, block_device, sector, written: Arc::new(AtomicU64::new(0)) })
    }

    /// The sub-range `offset..offset+len` of this target (a partition inside a disk image).
    /// `offset` must be a multiple of the sector size.
    pub fn slice(&self, offset: u64, len: u64) -> Result<Target> {
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > self.len) {
            bail!("range {offset}+{len} lies outside {} ({} bytes)", self.name, self.len);
        }
        if offset % self.sector != 0 {
            bail!("range {offset}+{len} of {} does not start on a {}-byte sector", self.name, self.sector);
        }
        Ok(Target { name: format!("{} at {}+{}", self.name, self.base + offset, len), base: self.base + offset, len, ..self.clone() })
    }

    /// Size of the range in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How the target is named in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the target is a block device (else a regular file).
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// Bytes written through [`Target::write_at`] and explicit zero writes so far (all
    /// slices of one opened file share the count).
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn check(&self, what: &str, off: u64, len: u64) -> Result<()> {
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            bail!("{what} of {len} bytes at {off} would leave {} ({} bytes)", self.name, self.len);
        }
        Ok(())
    }

    /// Writes `buf` at byte `off` of the range.
    pub fn write_at(&self, off: u64, buf: &[u8]) -> Result<()> {
        self.check("writing", off, buf.len() as u64)?;
        self.file.write_all_at(buf, self.base + off).with_context(|| format!("writing {} bytes at {off} of {}", buf.len(), self.name))?;
        self.written.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Reads `buf.len()` bytes at byte `off` of the range.
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        self.check("reading", off, buf.len() as u64)?;
        self.file.read_exact_at(buf, self.base + off).with_context(|| format!("reading {} bytes at {off} of {}", buf.len(), self.name))
    }

    /// Makes `off..off+len` read back as zeros, as cheaply as the target allows.
    pub fn zero(&self, off: u64, len: u64) -> Result<()> {
        self.check("zeroing", off, len)?;
        if len == 0 {
            return Ok(());
        }
        let what = || format!("zeroing {len} bytes at {off} of {}", self.name);
        if self.block_device {
            // BLKZEROOUT takes whole sectors: the unaligned edges get plain zeros.
            let start = (self.base + off).div_ceil(self.sector) * self.sector;
            let end = (self.base + off + len) / self.sector * self.sector;
            if end > start {
                match sys::zero_out(&*self.file, start, end - start) {
                    Ok(()) => {
                        self.write_zeros(off, start - self.base - off)?;
                        return self.write_zeros(end - self.base, self.base + off + len - end);
                    }
                    Err(e) if Errno::from_io_error(&e).is_some_and(unsupported) => {}
                    Err(e) => return Err(e).with_context(what),
                }
            }
        } else {
            match self.punch(off, len) {
                Ok(()) => return Ok(()),
                Err(e) if unsupported(e) => {}
                Err(e) => return Err(e).with_context(what),
            }
        }
        self.write_zeros(off, len)
    }

    fn punch(&self, off: u64, len: u64) -> std::result::Result<(), Errno> {
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        rustix::fs::fallocate(&*self.file, flags, self.base + off, len)
    }

    fn write_zeros(&self, off: u64, len: u64) -> Result<()> {
        let zeros = vec![0u8; ZERO_CHUNK.min(len as usize)];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.write_at(off + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// Zeroes the first and last MiB of the range (all of a smaller one): where other
    /// filesystems, LUKS, RAID members and partition tables keep the signatures blkid and
    /// udev look for, which would otherwise make the new filesystem ambiguous.
    pub fn wipe_signatures(&self) -> Result<()> {
        let edge = SIGNATURE_AREA.min(self.len);
        self.zero(0, edge)?;
        self.zero(self.len - edge, edge)
    }

    /// Makes the whole range unused. A regular file gets a hole punched, so the range then
    /// reads back as zeros and `Ok(true)` is returned. A block device gets `BLKDISCARD`,
    /// which helps SSDs and thin volumes but promises nothing about the contents:
    /// `Ok(false)`, also when the device does not support discard.
    pub fn discard(&self) -> Result<bool> {
        if self.len == 0 {
            return Ok(!self.block_device);
        }
        if !self.block_device {
            return match self.punch(0, self.len) {
                Ok(()) => Ok(true),
                Err(e) if unsupported(e) => Ok(false),
                Err(e) => Err(e).with_context(|| format!("punching a hole over {}", self.name)),
            };
        }
        let start = self.base.div_ceil(self.sector) * self.sector;
        let end = (self.base + self.len) / self.sector * self.sector;
        if end > start {
            if let Err(e) = sys::discard(&*self.file, start, end - start) {
                log::debug!("discard of {} not done: {e}", self.name);
            }
        }
        Ok(false)
    }

    /// Flushes everything written to stable storage.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_all().with_context(|| format!("flushing {} to disk", self.name))
    }

    /// A `Read + Write + Seek` cursor over the range, starting at 0 (for libraries that
    /// want a stream, such as `fatfs`).
    pub fn io(&self) -> TargetIo {
        TargetIo { target: self.clone(), pos: 0 }
    }
}

fn unsupported(e: Errno) -> bool {
    e == Errno::OPNOTSUPP || e == Errno::NOSYS || e == Errno::INVAL || e == Errno::NOTTY
}

/// A seekable stream over a [`Target`]'s range; reads and writes past its end fail.
#[derive(Debug)]
pub struct TargetIo {
    target: Target,
    pos: u64,
}

fn io_error(e: anyhow::Error) -> io::Error {
    io::Error::other(format!("{e:#}"))
}

impl Read for TargetIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.target.len.saturating_sub(self.pos)) as usize;
        self.target.read_at(self.pos, &mut buf[..n]).map_err(io_error)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for TargetIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.target.write_at(self.pos, buf).map_err(io_error)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for TargetIo {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.target.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the target")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image file of `len` bytes, removed with the returned guard.
    fn scratch(len: u64) -> (tempfile::TempPath, Target) {
        let path = tempfile::Builder::new().prefix("anemos-target-").tempfile().unwrap().into_temp_path();
        File::options().write(true).open(&path).unwrap().set_len(len).unwrap();
        let t = Target::open(&path).unwrap();
        (path, t)
    }

    #[test]
    fn slices_stay_inside_their_range() {
        let (path, t) = scratch(1 << 20);
        std::fs::write(&path, vec![0xAAu8; 1 << 20]).unwrap();
        let s = t.slice(4096, 8192).unwrap();
        assert!(s.write_at(8190, &[1, 2, 3]).is_err());
        assert!(s.zero(4096, 4097).is_err());
        s.zero(1, 8190).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert!(data[..4097].iter().all(|&b| b == 0xAA));
        assert!(data[4097..4096 + 8191].iter().all(|&b| b == 0));
        assert!(data[4096 + 8191..].iter().all(|&b| b == 0xAA));
        assert!(t.slice(1 << 20, 1).is_err());
        assert!(t.slice(100, 1).is_err());
    }

    #[test]
    fn stream_reads_what_was_written() {
        let (path, t) = scratch(65536);
        let mut io = t.slice(512, 4096).unwrap().io();
        io.write_all(b"hello").unwrap();
        io.seek(SeekFrom::End(-2)).unwrap();
        assert!(io.write_all(b"abc").is_err());
        io.seek(SeekFrom::Start(0)).unwrap();
        let mut buf = [0u8; 5];
        io.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(std::fs::read(&path).unwrap()[512..517], *b"hello");
    }
}
