//! Downloading and unpacking the selected packages in parallel. Each `.pkg.tar.*` is read
//! whole from the mirror through size and SHA-256 checks into a spool (memory, or an
//! unnamed file in the root), its OpenPGP signature is verified over those bytes where its
//! repository checks signatures, and only then is it decompressed (capped by its installed
//! size) into the root. Top-level members whose names start with `.` are package metadata,
//! kept out of the root as pacman does (`.PKGINFO`, `.MTREE`, `.INSTALL`, `.CHANGELOG`,
//! `.BUILDINFO`).

use std::io::{self, BufReader, Read};

use anyhow::{bail, Context, Result};

use super::db::Package;
use super::{now, Prepared};
use crate::packages::extract::{self, Captured, Placement, Root, Written};
use crate::packages::fetch::progress::Progress;
use crate::packages::fetch::{pool, Expected, Fetcher, Spool};

/// One package in the root, with what the local database needs.
#[derive(Debug)]
pub struct Unpacked {
    /// Index in [`Prepared::packages`].
    pub index: usize,
    pub written: Vec<Written>,
    /// `.PKGINFO` as `key = value` pairs.
    pub pkginfo: Vec<(String, String)>,
    pub mtree: Option<Vec<u8>>,
    pub install: Option<Captured>,
    pub changelog: Option<Vec<u8>>,
}

impl Unpacked {
    /// Values of a `.PKGINFO` key (`backup`, `depend`, …).
    pub fn info<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a str> + 'a {
        let key = key.to_string();
        self.pkginfo.iter().filter(move |(k, _)| *k == key).map(|(_, v)| v.as_str())
    }
}

/// Streams every selected package into `root`; the result is in install order.
pub fn unpack_all(prepared: &Prepared, root: &Root, opts: &extract::Options) -> Result<Vec<Unpacked>> {
    let fetcher = Fetcher::new(prepared.config.fetch.clone())?;
    // The biggest first, so that a kernel does not start last and hold up the end.
    let mut items: Vec<usize> = (0..prepared.packages.len()).collect();
    items.sort_by(|&a, &b| prepared.packages[b].csize.cmp(&prepared.packages[a].csize).then(a.cmp(&b)));
    let progress = Progress::new("packages", items.len() as u64, prepared.download_size());
    let mut results = pool::run(&items, fetcher.config.parallel, |&i| {
        let p = &prepared.packages[i];
        let url = prepared.url(p);
        let r = unpack_one(prepared, &fetcher, &url, i, root, opts, &progress).with_context(|| format!("package {} {} ({url})", p.name, p.version));
        progress.item_done();
        r
    })?;
    results.sort_by_key(|u| u.index);
    Ok(results)
}

fn unpack_one(prepared: &Prepared, fetcher: &Fetcher, url: &str, i: usize, root: &Root, opts: &extract::Options, progress: &Progress) -> Result<Unpacked> {
    let p = &prepared.packages[i];
    let expected = Expected { size: (p.csize > 0).then_some(p.csize), sha256: p.sha256.clone(), limit: Some(MAX_PACKAGE) };
    let mut reader = fetcher.open(url, expected)?.with_progress(progress);
    let mut spool = Spool::fill(&mut reader, if p.csize > 0 { p.csize } else { MAX_PACKAGE }, || root.spool_file(), "the package")?;
    if let (Some(sig), Some(k)) = (&prepared.signatures[i], &prepared.keyring) {
        let checked = k.check_detached(sig, now(&prepared.config))?;
        checked.verify(BufReader::with_capacity(64 << 10, spool.reader()?)).context("verifying the package signature")?;
    }
    let opts = extract::Options { md5: true, ..opts.clone() };
    unpack_stream(&mut BufReader::with_capacity(64 << 10, spool.reader()?), p, i, root, &opts)
}

/// The largest package accepted when the database gives no size.
const MAX_PACKAGE: u64 = 4 << 30;

/// Decompression (by the file name, capped by the installed size), the tar stream into the
/// root, metadata captured.
fn unpack_stream(input: &mut dyn Read, p: &Package, i: usize, root: &Root, opts: &extract::Options) -> Result<Unpacked> {
    let limit = if p.isize > 0 { extract::unpacked_limit(p.isize) } else { MAX_PACKAGE * 8 };
    let mut decoded = extract::Capped::new(extract::decompress(&p.filename, input)?, limit, p.filename.clone());
    let decide = |path: &str| if is_metadata(path) { Placement::Capture } else { Placement::Write(None) };
    let (written, captured) = extract::unpack_tar_filtered(root, &mut decoded, opts, &decide)?;
    io::copy(&mut decoded, &mut io::sink()).context("reading the end of the compressed stream")?;
    let member = |name: &str| captured.iter().find(|c: &&Captured| c.path == name).cloned();
    let find = |name: &str| member(name).map(|c| c.data);
    let pkginfo = parse_pkginfo(&find("/.PKGINFO").context("the package has no .PKGINFO")?)?;
    let get = |k: &str| pkginfo.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).unwrap_or("");
    if get("pkgname") != p.name || get("pkgver") != p.version {
        bail!("the package is {} {}, the database promised {} {}", get("pkgname"), get("pkgver"), p.name, p.version);
    }
    Ok(Unpacked { index: i, written, mtree: find("/.MTREE"), install: member("/.INSTALL"), changelog: find("/.CHANGELOG"), pkginfo })
}

/// A top-level member whose name starts with `.`: metadata pacman never extracts.
pub fn is_metadata(path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    rel.starts_with('.') && rel != "." && !rel.contains('/')
}

/// `.PKGINFO`: `key = value` lines, `#` comments (makepkg's `write_pkginfo`).
pub fn parse_pkginfo(data: &[u8]) -> Result<Vec<(String, String)>> {
    let text = std::str::from_utf8(data).context(".PKGINFO is not UTF-8")?;
    Ok(text.lines().filter(|l| !l.trim_start().starts_with('#')).filter_map(|l| l.split_once(" = ").map(|(k, v)| (k.trim().to_string(), v.to_string()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_and_pkginfo() {
        assert!(is_metadata("/.PKGINFO") && is_metadata("/.MTREE") && is_metadata("/.whatever"));
        assert!(!is_metadata("/usr/.hidden") && !is_metadata("/usr") && !is_metadata("/."));
        let info = parse_pkginfo(b"# Generated by makepkg 6.0.2\npkgname = hello\npkgver = 1.0-1\nbackup = etc/hello.conf\nbackup = etc/other.conf\n").unwrap();
        assert_eq!(info[0], ("pkgname".into(), "hello".into()));
        assert_eq!(info.iter().filter(|(k, _)| k == "backup").count(), 2);
    }
}
