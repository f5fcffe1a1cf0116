//! Safe archive extraction into a target root, for every distribution's packages.
//!
//! [`Root`] resolves every path inside the root with `openat2(RESOLVE_IN_ROOT)` (see
//! `root.rs`); [`unpack_tar`] walks a tar stream entry by entry (the `tar` crate parses
//! headers, GNU long names and PAX records; we create the objects ourselves, because its own
//! `unpack` resolves paths on the host and turns device nodes and FIFOs into empty files):
//! regular files, directories, symlinks, hard links within the root, character and block
//! devices and FIFOs (mknod), with the archive's numeric owner, mode and mtime.
//! [`decompress`] picks a decoder by file name suffix; [`deb`] streams a Debian `.deb`.

pub mod deb;
mod root;

use std::io::{self, Read};
use std::os::fd::OwnedFd;

use anyhow::{bail, Context, Result};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, Timespec, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

pub use root::{InRoot, Root};

/// What kind of object an entry became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Device,
    Fifo,
}

/// One entry written into the root.
#[derive(Debug, Clone)]
pub struct Written {
    /// The path as the archive named it, normalised (`/usr/bin/x`, `/.` for the root).
    pub path: String,
    pub kind: Kind,
    /// MD5 of a regular file's contents, if [`Options::md5`] asked for it.
    pub md5: Option<String>,
}

/// How entries are written.
#[derive(Debug, Clone)]
pub struct Options {
    /// Apply the archive's numeric uid/gid (needs root; off for unprivileged host runs).
    pub owners: bool,
    /// Compute the MD5 of regular files (dpkg does for packages without `md5sums`).
    pub md5: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { owners: rustix::process::geteuid().is_root(), md5: false }
    }
}

/// A decoder for a compressed member named `name` (`*.xz`, `*.zst`, `*.gz`, or none).
pub fn decompress<'a>(name: &str, input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    Ok(if name.ends_with(".xz") {
        Box::new(lzma_rust2::XzReader::new(input, true))
    } else if name.ends_with(".zst") {
        Box::new(ruzstd::decoding::StreamingDecoder::new(input).with_context(|| format!("reading the zstd header of {name}"))?)
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else if name.ends_with(".bz2") || name.ends_with(".lzma") {
        bail!("{name}: this compression is not supported (only xz, zstd, gzip and none)");
    } else {
        Box::new(input)
    })
}

/// Unpacks a tar stream into `root`. `place` maps each normalised archive path (`/etc/x`) to
/// the path it is written at (Debian writes conffiles as `/etc/x.dpkg-new`); hard-link
/// targets are mapped the same way. Returns the entries in archive order.
pub fn unpack_tar(
    root: &Root,
    input: impl Read,
    opts: &Options,
    place: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Written>> {
    let mut archive = tar::Archive::new(input);
    let mut written = Vec::new();
    for entry in archive.entries().context("reading the tar stream")? {
        let mut entry = entry.context("reading a tar header")?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let typ = entry.header().entry_type();
        if matches!(typ, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let path = InRoot::parse(&raw)?;
        let shown = path.absolute();
        let target = match place(&shown) {
            Some(p) => InRoot::parse(p.trim_start_matches('/'))?,
            None => path.clone(),
        };
        let mut md5 = None;
        let kind = write_entry(root, &mut entry, typ, &target, opts, place, &mut md5).with_context(|| format!("unpacking {shown}"))?;
        written.push(Written { path: shown, kind, md5 });
    }
    Ok(written)
}

/// Owner, mode and mtime of an entry, from its header.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    stamp: Timestamps,
    owners: bool,
}

impl Meta {
    fn of(h: &tar::Header, opts: &Options) -> Result<Meta> {
        let mtime = h.mtime().context("bad mtime")? as i64;
        let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
        Ok(Meta {
            mode: h.mode().context("bad mode")? & 0o7777,
            uid: h.uid().context("bad uid")? as u32,
            gid: h.gid().context("bad gid")? as u32,
            stamp: Timestamps { last_access: t, last_modification: t },
            owners: opts.owners,
        })
    }

    /// chown (not following a symlink) of `name` in `dir`, if owners are applied.
    fn chown_at(&self, dir: &OwnedFd, name: &str) -> Result<()> {
        if self.owners {
            rfs::chownat(dir, name, Some(rfs::Uid::from_raw(self.uid)), Some(rfs::Gid::from_raw(self.gid)), AtFlags::SYMLINK_NOFOLLOW)
                .context("setting the owner")?;
        }
        Ok(())
    }
}

fn write_entry<R: Read>(
    root: &Root,
    entry: &mut tar::Entry<R>,
    typ: EntryType,
    target: &InRoot,
    opts: &Options,
    place: &dyn Fn(&str) -> Option<String>,
    md5: &mut Option<String>,
) -> Result<Kind> {
    let meta = Meta::of(entry.header(), opts)?;
    match typ {
        EntryType::Regular | EntryType::Continuous => write_file(root, entry, target, &meta, opts.md5, md5),
        EntryType::Directory => write_dir(root, target, &meta),
        EntryType::Symlink => {
            let link = entry.link_name_bytes().context("a symlink without a target")?;
            root.symlink(target, &String::from_utf8_lossy(&link))?;
            let (dir, name) = root.parent_of(target)?;
            meta.chown_at(&dir, name)?;
            rfs::utimensat(&dir, name, &meta.stamp, AtFlags::SYMLINK_NOFOLLOW).context("setting the mtime")?;
            Ok(Kind::Symlink)
        }
        EntryType::Link => {
            let link = entry.link_name_bytes().context("a hard link without a target")?;
            let link = InRoot::parse(&String::from_utf8_lossy(&link)).context("the hard link's target")?;
            let link = match place(&link.absolute()) {
                Some(p) => InRoot::parse(p.trim_start_matches('/'))?,
                None => link,
            };
            let (ldir, lname) = root.parent_of(&link)?;
            let (dir, name) = root.parent_of(target)?;
            Root::clear(&dir, name)?;
            rfs::linkat(&ldir, lname, &dir, name, AtFlags::empty())
                .with_context(|| format!("hard-linking to {} (it must be earlier in the archive)", link.absolute()))?;
            Ok(Kind::HardLink)
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => write_node(root, entry.header(), typ, target, &meta),
        other => bail!("unsupported tar entry type {other:?}"),
    }
}

fn write_file<R: Read>(root: &Root, entry: &mut tar::Entry<R>, target: &InRoot, meta: &Meta, want_md5: bool, md5: &mut Option<String>) -> Result<Kind> {
    let mut f = root.create_file(target, 0o600)?;
    let size = entry.size();
    let n = if want_md5 {
        let mut w = Md5Writer { inner: &mut f, md5: <md5::Md5 as md5::Digest>::new() };
        let n = io::copy(entry, &mut w).context("writing the contents")?;
        *md5 = Some(hex::encode(md5::Digest::finalize(w.md5)));
        n
    } else {
        io::copy(entry, &mut f).context("writing the contents")?
    };
    if n != size {
        bail!("the archive is truncated: {n} of {size} bytes");
    }
    if meta.owners {
        rfs::fchown(&f, Some(rfs::Uid::from_raw(meta.uid)), Some(rfs::Gid::from_raw(meta.gid))).context("setting the owner")?;
    }
    // After chown, which clears set-id bits.
    rfs::fchmod(&f, Mode::from_raw_mode(meta.mode)).context("setting the mode")?;
    rfs::futimens(&f, &meta.stamp).context("setting the mtime")?;
    Ok(Kind::File)
}

fn write_dir(root: &Root, target: &InRoot, meta: &Meta) -> Result<Kind> {
    let Some((dir, name)) = split_parent(root, target)? else { return Ok(Kind::Dir) };
    match rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {
            meta.chown_at(&dir, name)?;
            let flags = rfs::OFlags::RDONLY | rfs::OFlags::DIRECTORY | rfs::OFlags::NOFOLLOW | rfs::OFlags::CLOEXEC;
            let fd = rfs::openat(&dir, name, flags, Mode::empty()).context("opening the new directory")?;
            rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).context("setting the mode")?;
            rfs::futimens(&fd, &meta.stamp).context("setting the mtime")?;
        }
        // An existing directory, or a symlink to one inside the root (merged /usr), is kept
        // as it is, as dpkg does.
        Err(Errno::EXIST) => {
            root.dir(&target.rel).context("the path exists and is not a directory (inside the root)")?;
        }
        Err(e) => return Err(e).context("creating the directory"),
    }
    Ok(Kind::Dir)
}

fn write_node(root: &Root, h: &tar::Header, typ: EntryType, target: &InRoot, meta: &Meta) -> Result<Kind> {
    let (ft, kind) = match typ {
        EntryType::Char => (FileType::CharacterDevice, Kind::Device),
        EntryType::Block => (FileType::BlockDevice, Kind::Device),
        _ => (FileType::Fifo, Kind::Fifo),
    };
    let (major, minor) = if kind == Kind::Device {
        (h.device_major().context("bad device major")?.unwrap_or(0), h.device_minor().context("bad device minor")?.unwrap_or(0))
    } else {
        (0, 0)
    };
    let (dir, name) = root.parent_of(target)?;
    Root::clear(&dir, name)?;
    rfs::mknodat(&dir, name, ft, Mode::from_raw_mode(0o600), rfs::makedev(major, minor)).context("mknod")?;
    meta.chown_at(&dir, name)?;
    // fchmodat follows a final symlink, but the name was just created by mknod here.
    rfs::chmodat(&dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty()).context("setting the mode")?;
    rfs::utimensat(&dir, name, &meta.stamp, AtFlags::SYMLINK_NOFOLLOW).context("setting the mtime")?;
    Ok(kind)
}

/// Passes writes through while hashing them.
struct Md5Writer<'a, W> {
    inner: &'a mut W,
    md5: md5::Md5,
}

impl<W: io::Write> io::Write for Md5Writer<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        md5::Digest::update(&mut self.md5, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn split_parent<'p>(root: &Root, p: &'p InRoot) -> Result<Option<(OwnedFd, &'p str)>> {
    if p.split().is_none() {
        return Ok(None);
    }
    root.parent_of(p).map(Some)
}

#[cfg(test)]
mod tests;
