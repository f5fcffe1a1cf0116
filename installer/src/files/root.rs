//! A target root directory whose paths are resolved as if it were `/`: every lookup goes
//! through openat2(2) with `RESOLVE_IN_ROOT`, so symbolic links (absolute or with `..`) in
//! the target resolve inside it, the way they will once the system runs, and never reach
//! the host (a planted `/etc -> /tmp/elsewhere` leads to ROOT/tmp/elsewhere). Paths given to
//! us must be clean relative paths: no `..`, no `.`, no empty components.
//!
//! Writes replace a file atomically (a temporary name in the same directory, then rename),
//! so an interrupted step never leaves a half-written file; new files are root-owned.

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Splits a clean relative path into its components, refusing `..`, `.` and empty parts.
pub fn components(rel: &str) -> Result<Vec<&str>> {
    let trimmed = rel.trim_start_matches('/');
    let parts: Vec<&str> = trimmed.split('/').collect();
    if trimmed.is_empty() || parts.iter().any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0')) {
        bail!("{rel:?} is not a clean path inside the target root");
    }
    Ok(parts)
}

impl RootDir {
    pub fn open(path: &Path) -> Result<Self> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).with_context(|| format!("opening the target root {}", path.display()))?;
        Ok(RootDir { fd, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `rel` resolved inside the root.
    fn open_in(&self, rel: &str, flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        loop {
            match rustix::fs::openat2(&self.fd, rel, flags | OFlags::CLOEXEC, mode, resolve) {
                Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
                other => return other,
            }
        }
    }

    fn show(&self, rel: &str) -> String {
        format!("/{} in {}", rel.trim_start_matches('/'), self.path.display())
    }

    /// Makes every directory of `rel_dir` that is missing (mode 0755, root-owned) and
    /// returns the last one, opened. An empty `rel_dir` is the root itself.
    pub fn mkdir_p(&self, rel_dir: &str) -> Result<OwnedFd> {
        let dir_flags = OFlags::PATH | OFlags::DIRECTORY;
        if rel_dir.is_empty() {
            return self.open_in(".", dir_flags, Mode::empty()).with_context(|| format!("opening {}", self.path.display()));
        }
        let parts = components(rel_dir)?;
        let mut current = self.open_in(".", dir_flags, Mode::empty()).with_context(|| format!("opening {}", self.path.display()))?;
        for i in 0..parts.len() {
            let prefix = parts[..=i].join("/");
            current = match self.open_in(&prefix, dir_flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&current, parts[i], Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e).with_context(|| format!("creating directory {}", self.show(&prefix))),
                    }
                    let fd = match self.open_in(&prefix, dir_flags, Mode::empty()) {
                        Err(Errno::NOENT) => bail!("{} is a symlink whose target does not exist inside the target root", self.show(&prefix)),
                        other => other.with_context(|| format!("opening directory {}", self.show(&prefix)))?,
                    };
                    // Directories we create are root's, like everything the install writes.
                    let _ = rustix::fs::chownat(&current, parts[i], Some(Uid::ROOT), Some(Gid::ROOT), AtFlags::SYMLINK_NOFOLLOW);
                    fd
                }
                Err(Errno::NOTDIR) => bail!("{} is not a directory in the target", self.show(&prefix)),
                Err(e) => return Err(e).with_context(|| format!("opening directory {}", self.show(&prefix))),
            };
        }
        Ok(current)
    }

    /// The parent directory (created if missing) and the last component of `rel`.
    fn parent_of<'a>(&self, rel: &'a str) -> Result<(OwnedFd, &'a str)> {
        let parts = components(rel)?;
        let name = parts[parts.len() - 1];
        let parent = &rel.trim_start_matches('/')[..rel.trim_start_matches('/').len() - name.len()];
        Ok((self.mkdir_p(parent.trim_end_matches('/'))?, name))
    }

    /// Refuses to replace a directory with a file or a link.
    fn not_a_dir(&self, dir: &OwnedFd, name: &str, rel: &str) -> Result<()> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                bail!("{} is a directory in the target; a file or link cannot replace it", self.show(rel))
            }
            _ => Ok(()),
        }
    }

    /// Writes `data` to `rel` with `mode`, owned by root, replacing what was there.
    pub fn write_file(&self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        let (dir, name) = self.parent_of(rel)?;
        self.not_a_dir(&dir, name, rel)?;
        let tmp = format!(".{name}.anemos-new");
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        let fd = rustix::fs::openat(&dir, tmp.as_str(), OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))
            .with_context(|| format!("creating {}", self.show(rel)))?;
        let result = (|| -> Result<()> {
            let mut file = std::fs::File::from(fd);
            file.write_all(data)?;
            // chown before chmod: chown clears set-id bits.
            rustix::fs::fchown(&file, Some(Uid::ROOT), Some(Gid::ROOT))?;
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o7777))?;
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        }
        result.with_context(|| format!("writing {}", self.show(rel)))
    }

    /// Makes `rel` a symbolic link to `target` (not followed, owned by root).
    pub fn symlink(&self, rel: &str, target: &str) -> Result<()> {
        let (dir, name) = self.parent_of(rel)?;
        self.not_a_dir(&dir, name, rel)?;
        let tmp = format!(".{name}.anemos-new");
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        let result = (|| -> Result<()> {
            rustix::fs::symlinkat(target, &dir, tmp.as_str())?;
            rustix::fs::chownat(&dir, tmp.as_str(), Some(Uid::ROOT), Some(Gid::ROOT), AtFlags::SYMLINK_NOFOLLOW)?;
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        }
        result.with_context(|| format!("making symlink {} -> {target}", self.show(rel)))
    }

    /// Reads `rel` (links followed inside the root); `None` if it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        components(rel)?;
        match self.open_in(rel, OFlags::RDONLY, Mode::empty()) {
            Ok(fd) => {
                let mut data = Vec::new();
                std::fs::File::from(fd).read_to_end(&mut data).with_context(|| format!("reading {}", self.show(rel)))?;
                Ok(Some(data))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("opening {}", self.show(rel))),
        }
    }

    /// Rewrites the existing file `rel` in place through `f` (links followed inside the
    /// root; the file keeps its inode, owner and mode). `f` sees the old contents.
    pub fn rewrite(&self, rel: &str, f: impl FnOnce(&[u8]) -> Result<Vec<u8>>) -> Result<()> {
        components(rel)?;
        let fd = match self.open_in(rel, OFlags::RDWR, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => bail!("{} does not exist", self.show(rel)),
            Err(e) => return Err(e).with_context(|| format!("opening {}", self.show(rel))),
        };
        let mut file = std::fs::File::from(fd);
        let mut old = Vec::new();
        file.read_to_end(&mut old).with_context(|| format!("reading {}", self.show(rel)))?;
        let new = f(&old)?;
        file.rewind()?;
        file.write_all(&new).with_context(|| format!("writing {}", self.show(rel)))?;
        file.set_len(new.len() as u64).with_context(|| format!("truncating {}", self.show(rel)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A scratch directory, removed when the test ends.
    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("anemos-root-{name}-")).tempdir().unwrap()
    }

    #[test]
    fn planted_absolute_symlinks_stay_inside() {
        let tmp = scratch("planted");
        let base = tmp.path();
        let root = base.join("root");
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        // The target's /etc points at a host directory by absolute path.
        std::os::unix::fs::symlink(&elsewhere, root.join("etc")).unwrap();
        let r = RootDir::open(&root).unwrap();
        // Dangling inside the root: refused, nothing written anywhere.
        let e = r.write_file("etc/hostname", b"mx\n", 0o644).unwrap_err();
        assert!(e.to_string().contains("does not exist inside the target root"), "{e:#}");
        assert!(!elsewhere.join("hostname").exists());
        // Once the link's target exists inside the root, the write lands there.
        std::fs::create_dir_all(root.join(elsewhere.strip_prefix("/").unwrap())).unwrap();
        r.write_file("etc/hostname", b"mx\n", 0o644).unwrap();
        assert!(!elsewhere.join("hostname").exists(), "wrote through the planted link to the host");
        let inside = root.join(elsewhere.strip_prefix("/").unwrap()).join("hostname");
        assert_eq!(std::fs::read(&inside).unwrap(), b"mx\n");
        assert_eq!(std::fs::metadata(&inside).unwrap().permissions().mode() & 0o7777, 0o644);
        assert_eq!(std::fs::metadata(&inside).unwrap().uid(), 0);
        // `..` in a link resolves at the root, as in a chroot.
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        r.write_file("up/x", b"1", 0o600).unwrap();
        assert!(root.join("x").exists());
    }

    #[test]
    fn dotdot_and_directories_are_refused() {
        let tmp = scratch("dotdot");
        let root = tmp.path();
        let r = RootDir::open(root).unwrap();
        assert!(r.write_file("../x", b"", 0o644).is_err());
        assert!(r.write_file("a/./b", b"", 0o644).is_err());
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        assert!(r.symlink("etc/ssh", "/tmp").unwrap_err().to_string().contains("is a directory"));
        r.symlink("etc/mtab", "/proc/self/mounts").unwrap();
        assert_eq!(std::fs::read_link(root.join("etc/mtab")).unwrap(), Path::new("/proc/self/mounts"));
        r.write_file("etc/mtab", b"file now\n", 0o644).unwrap();
        assert_eq!(std::fs::read(root.join("etc/mtab")).unwrap(), b"file now\n");
    }

    #[test]
    fn rewrite_follows_links_inside() {
        let tmp = scratch("rewrite");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("run/resolv.conf"), "a\n").unwrap();
        std::os::unix::fs::symlink("/run/resolv.conf", root.join("etc/resolv.conf")).unwrap();
        let r = RootDir::open(root).unwrap();
        r.rewrite("etc/resolv.conf", |old| Ok([old, b"b\n"].concat())).unwrap();
        assert_eq!(std::fs::read(root.join("run/resolv.conf")).unwrap(), b"a\nb\n");
        assert!(r.rewrite("etc/missing", |o| Ok(o.to_vec())).unwrap_err().to_string().contains("does not exist"));
    }
}
