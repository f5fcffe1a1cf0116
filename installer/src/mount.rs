//! Mounting a new system's filesystems under a target root in dependency order, and
//! unmounting them in reverse — on success and on every error path (the guard's `Drop`).

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// One filesystem to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: PathBuf,
    /// The mount point in the new system (absolute, e.g. `/boot/efi`).
    pub target: PathBuf,
    pub fstype: String,
    /// Filesystem-specific options (`data` of mount(2)).
    pub options: String,
}

/// Mounted filesystems; unmounted newest first when dropped (or by [`Mounted::unmount`]).
#[derive(Debug)]
pub struct Mounted {
    root: PathBuf,
    points: Vec<PathBuf>,
}

/// Mounts `specs` under `root`, parents before children (`/` before `/boot` before
/// `/boot/efi`), creating mount points as needed. On error, what was mounted is unmounted.
pub fn mount_all(root: &Path, specs: &[MountSpec]) -> Result<Mounted> {
    let mut order: Vec<&MountSpec> = specs.iter().collect();
    order.sort_by_key(|s| s.target.components().count());
    let mut mounted = Mounted { root: root.to_path_buf(), points: Vec::new() };
    for spec in order {
        let point = inside(root, &spec.target)?;
        std::fs::create_dir_all(&point).with_context(|| format!("creating mount point {}", point.display()))?;
        let data = std::ffi::CString::new(spec.options.as_str()).context("mount options contain a NUL byte")?;
        let attempt = || mount(&spec.source, &point, spec.fstype.as_str(), MountFlags::empty(), data.as_c_str());
        let result = match attempt() {
            // No driver yet: nobody can modprobe for the kernel in an initramfs.
            Err(rustix::io::Errno::NODEV) | Err(rustix::io::Errno::INVAL) if crate::kmod::load_filesystem(&spec.fstype).unwrap_or(0) > 0 => attempt(),
            other => other,
        };
        result.with_context(|| format!("mounting {} ({}) on {}", spec.source.display(), spec.fstype, point.display()))?;
        log::info!("mounted {} on {} ({})", spec.source.display(), point.display(), spec.fstype);
        mounted.points.push(point);
    }
    Ok(mounted)
}

impl Mounted {
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Unmounts everything, newest first, reporting the first failure after trying all.
    pub fn unmount(mut self) -> Result<()> {
        self.unmount_all()
    }

    fn unmount_all(&mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(point) = self.points.pop() {
            rustix::fs::sync();
            if let Err(e) = unmount(&point, UnmountFlags::empty()) {
                log::warn!("unmounting {}: {e}; detaching it lazily", point.display());
                if let Err(e2) = unmount(&point, UnmountFlags::DETACH) {
                    first_error.get_or_insert_with(|| anyhow::anyhow!("unmounting {}: {e}, then {e2}", point.display()));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_all() {
            log::error!("{e:#}");
        }
    }
}

/// `root` joined with an absolute in-system path, refusing `..` and relative paths.
pub fn inside(root: &Path, path: &Path) -> Result<PathBuf> {
    if !path.is_absolute() {
        bail!("mount point {} is not an absolute path", path.display());
    }
    let mut out = root.to_path_buf();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => bail!("mount point {} contains ..", path.display()),
        }
    }
    Ok(out)
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo and /proc/mounts.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_paths() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain\\"), "/plain\\");
        assert_eq!(inside(Path::new("/target"), Path::new("/boot/efi")).unwrap(), Path::new("/target/boot/efi"));
        assert!(inside(Path::new("/target"), Path::new("/../etc")).is_err());
        assert!(inside(Path::new("/target"), Path::new("boot")).is_err());
    }
}
