//! A target root directory and the only ways we write into it.
//!
//! Every path is resolved from a directory fd of the root with `openat2(RESOLVE_IN_ROOT)`:
//! the kernel treats the root as `/` for that lookup, so `..` and symlinks — absolute or
//! relative, including ones planted by an archive — can never lead outside it, while the
//! root's own symlinks (merged-/usr `bin → usr/bin`) are still followed *inside* it. The last
//! component is then created or replaced with `*at` calls on the parent fd, never followed
//! (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`). Archive paths containing `..` or starting with `/`
//! are refused outright: well-formed packages never have them.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// A directory that archives are unpacked into.
pub struct Root {
    fd: OwnedFd,
    path: std::path::PathBuf,
}

/// A path inside the root, split into its parent and last component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRoot {
    /// Components without `.` or empty ones, joined with `/`; empty for the root itself.
    pub rel: String,
}

impl InRoot {
    /// Normalises an archive path (`./usr/bin/x`, `usr/bin/x/`), refusing `..` and absolute
    /// paths.
    pub fn parse(raw: &str) -> Result<InRoot> {
        if raw.starts_with('/') {
            bail!("refusing the absolute path {raw:?} in an archive");
        }
        let mut parts = Vec::new();
        for c in raw.split('/') {
            match c {
                "" | "." => {}
                ".." => bail!("refusing the path {raw:?}: it contains `..`"),
                c if c.contains('\0') => bail!("refusing a path with a NUL byte"),
                c => parts.push(c),
            }
        }
        Ok(InRoot { rel: parts.join("/") })
    }

    /// `(parent, name)`; the root itself has no name.
    pub fn split(&self) -> Option<(&str, &str)> {
        if self.rel.is_empty() {
            return None;
        }
        Some(match self.rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", self.rel.as_str()),
        })
    }

    /// `/usr/bin/x` (as dpkg lists paths); `/.` for the root.
    pub fn absolute(&self) -> String {
        if self.rel.is_empty() {
            "/.".into()
        } else {
            format!("/{}", self.rel)
        }
    }
}

impl Root {
    /// Opens `path` (which must be a directory) as a root.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rfs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).with_context(|| format!("opening the target root {}", path.display()))?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a file or directory inside the root for reading its metadata or setting its
    /// attributes, never following a final symlink.
    pub fn open_nofollow(&self, p: &InRoot) -> Result<OwnedFd> {
        let rel = if p.rel.is_empty() { "." } else { p.rel.as_str() };
        rfs::openat2(&self.fd, rel, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty(), Self::resolve_flags())
            .with_context(|| format!("opening {} in {}", p.absolute(), self.path.display()))
    }

    /// An unnamed temporary file (O_TMPFILE, mode 0600) on the root's file system, for a
    /// download that is verified before it is unpacked. Where O_TMPFILE is not supported,
    /// a fresh name is made and unlinked at once.
    pub fn spool_file(&self) -> Result<std::fs::File> {
        let flags = OFlags::RDWR | OFlags::CLOEXEC;
        match rfs::openat(&self.fd, ".", flags | OFlags::TMPFILE, Mode::from_raw_mode(0o600)) {
            Ok(fd) => return Ok(fd.into()),
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {}
            Err(e) => return Err(e).with_context(|| format!("making a temporary file in {}", self.path.display())),
        }
        let mut b = [0u8; 8];
        rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())?;
        let name = format!(".anemos-spool-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>());
        let fd = rfs::openat(&self.fd, name.as_str(), flags | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW, Mode::from_raw_mode(0o600))
            .with_context(|| format!("making a temporary file in {}", self.path.display()))?;
        rfs::unlinkat(&self.fd, name.as_str(), AtFlags::empty())?;
        Ok(fd.into())
    }

    fn resolve_flags() -> ResolveFlags {
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
    }

    /// Opens a directory inside the root (symlinks followed within the root) as an `O_PATH` fd.
    pub fn dir(&self, rel: &str) -> Result<OwnedFd> {
        let p = if rel.is_empty() { "." } else { rel };
        rfs::openat2(&self.fd, p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), Self::resolve_flags())
            .with_context(|| format!("opening the directory /{rel} in {}", self.path.display()))
    }

    /// Like [`Root::dir`], creating missing directories (mode 0755, root-owned) on the way.
    pub fn dir_all(&self, rel: &str) -> Result<OwnedFd> {
        match self.dir(rel) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.downcast_ref::<Errno>() != Some(&Errno::NOENT) => return Err(e),
            Err(_) => {}
        }
        let mut cur = self.dir("")?;
        let mut done = String::new();
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            match rfs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e).with_context(|| format!("creating /{done}/{comp} in {}", self.path.display())),
            }
            if !done.is_empty() {
                done.push('/');
            }
            done.push_str(comp);
            cur = self.dir(&done)?;
        }
        Ok(cur)
    }

    /// The parent directory fd of `p` (created if missing) and its last component.
    pub fn parent_of<'p>(&self, p: &'p InRoot) -> Result<(OwnedFd, &'p str)> {
        let (parent, name) = p.split().context("the root directory itself has no parent")?;
        Ok((self.dir_all(parent)?, name))
    }

    /// Removes whatever non-directory is at `name` in `dir`, so it can be replaced.
    pub fn clear(dir: &OwnedFd, name: &str) -> Result<()> {
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("inspecting {name}")),
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory => {
                bail!("{name} is a directory and cannot be replaced by a non-directory")
            }
            Ok(_) => rfs::unlinkat(dir, name, AtFlags::empty()).with_context(|| format!("removing the old {name}")),
        }
    }

    /// Creates (or replaces) a regular file and returns it open for writing.
    pub fn create_file(&self, p: &InRoot, mode: u32) -> Result<File> {
        let (dir, name) = self.parent_of(p)?;
        Self::clear(&dir, name).with_context(|| format!("replacing {}", p.absolute()))?;
        let fd = rfs::openat(&dir, name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(mode & 0o777))
            .with_context(|| format!("creating {} in {}", p.absolute(), self.path.display()))?;
        Ok(File::from(fd))
    }

    /// Writes a whole small file (dpkg database entries, configuration).
    pub fn write_file(&self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        use std::io::Write;
        let p = InRoot::parse(rel.trim_start_matches('/'))?;
        let mut f = self.create_file(&p, mode)?;
        f.write_all(data).with_context(|| format!("writing {}", p.absolute()))?;
        rfs::fchmod(&f, Mode::from_raw_mode(mode)).with_context(|| format!("setting the mode of {}", p.absolute()))?;
        Ok(())
    }

    /// Reads a file inside the root (following symlinks within it).
    pub fn read_file(&self, rel: &str) -> Result<Vec<u8>> {
        use std::io::Read;
        let fd = rfs::openat2(&self.fd, rel.trim_start_matches('/'), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty(), Self::resolve_flags())
            .with_context(|| format!("opening /{} in {}", rel.trim_start_matches('/'), self.path.display()))?;
        let mut out = Vec::new();
        File::from(fd).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Whether something (of any type, not followed) exists at `rel`.
    pub fn exists(&self, rel: &str) -> bool {
        let Ok(p) = InRoot::parse(rel.trim_start_matches('/')) else { return false };
        let Some((parent, name)) = p.split() else { return true };
        self.dir(parent).is_ok_and(|d| rfs::statat(&d, name, AtFlags::SYMLINK_NOFOLLOW).is_ok())
    }

    /// Sets the modification (and access) time of a file inside the root (not following a
    /// final symlink).
    pub fn set_mtime(&self, rel: &str, secs: i64) -> Result<()> {
        let p = InRoot::parse(rel.trim_start_matches('/'))?;
        let (dir, name) = self.parent_of(&p)?;
        let t = rfs::Timespec { tv_sec: secs, tv_nsec: 0 };
        rfs::utimensat(&dir, name, &rfs::Timestamps { last_access: t, last_modification: t }, AtFlags::SYMLINK_NOFOLLOW).with_context(|| format!("setting the mtime of {}", p.absolute()))
    }

    /// Whether `rel` exists, following symlinks inside the root (e.g. `bin/sh` through the
    /// `bin → usr/bin` link and on to `busybox`).
    pub fn resolves(&self, rel: &str) -> bool {
        let rel = rel.trim_start_matches('/');
        rfs::openat2(&self.fd, if rel.is_empty() { "." } else { rel }, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), Self::resolve_flags()).is_ok()
    }

    /// Creates (or replaces) a symlink; its target is stored verbatim (our own lookups never
    /// follow it out of the root).
    pub fn symlink(&self, p: &InRoot, target: &str) -> Result<()> {
        let (dir, name) = self.parent_of(p)?;
        Self::clear(&dir, name).with_context(|| format!("replacing {}", p.absolute()))?;
        rfs::symlinkat(target, &dir, name).with_context(|| format!("creating the symlink {} → {target}", p.absolute()))
    }

    /// Removes a file or symlink (not a directory); missing is fine.
    pub fn remove(&self, rel: &str) -> Result<()> {
        let p = InRoot::parse(rel.trim_start_matches('/'))?;
        let (parent, name) = p.split().context("cannot remove the root")?;
        let dir = match self.dir(parent) {
            Ok(d) => d,
            Err(_) => return Ok(()),
        };
        match rfs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", p.absolute())),
        }
    }

    /// Renames `from` to `to` inside the root (both parents resolved in the root).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (a, b) = (InRoot::parse(from.trim_start_matches('/'))?, InRoot::parse(to.trim_start_matches('/'))?);
        let (da, na) = self.parent_of(&a)?;
        let (db, nb) = self.parent_of(&b)?;
        rfs::renameat(&da, na, &db, nb).with_context(|| format!("renaming {} to {}", a.absolute(), b.absolute()))
    }
}
