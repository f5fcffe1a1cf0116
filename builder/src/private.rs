//! Files that hold a payload (revealed secrets, a deploy token) on this machine: written
//! 0600 through a temporary name and a rename, never following a planted symlink; and
//! [`Scratch`], a private working directory (mkdtemp semantics: a fresh random name made
//! with mode 0700, never an existing directory) that is removed on every path out,
//! errors and panics included.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Writes `data` to `path` through a temporary file in the same directory and a rename,
/// with exactly `mode`: readers see the old file or the whole new one, never a part, and
/// the bytes never sit in a file with wider permissions.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.{}.anemos-new", name.to_string_lossy(), random_suffix()?));
    let result = (|| -> Result<()> {
        let mut f = create_new(&tmp, mode)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// A new file with exactly `mode` (whatever the umask), refusing an existing file or a
/// symlink at `path` (O_EXCL and O_NOFOLLOW).
pub fn create_new(path: &Path, mode: u32) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // The umask may have taken bits away from `mode`; the file must have exactly it.
    f.set_permissions(std::fs::Permissions::from_mode(mode)).with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(f)
}

/// A private working directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Makes `PARENT/PREFIX-RANDOM` with mode 0700. An existing name is never reused (a
    /// directory another user made first could be read or swapped under us).
    pub fn new(parent: &Path, prefix: &str) -> Result<Scratch> {
        for _ in 0..16 {
            let path = parent.join(format!("{prefix}-{}", random_suffix()?));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).with_context(|| format!("setting the mode of {}", path.display()))?;
                    return Ok(Scratch { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating a private directory in {}", parent.display())),
            }
        }
        bail!("could not make a fresh directory in {} (16 names taken)", parent.display())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `name` inside, mode 0600, refusing anything already there.
    pub fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        let path = self.path.join(name);
        create_new(&path, 0o600)?.write_all(data).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn random_suffix() -> Result<String> {
    let mut b = [0u8; 6];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).context("reading random bytes for a file name")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn scratch_is_private_fresh_and_gone_on_every_path() {
        let parent = std::env::temp_dir().join(format!("anemos-private-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        let kept;
        {
            let s = Scratch::new(&parent, "work").unwrap();
            assert_eq!(mode(s.path()), 0o700);
            let f = s.write("payload", b"secret").unwrap();
            assert_eq!(mode(&f), 0o600);
            assert!(s.write("payload", b"again").is_err(), "an existing file is never reused");
            let other = Scratch::new(&parent, "work").unwrap();
            assert_ne!(other.path(), s.path());
            kept = s.path().to_path_buf();
        }
        assert!(!kept.exists(), "the scratch directory outlived its owner");
        // Also when the owner fails half-way (a panic unwinds through it).
        let r = std::panic::catch_unwind(|| {
            let s = Scratch::new(&parent, "panics").unwrap();
            s.write("initramfs", b"x").unwrap();
            panic!("{}", s.path().display());
        });
        let msg = r.unwrap_err().downcast::<String>().unwrap();
        assert!(!Path::new(msg.as_str()).exists());
        std::fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn atomic_writes_have_exactly_their_mode_and_refuse_planted_links() {
        let dir = std::env::temp_dir().join(format!("anemos-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("payload.cpio");
        write_atomic(&f, b"one", 0o600).unwrap();
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&f, b"two", 0o600).unwrap();
        assert_eq!((mode(&f), std::fs::read(&f).unwrap()), (0o600, b"two".to_vec()), "the old file's mode is not kept");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "a temporary file was left");
        let target = dir.join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.join("planted")).unwrap();
        assert!(create_new(&dir.join("planted"), 0o600).is_err());
        assert!(!target.exists(), "the planted link was followed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
