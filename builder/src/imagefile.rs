//! Writing an image file (`anemos build`): the built root as one reproducible tar stream —
//! the manifest first, then every entry sorted by path, numeric owners only, mtimes
//! clamped to the build's time, hard links as links, extended attributes (file
//! capabilities) as PAX `SCHILY.xattr.*` records — compressed with zstd on one thread at a
//! fixed level, and hashed as it is written. The same tree and clamp give the same bytes.
//! The sidecar `IMAGE.json` is the manifest with the stream's SHA-256 and size.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use installer::image::{Manifest, MANIFEST_MEMBER};
use sha2::{Digest, Sha256};

/// One entry of the tree, relative to the root.
struct Item {
    rel: PathBuf,
    meta: std::fs::Metadata,
}

/// Walks `root` (not following links, not crossing into other file systems), parents
/// before children, in byte order of the path.
fn walk(root: &Path) -> Result<Vec<Item>> {
    let dev = std::fs::symlink_metadata(root).with_context(|| format!("reading {}", root.display()))?.dev();
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel = rel.join(&name);
            let meta = std::fs::symlink_metadata(root.join(&rel)).with_context(|| format!("reading {}", rel.display()))?;
            if meta.is_dir() && meta.dev() == dev {
                subdirs.push(rel.clone());
            }
            out.push(Item { rel, meta });
        }
        stack.extend(subdirs.into_iter().rev());
    }
    out.sort_by(|a, b| a.rel.as_os_str().as_encoded_bytes().cmp(b.rel.as_os_str().as_encoded_bytes()));
    Ok(out)
}

/// Writes the image of `root` to `out` (created new with `mode`), with `manifest` (its
/// sizes are filled in here) as the first member. Returns the manifest with the stream's
/// SHA-256 and size.
pub fn write(root: &Path, out: &Path, mut manifest: Manifest, level: i32, mode: u32) -> Result<Manifest> {
    let items = walk(root)?;
    manifest.entries = items.len() as u64;
    manifest.unpacked = items.iter().filter(|i| i.meta.is_file()).map(|i| i.meta.len()).sum();
    let file = crate::private::create_new(out, mode)?;
    let mut hashed = Hashed { inner: io::BufWriter::with_capacity(1 << 20, file), hash: Sha256::new(), size: 0 };
    {
        let mut zstd = zstd::stream::write::Encoder::new(&mut hashed, level).context("starting zstd")?;
        zstd.include_checksum(true).context("zstd checksums")?;
        let mut tar = tar::Builder::new(&mut zstd);
        let json = serde_json::to_vec_pretty(&manifest)?;
        let mut h = header(tar::EntryType::Regular, 0o644, 0, 0, manifest.clamp);
        h.set_size(json.len() as u64);
        tar.append_data(&mut h, MANIFEST_MEMBER, &json[..]).context("writing the manifest")?;
        let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for item in &items {
            append(&mut tar, root, item, manifest.clamp, &mut links).with_context(|| format!("adding /{} to the image", item.rel.display()))?;
        }
        tar.into_inner().context("ending the tar stream")?;
        zstd.finish().context("ending the zstd stream")?;
    }
    hashed.inner.flush()?;
    hashed.inner.get_ref().sync_all()?;
    manifest.sha256 = Some(hex::encode(hashed.hash.finalize()));
    manifest.size = Some(hashed.size);
    Ok(manifest)
}

fn header(kind: tar::EntryType, mode: u32, uid: u32, gid: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

fn append<W: Write>(tar: &mut tar::Builder<W>, root: &Path, item: &Item, clamp: u64, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<()> {
    let m = &item.meta;
    let path = root.join(&item.rel);
    let mtime = (m.mtime().max(0) as u64).min(clamp);
    let ft = m.file_type();
    let mut h = header(tar::EntryType::Regular, m.mode() & 0o7777, m.uid(), m.gid(), mtime);
    if ft.is_file() && m.nlink() > 1 {
        if let Some(first) = links.get(&(m.dev(), m.ino())) {
            h.set_entry_type(tar::EntryType::Link);
            return tar.append_link(&mut h, &item.rel, first).context("writing a hard link");
        }
        links.insert((m.dev(), m.ino()), item.rel.clone());
    }
    xattrs(tar, &path)?;
    if ft.is_file() {
        h.set_size(m.len());
        let f = std::fs::File::open(&path)?;
        return tar.append_data(&mut h, &item.rel, f).context("writing the contents");
    }
    if ft.is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        return tar.append_link(&mut h, &item.rel, std::fs::read_link(&path)?).context("writing a symlink");
    }
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        tar::EntryType::Directory
    } else if ft.is_char_device() {
        tar::EntryType::Char
    } else if ft.is_block_device() {
        tar::EntryType::Block
    } else if ft.is_fifo() {
        tar::EntryType::Fifo
    } else {
        bail!("a socket or other special file has no place in an image");
    };
    h.set_entry_type(kind);
    if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
        let rdev = m.rdev();
        h.set_device_major(rustix::fs::major(rdev))?;
        h.set_device_minor(rustix::fs::minor(rdev))?;
    }
    tar.append_data(&mut h, &item.rel, io::empty()).context("writing the entry")
}

/// A PAX header with the extended attributes of `path` (none for symlinks; SELinux labels
/// belong to the build host's policy and are left out).
fn xattrs<W: Write>(tar: &mut tar::Builder<W>, path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Ok(());
    }
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e).context("listing extended attributes"),
    };
    let mut records = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "security.selinux" {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value).with_context(|| format!("reading {name}"))?;
        value.truncate(len);
        records.push(pax_record(&format!("SCHILY.xattr.{name}"), &value));
    }
    if records.is_empty() {
        return Ok(());
    }
    let data = records.concat();
    let mut h = header(tar::EntryType::XHeader, 0o644, 0, 0, 0);
    h.set_size(data.len() as u64);
    tar.append_data(&mut h, "PaxHeaders/xattrs", &data[..]).context("writing extended attributes")
}

/// `LEN KEY=VALUE\n`, where LEN counts the whole record, itself included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// Hashes and counts what passes to the file.
struct Hashed<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::Path;

    use installer::image::{Manifest, FORMAT};

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::write(root.join("usr/bin/ping"), b"#!/bin/sh\necho pong\n").unwrap();
        std::fs::set_permissions(root.join("usr/bin/ping"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        rustix::fs::lsetxattr(root.join("usr/bin/ping"), "user.anemos-test", b"cap", rustix::fs::XattrFlags::empty()).unwrap();
        std::fs::hard_link(root.join("usr/bin/ping"), root.join("usr/bin/ping6")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        let long = "d".repeat(120);
        std::fs::create_dir_all(root.join(&long)).unwrap();
        std::fs::write(root.join(&long).join("f".repeat(150)), vec![7u8; 70_000]).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, root.join("tmp/fifo"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
    }

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            imgname: "t".into(),
            target: "debian".into(),
            clamp: 1_700_000_000,
            unpacked: 0,
            entries: 0,
            packages: vec![],
            secrets: vec![],
            plan: installer_sample_plan(),
            sha256: None,
            size: None,
        }
    }

    fn installer_sample_plan() -> installer::plan::Plan {
        let dir = tempfile::Builder::new().prefix("anemos-imagefile-plan-").tempdir().unwrap();
        std::fs::write(dir.path().join("IMGBUILD"), "imgname=t\ntarget=debian\nmirror=http://m.test/debian\n").unwrap();
        let checked = installer::imgbuild::check(dir.path(), &installer::imgbuild::CheckOptions::default());
        checked.plan.unwrap_or_else(|| panic!("{}", checked.diagnostics.render()))
    }

    /// Written twice the same; served and installed, the tree comes back: modes (set-id and
    /// sticky bits), a hard link, a symlink, a FIFO, long names, an extended attribute.
    #[test]
    fn an_image_round_trips_and_is_reproducible() {
        let base = std::env::temp_dir().join(format!("anemos-imagefile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (src, dst) = (base.join("src"), base.join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        tree(&src);
        let a = super::write(&src, &base.join("a.tar.zst"), manifest(), 3, 0o644).unwrap();
        let b = super::write(&src, &base.join("b.tar.zst"), manifest(), 3, 0o644).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert!(std::fs::read(base.join("a.tar.zst")).unwrap() == std::fs::read(base.join("b.tar.zst")).unwrap());
        assert_eq!(a.entries, 9);
        let server = crate::serve::ImageServer::start(&base.join("a.tar.zst"), a.sha256.as_deref(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let source = installer::plan::ImageSource { location: server.url_via("127.0.0.1"), sha256: a.sha256.clone() };
        let fetcher = installer::packages::fetch::Fetcher::new(Default::default()).unwrap();
        assert_eq!(installer::image::peek(&fetcher, &source).unwrap().imgname, "t");
        let root = installer::packages::extract::Root::open(&dst).unwrap();
        let done = installer::image::install(&fetcher, &source, &root).unwrap();
        assert_eq!((done.entries, done.manifest.entries), (9, 9));
        let meta = |p: &str| std::fs::symlink_metadata(dst.join(p)).unwrap();
        assert_eq!(meta("usr/bin/ping").mode() & 0o7777, 0o4755);
        assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
        assert_eq!(meta("usr/bin/ping").ino(), meta("usr/bin/ping6").ino(), "the hard link");
        assert_eq!(std::fs::read_link(dst.join("bin")).unwrap(), Path::new("usr/bin"));
        assert!(meta("tmp/fifo").file_type().is_fifo());
        assert_eq!(meta("usr/bin/ping").mtime(), 1_700_000_000, "mtimes are clamped to the build time");
        let mut v = [0u8; 16];
        let n = rustix::fs::lgetxattr(dst.join("usr/bin/ping"), "user.anemos-test", &mut v).unwrap();
        assert_eq!(&v[..n], b"cap");
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
        assert_eq!(std::fs::read(dst.join(&long)).unwrap(), vec![7u8; 70_000]);
        assert!(!dst.join(installer::image::MANIFEST_MEMBER).exists(), "the manifest is not part of the system");
        // One byte changed: the install stops, naming the pin.
        let mut bytes = std::fs::read(base.join("a.tar.zst")).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(base.join("bad.tar.zst"), &bytes).unwrap();
        let bad = crate::serve::ImageServer::start(&base.join("bad.tar.zst"), None, "127.0.0.1:0".parse().unwrap()).unwrap();
        let source = installer::plan::ImageSource { location: bad.url_via("127.0.0.1"), sha256: a.sha256.clone() };
        std::fs::create_dir_all(base.join("dst2")).unwrap();
        let e = format!("{:#}", installer::image::install(&fetcher, &source, &installer::packages::extract::Root::open(&base.join("dst2")).unwrap()).unwrap_err());
        assert!(e.contains("not the one the plan pins") && e.contains("SHA-256 mismatch"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let r = super::pax_record("SCHILY.xattr.security.capability", b"\x01\x02");
        let len: usize = String::from_utf8_lossy(&r).split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, r.len());
        for n in [1usize, 5, 90, 95, 96, 1000] {
            let r = super::pax_record("k", &vec![b'x'; n]);
            let len: usize = String::from_utf8_lossy(&r).split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, r.len(), "{n}");
        }
    }
}
