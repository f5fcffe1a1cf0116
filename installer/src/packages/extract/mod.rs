//! Safe archive extraction into a target root, for every distribution's packages.
//!
//! [`Root`] resolves every path inside the root with `openat2(RESOLVE_IN_ROOT)` (see
//! `root.rs`); [`unpack_tar`] walks a tar stream entry by entry (the `tar` crate parses
//! headers, GNU long names and PAX records; we create the objects ourselves, because its own
//! `unpack` resolves paths on the host and turns device nodes and FIFOs into empty files):
//! regular files, directories, symlinks, hard links within the root, character and block
//! devices and FIFOs (mknod), with the archive's numeric owner, mode and mtime.
//! [`decompress`] picks a decoder by file name suffix, [`decompress_sniffed`] by the stream's
//! magic bytes (Arch's `.db` has no telling suffix); [`deb`] streams a Debian `.deb`.
//! [`unpack_tar_filtered`] lets a caller keep some members out of the root (Arch's `.PKGINFO`,
//! `.MTREE`, `.INSTALL` are package metadata).

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
    /// SHA-1 of a regular file's contents or of a symlink's target (as apk records them), if
    /// [`Options::sha1`] asked for it.
    pub sha1: Option<[u8; 20]>,
    /// The archive's permission bits and numeric owner.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What to do with one archive member, decided from its normalised path (`/.PKGINFO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Write it into the root, at its own path or (`Some`) at another.
    Write(Option<String>),
    /// Keep it out of the root and return its contents (a regular file of at most 64 MiB).
    Capture,
}

/// A member kept out of the root by [`Placement::Capture`].
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub mode: u32,
    /// Modification time, seconds since 1970.
    pub mtime: i64,
    pub data: Vec<u8>,
}

/// How entries are written.
#[derive(Debug, Clone)]
pub struct Options {
    /// Apply the archive's numeric uid/gid (needs root; off for unprivileged host runs).
    pub owners: bool,
    /// Compute the MD5 of regular files (dpkg does for packages without `md5sums`).
    pub md5: bool,
    /// Compute the SHA-1 of regular files and symlink targets (apk's installed database).
    pub sha1: bool,
    /// Restore extended attributes from PAX `SCHILY.xattr.*` records (images: file
    /// capabilities such as ping's `security.capability`).
    pub xattrs: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { owners: rustix::process::geteuid().is_root(), md5: false, sha1: false, xattrs: false }
    }
}

/// The most memory an xz stream may ask for (its dictionary): `xz -9` needs 65 MiB,
/// Debian's packages and indexes use `-6` (9 MiB). A larger request is refused before any
/// allocation: a hostile archive must not make PID 1 run out of memory.
pub const XZ_MEMORY_KIB: u32 = 72 << 10;
/// The largest zstd window accepted, for the same reason: Arch builds with `--ultra -20`
/// (64 MiB); zstd's default levels use 8 MiB at most.
pub const ZSTD_WINDOW: u64 = 64 << 20;
/// The largest metadata member kept in memory (control files, `.PKGINFO`, `.MTREE`).
pub const METADATA_LIMIT: u64 = 16 << 20;

/// A decoder for a compressed member named `name` (`*.xz`, `*.zst`, `*.gz`, or none), with
/// the memory bounds above. Packages, indexes, images and kernel modules all come here.
pub fn decompress<'a>(name: &str, input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    decoder(name, Box::new(input))
}

/// The input is boxed before a decoder is made, so that the static init holds one copy of
/// each decoder, not one per reader type that callers pass (docs/benchmarks.md, "initramfs").
fn decoder<'a>(name: &str, input: Box<dyn Read + 'a>) -> Result<Box<dyn Read + 'a>> {
    Ok(if name.ends_with(".xz") {
        Box::new(lzma_rust2::XzReader::new_mem_limit(input, true, XZ_MEMORY_KIB))
    } else if name.ends_with(".zst") {
        Box::new(ruzstd::decoding::StreamingDecoder::new_with_max_window_size(input, ZSTD_WINDOW).with_context(|| format!("reading the zstd header of {name}"))?)
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else if name.ends_with(".bz2") || name.ends_with(".lzma") {
        bail!("{name}: this compression is not supported (only xz, zstd, gzip and none)");
    } else {
        input
    })
}

/// Reads at most `limit` bytes from `inner` and fails beyond that: the decompressed size
/// of a package is known from its index (Installed-Size, %ISIZE%, I:), so a stream that
/// grows past it (with slack) is a decompression bomb or not the package that was indexed.
pub struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
    what: String,
}

impl<R: Read> Capped<R> {
    pub fn new(inner: R, limit: u64, what: impl Into<String>) -> Capped<R> {
        Capped { inner, left: limit, limit, what: what.into() }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte more than allowed tells a stream that is too long from one that ends.
        let want = buf.len().min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} decompresses to more than {} bytes: a decompression bomb, or not what the index describes", self.what, self.limit)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The cap on a package's unpacked data, from the installed size its index gives: twice
/// that (tar headers and padding, and the per-file rounding of the estimate) plus 16 MiB.
pub fn unpacked_limit(installed_bytes: u64) -> u64 {
    installed_bytes.saturating_mul(2).saturating_add(16 << 20)
}

/// A decoder chosen by the stream's first bytes: zstd, gzip, xz, or none (a plain tar).
pub fn decompress_sniffed<'a>(input: impl Read + 'a, what: &str) -> Result<Box<dyn Read + 'a>> {
    use std::io::BufRead;
    let mut input = io::BufReader::with_capacity(64 << 10, input);
    let head = input.fill_buf().with_context(|| format!("reading {what}"))?;
    let name = if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ".zst"
    } else if head.starts_with(&[0x1f, 0x8b]) {
        ".gz"
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        ".xz"
    } else if head.starts_with(b"BZh") {
        ".bz2"
    } else {
        ""
    };
    decompress(&format!("{what}{name}"), input)
}

/// Unpacks a tar stream into `root`. `place` maps each normalised archive path (`/etc/x`) to
/// the path it is written at (Debian writes conffiles as `/etc/x.dpkg-new`); hard-link
/// targets are mapped the same way. Returns the entries in archive order.
pub fn unpack_tar(root: &Root, input: impl Read, opts: &Options, place: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Written>> {
    let (written, _) = unpack_tar_filtered(root, input, opts, &|p: &str| Placement::Write(place(p)))?;
    Ok(written)
}

/// Like [`unpack_tar`], with a [`Placement`] per member: members to capture are returned
/// (in archive order) instead of being written.
pub fn unpack_tar_filtered(root: &Root, input: impl Read, opts: &Options, decide: &dyn Fn(&str) -> Placement) -> Result<(Vec<Written>, Vec<Captured>)> {
    let place = |p: &str| match decide(p) {
        Placement::Write(to) => to,
        Placement::Capture => None,
    };
    let mut archive = tar::Archive::new(input);
    let mut written = Vec::new();
    let mut captured = Vec::new();
    for entry in archive.entries().context("reading the tar stream")? {
        let mut entry = entry.context("reading a tar header")?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let typ = entry.header().entry_type();
        if matches!(typ, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let path = InRoot::parse(&raw)?;
        let shown = path.absolute();
        let target = match decide(&shown) {
            Placement::Write(Some(p)) => InRoot::parse(p.trim_start_matches('/'))?,
            Placement::Write(None) => path.clone(),
            Placement::Capture => {
                captured.push(capture(&mut entry, &shown)?);
                continue;
            }
        };
        let meta = Meta::of(entry.header(), opts)?;
        let xattrs = if opts.xattrs { pax_xattrs(&mut entry)? } else { Vec::new() };
        let mut sums = Sums::default();
        let kind = write_entry(root, &mut entry, typ, &target, opts, &place, &mut sums).with_context(|| format!("unpacking {shown}"))?;
        if !xattrs.is_empty() && matches!(kind, Kind::File | Kind::Dir) {
            // After the owner and mode: chown clears security.capability.
            set_xattrs(root, &target, &xattrs).with_context(|| format!("setting the extended attributes of {shown}"))?;
        }
        written.push(Written { path: shown, kind, md5: sums.md5, sha1: sums.sha1, mode: meta.mode, uid: meta.uid, gid: meta.gid });
    }
    Ok((written, captured))
}

/// The `SCHILY.xattr.NAME` records of an entry's PAX header.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<R>) -> Result<Vec<(String, Vec<u8>)>> {
    let Some(exts) = entry.pax_extensions().context("reading the PAX header")? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for ext in exts {
        let ext = ext.context("reading the PAX header")?;
        if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
            out.push((name.to_string(), ext.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

fn set_xattrs(root: &Root, target: &InRoot, xattrs: &[(String, Vec<u8>)]) -> Result<()> {
    let f = root.open_nofollow(target)?;
    for (name, value) in xattrs {
        rfs::fsetxattr(&f, name.as_str(), value, rfs::XattrFlags::empty()).with_context(|| format!("setting {name}"))?;
    }
    Ok(())
}

fn capture<R: Read>(entry: &mut tar::Entry<R>, shown: &str) -> Result<Captured> {
    if !entry.header().entry_type().is_file() {
        bail!("the metadata member {shown} is not a regular file");
    }
    let size = entry.size();
    if size > METADATA_LIMIT {
        bail!("the metadata member {shown} is implausibly large ({size} bytes)");
    }
    let mut data = Vec::new();
    data.try_reserve_exact(size as usize).with_context(|| format!("no memory for {shown} ({size} bytes)"))?;
    entry.take(METADATA_LIMIT).read_to_end(&mut data).with_context(|| format!("reading {shown}"))?;
    let h = entry.header();
    Ok(Captured { path: shown.to_string(), mode: h.mode().unwrap_or(0o644) & 0o7777, mtime: h.mtime().unwrap_or(0) as i64, data })
}

/// The digests asked for by [`Options`].
#[derive(Default)]
struct Sums {
    md5: Option<String>,
    sha1: Option<[u8; 20]>,
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
            rfs::chownat(dir, name, Some(rfs::Uid::from_raw(self.uid)), Some(rfs::Gid::from_raw(self.gid)), AtFlags::SYMLINK_NOFOLLOW).context("setting the owner")?;
        }
        Ok(())
    }
}

fn write_entry<R: Read>(root: &Root, entry: &mut tar::Entry<R>, typ: EntryType, target: &InRoot, opts: &Options, place: &dyn Fn(&str) -> Option<String>, sums: &mut Sums) -> Result<Kind> {
    let meta = Meta::of(entry.header(), opts)?;
    match typ {
        EntryType::Regular | EntryType::Continuous => write_file(root, entry, target, &meta, opts, sums),
        EntryType::Directory => write_dir(root, target, &meta),
        EntryType::Symlink => {
            let link = entry.link_name_bytes().context("a symlink without a target")?;
            if opts.sha1 {
                sums.sha1 = Some(<sha1::Sha1 as sha1::Digest>::digest(&link[..]).into());
            }
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
            rfs::linkat(&ldir, lname, &dir, name, AtFlags::empty()).with_context(|| format!("hard-linking to {} (it must be earlier in the archive)", link.absolute()))?;
            Ok(Kind::HardLink)
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => write_node(root, entry.header(), typ, target, &meta),
        other => bail!("unsupported tar entry type {other:?}"),
    }
}

fn write_file<R: Read>(root: &Root, entry: &mut tar::Entry<R>, target: &InRoot, meta: &Meta, opts: &Options, sums: &mut Sums) -> Result<Kind> {
    let mut f = root.create_file(target, 0o600)?;
    let size = entry.size();
    let n = if opts.md5 || opts.sha1 {
        let mut w = HashWriter { inner: &mut f, md5: opts.md5.then(<md5::Md5 as md5::Digest>::new), sha1: opts.sha1.then(<sha1::Sha1 as sha1::Digest>::new) };
        let n = io::copy(entry, &mut w).context("writing the contents")?;
        sums.md5 = w.md5.map(|h| hex::encode(md5::Digest::finalize(h)));
        sums.sha1 = w.sha1.map(|h| sha1::Digest::finalize(h).into());
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
    let (major, minor) = if kind == Kind::Device { (h.device_major().context("bad device major")?.unwrap_or(0), h.device_minor().context("bad device minor")?.unwrap_or(0)) } else { (0, 0) };
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
struct HashWriter<'a, W> {
    inner: &'a mut W,
    md5: Option<md5::Md5>,
    sha1: Option<sha1::Sha1>,
}

impl<W: io::Write> io::Write for HashWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = self.md5.as_mut() {
            md5::Digest::update(h, &buf[..n]);
        }
        if let Some(h) = self.sha1.as_mut() {
            sha1::Digest::update(h, &buf[..n]);
        }
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
