//! Hostile and ordinary archives, built here with the `tar` crate (raw header names where
//! the crate would refuse to write them).

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;

/// A scratch directory with `root/` and `outside/`, removed when the test ends.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("anemos-extract-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("root")).unwrap();
    std::fs::create_dir_all(d.join("outside")).unwrap();
    Scratch(d)
}

/// A header with a raw name (and link name), bypassing the crate's path checks.
fn header(name: &str, typ: EntryType, size: u64, link: Option<&str>) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(typ);
    h.set_size(size);
    h.set_mode(if typ == EntryType::Directory { 0o755 } else { 0o644 });
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    let old = h.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        old.linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
    h
}

struct Builder(tar::Builder<Vec<u8>>);

impl Builder {
    fn new() -> Self {
        Builder(tar::Builder::new(Vec::new()))
    }
    fn file(mut self, name: &str, data: &[u8]) -> Self {
        self.0.append(&header(name, EntryType::Regular, data.len() as u64, None), data).unwrap();
        self
    }
    fn entry(mut self, name: &str, typ: EntryType, link: Option<&str>) -> Self {
        self.0.append(&header(name, typ, 0, link), &[][..]).unwrap();
        self
    }
    fn done(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn unpack(dir: &Path, tar: &[u8]) -> Result<Vec<Written>> {
    let root = Root::open(&dir.join("root"))?;
    unpack_tar(&root, tar, &Options::default(), &|_| None)
}

fn outside_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("outside")).unwrap().next().is_none()
}

#[test]
fn dotdot_and_absolute_paths_are_refused() {
    let d = scratch("dotdot");
    let err = unpack(&d, &Builder::new().file("./../outside/x", b"evil").done()).unwrap_err();
    assert!(format!("{err:#}").contains("`..`"), "{err:#}");
    let abs = format!("{}/outside/y", d.display());
    let err = unpack(&d, &Builder::new().file(&abs, b"evil").done()).unwrap_err();
    assert!(format!("{err:#}").contains("absolute"), "{err:#}");
    assert!(outside_is_empty(&d));
}

#[test]
fn planted_symlinks_cannot_lead_outside() {
    let d = scratch("symlink");
    let out = d.join("outside");
    let tar = Builder::new()
        .entry("./evil", EntryType::Symlink, Some(out.to_str().unwrap()))
        .entry("./up", EntryType::Symlink, Some("../../../../../../.."))
        .entry("./up2", EntryType::Symlink, Some("../outside"))
        .file("./up/outside-file", b"contained")
        .done();
    unpack(&d, &tar).unwrap();
    // `up` resolves to the root itself: the file lands inside.
    assert_eq!(std::fs::read(d.join("root/outside-file")).unwrap(), b"contained");
    for name in ["./evil/pwned", "./up2/pwned"] {
        let err = unpack(&d, &Builder::new().file(name, b"evil").done());
        assert!(err.is_err(), "{name} must not be written");
    }
    assert!(outside_is_empty(&d));
}

#[test]
fn hard_links_stay_inside() {
    let d = scratch("hardlink");
    std::fs::write(d.join("outside/secret"), b"host").unwrap();
    let out = d.join("outside");
    for link in ["../outside/secret".to_string(), format!("{}/secret", out.display())] {
        let err = unpack(&d, &Builder::new().entry("./l", EntryType::Link, Some(&link)).done()).unwrap_err();
        assert!(format!("{err:#}").contains("refusing"), "{err:#}");
    }
    // Through a planted symlink the link target is looked up inside the root: not found.
    let tar = Builder::new().entry("./evil", EntryType::Symlink, Some(out.to_str().unwrap())).entry("./l", EntryType::Link, Some("./evil/secret")).done();
    assert!(unpack(&d, &tar).is_err());
    assert!(!d.join("root/l").exists());
    // A proper hard link inside the root works.
    unpack(&d, &Builder::new().file("./a", b"data").entry("./b", EntryType::Link, Some("./a")).done()).unwrap();
    let (a, b) = (std::fs::metadata(d.join("root/a")).unwrap(), std::fs::metadata(d.join("root/b")).unwrap());
    assert_eq!(a.ino(), b.ino());
    assert_eq!(std::fs::read_dir(d.join("outside")).unwrap().count(), 1);
}

#[test]
fn devices_and_fifos_are_made_with_mknod() {
    let d = scratch("devices");
    let mut b = Builder::new();
    let mut h = header("./dev/null", EntryType::Char, 0, None);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_cksum();
    b.0.append(&h, &[][..]).unwrap();
    let mut h = header("./dev/loop9", EntryType::Block, 0, None);
    h.set_device_major(7).unwrap();
    h.set_device_minor(9).unwrap();
    h.set_cksum();
    b.0.append(&h, &[][..]).unwrap();
    let tar = b.entry("./run/fifo", EntryType::Fifo, None).done();
    let w = unpack(&d, &tar).unwrap();
    assert_eq!(w.iter().map(|w| w.kind).collect::<Vec<_>>(), [Kind::Device, Kind::Device, Kind::Fifo]);
    let m = std::fs::symlink_metadata(d.join("root/dev/null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
    assert!(std::fs::symlink_metadata(d.join("root/dev/loop9")).unwrap().file_type().is_block_device());
    assert!(std::fs::symlink_metadata(d.join("root/run/fifo")).unwrap().file_type().is_fifo());
}

#[test]
fn merged_usr_symlinks_are_followed_inside_the_root() {
    let d = scratch("merged");
    std::fs::create_dir_all(d.join("root/usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", d.join("root/bin")).unwrap();
    std::os::unix::fs::symlink("/usr/bin", d.join("root/sbin")).unwrap();
    let tar = Builder::new().entry("./bin/", EntryType::Directory, None).file("./bin/ls", b"ls").file("./sbin/init", b"init").done();
    let w = unpack(&d, &tar).unwrap();
    assert_eq!(w.iter().map(|w| w.path.as_str()).collect::<Vec<_>>(), ["/bin", "/bin/ls", "/sbin/init"]);
    assert!(std::fs::symlink_metadata(d.join("root/bin")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(d.join("root/usr/bin/ls")).unwrap(), b"ls");
    assert_eq!(std::fs::read(d.join("root/usr/bin/init")).unwrap(), b"init");
}

#[test]
fn owner_mode_mtime_and_placement() {
    let d = scratch("meta");
    let mut b = Builder::new();
    let mut h = header("./usr/bin/su", EntryType::Regular, 2, None);
    h.set_mode(0o4755);
    h.set_uid(0);
    h.set_gid(42);
    h.set_cksum();
    b.0.append(&h, &b"su"[..]).unwrap();
    let tar = b.file("./etc/conf", b"new").done();
    let root = Root::open(&d.join("root")).unwrap();
    let place = |p: &str| (p == "/etc/conf").then(|| "/etc/conf.dpkg-new".to_string());
    unpack_tar(&root, &tar[..], &Options { owners: true, md5: false, sha1: false, xattrs: false }, &place).unwrap();
    let m = std::fs::metadata(d.join("root/usr/bin/su")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(m.gid(), 42);
    assert_eq!(m.mtime(), 1_600_000_000);
    assert_eq!(std::fs::read(d.join("root/etc/conf.dpkg-new")).unwrap(), b"new");
    assert!(!d.join("root/etc/conf").exists());
}

#[test]
fn truncated_and_corrupt_streams_fail() {
    let d = scratch("trunc");
    let tar = Builder::new().file("./a", &[7u8; 5000]).done();
    assert!(unpack(&d, &tar[..3000]).is_err());
    let mut bad = tar.clone();
    bad[100] ^= 0xff; // the mode field: header checksum no longer matches
    assert!(unpack(&d, &bad).is_err());
    assert!(decompress("data.tar.bz2", &b""[..]).is_err());
}
