//! Downloading and unpacking the selected packages in parallel. Each `.pkg.tar.*` streams
//! from the mirror through size and SHA-256 checks and, where its repository checks
//! signatures, through its OpenPGP signature (verified on a second thread fed by a bounded
//! channel, so the file is read once and never held in memory), through decompression into
//! the root. Top-level members whose names start with `.` are package metadata, kept out of
//! the root as pacman does (`.PKGINFO`, `.MTREE`, `.INSTALL`, `.CHANGELOG`, `.BUILDINFO`).

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{bail, Context, Result};

use super::db::Package;
use super::{now, Prepared};
use crate::packages::extract::{self, Captured, Placement, Root, Written};
use crate::packages::fetch::progress::Progress;
use crate::packages::fetch::{pool, Expected, Fetcher};

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
    let expected = Expected { size: (p.csize > 0).then_some(p.csize), sha256: p.sha256.clone(), limit: None };
    let reader = fetcher.open(url, expected)?.with_progress(progress);
    let checked = match (&prepared.signatures[i], &prepared.keyring) {
        (Some(sig), Some(k)) => Some(k.check_detached(sig, now(&prepared.config))?),
        _ => None,
    };
    let opts = extract::Options { md5: true, ..opts.clone() };
    let Some(checked) = checked else {
        let mut reader = reader;
        return unpack_verified(&mut reader, p, i, root, &opts);
    };
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Vec<u8>>(16);
        let verifier = s.spawn(move || checked.verify(ChannelReader { rx, buf: Vec::new(), pos: 0 }));
        let mut tee = Tee { inner: reader, tx: Some(tx) };
        let unpacked = unpack_verified(&mut tee, p, i, root, &opts);
        tee.tx = None;
        let verified = verifier.join().map_err(|_| anyhow::anyhow!("the signature thread panicked"))?;
        let u = unpacked?;
        verified.context("verifying the package signature")?;
        Ok(u)
    })
}

/// [`unpack_stream`], then the rest of the download (archive padding, or everything after
/// a failure) read through the size and digest checks (and the tee to the signature
/// thread): a corrupt download is reported as such rather than as the decoding error it
/// caused.
fn unpack_verified(input: &mut dyn Read, p: &Package, i: usize, root: &Root, opts: &extract::Options) -> Result<Unpacked> {
    let unpacked = unpack_stream(input, p, i, root, opts);
    let rest = io::copy(input, &mut io::sink());
    match (unpacked, rest) {
        (Ok(u), Ok(_)) => Ok(u),
        (Ok(_), Err(e)) => Err(e).context("verifying the download"),
        (Err(e), Ok(_)) => Err(e),
        (Err(e), Err(v)) => Err(anyhow::anyhow!("verifying the download: {v} (unpacking had failed: {e:#})")),
    }
}

/// Decompression (by the file name), the tar stream into the root, metadata captured.
fn unpack_stream(input: &mut dyn Read, p: &Package, i: usize, root: &Root, opts: &extract::Options) -> Result<Unpacked> {
    let mut decoded = extract::decompress(&p.filename, input)?;
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
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once(" = ").map(|(k, v)| (k.trim().to_string(), v.to_string())))
        .collect())
}

/// Passes reads through and sends a copy of each chunk to the signature thread.
struct Tee<R> {
    inner: R,
    tx: Option<SyncSender<Vec<u8>>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(tx) = &self.tx {
                if tx.send(buf[..n].to_vec()).is_err() {
                    // The verifier stopped early (it failed): its error is reported.
                    self.tx = None;
                }
            }
        }
        Ok(n)
    }
}

/// The receiving end: a `Read` that ends when the sender is dropped.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
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

    #[test]
    fn the_channel_reader_sees_what_the_tee_read() {
        let (tx, rx) = sync_channel(2);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let copy = data.clone();
        let h = std::thread::spawn(move || {
            let mut got = Vec::new();
            ChannelReader { rx, buf: Vec::new(), pos: 0 }.read_to_end(&mut got).unwrap();
            got
        });
        let mut tee = Tee { inner: &copy[..], tx: Some(tx) };
        io::copy(&mut tee, &mut io::sink()).unwrap();
        drop(tee);
        assert_eq!(h.join().unwrap(), data);
    }
}
