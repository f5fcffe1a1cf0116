//! Reading the apk v2 formats, streaming (apk-tools `apk_sign_ctx`, abuild): a package is
//! concatenated gzip members — the signature (a tar of `.SIGN.*` files without the end-of-
//! archive blocks), the control segment (likewise: `.PKGINFO` and the scripts), the data
//! (a complete tar); `APKINDEX.tar.gz` is a signature member followed by the index tar. The
//! signature covers the raw gzip bytes of the control segment (of everything after the
//! signature, for an index); `.PKGINFO`'s `datahash` is the SHA-256 of the data member's raw
//! bytes; an index's `C:` names the SHA-1 of the control member. So each member is decoded
//! alone over a `BufRead` that hashes exactly the compressed bytes it consumes.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};

use anyhow::{bail, Context, Result};
use flate2::bufread::GzDecoder;
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

use super::sign::Digests;

/// A `BufRead` that hashes the bytes its consumers consume.
pub struct Tap<R> {
    inner: R,
    sha1: Sha1,
    sha256: Sha256,
    pub count: u64,
}

impl<R: BufRead> Tap<R> {
    pub fn new(inner: R) -> Tap<R> {
        Tap { inner, sha1: Sha1::new(), sha256: Sha256::new(), count: 0 }
    }

    /// The digests of what was consumed since the last call.
    pub fn digests(&mut self) -> Digests {
        Digests { sha1: std::mem::take(&mut self.sha1).finalize().into(), sha256: std::mem::take(&mut self.sha256).finalize().into() }
    }

    pub fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.inner.fill_buf()?.is_empty())
    }
}

impl<R: BufRead> Read for Tap<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Tap<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            let n = amt.min(buf.len());
            self.sha1.update(&buf[..n]);
            self.sha256.update(&buf[..n]);
        }
        self.count += amt as u64;
        self.inner.consume(amt);
    }
}

/// The files of a small tar (signature or control segment), by name without `./`.
pub type Members = BTreeMap<String, (u32, Vec<u8>)>;

/// Decodes one gzip member of at most `limit` decompressed bytes and reads it as a tar
/// (complete or cut); returns its files and the digests of the member's raw bytes.
pub fn read_member<R: BufRead>(tap: &mut Tap<R>, limit: u64, what: &str) -> Result<(Members, Digests)> {
    let mut gz = GzDecoder::new(&mut *tap);
    let mut raw = Vec::new();
    (&mut gz).take(limit + 1).read_to_end(&mut raw).with_context(|| format!("decompressing the {what}"))?;
    if raw.len() as u64 > limit {
        bail!("the {what} is larger than {limit} bytes");
    }
    drop(gz);
    let mut files = Members::new();
    let mut archive = tar::Archive::new(&raw[..]);
    for entry in archive.entries().with_context(|| format!("reading the {what}"))? {
        let mut entry = entry.with_context(|| format!("reading the {what}"))?;
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).trim_start_matches("./").to_string();
        if !entry.header().entry_type().is_file() || name.contains('/') || name.is_empty() {
            bail!("unexpected member {name:?} in the {what}");
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        files.insert(name, (mode, data));
    }
    Ok((files, tap.digests()))
}

/// Signatures (`(member name, bytes)`) among the files of a segment.
pub fn signatures(m: &Members) -> Vec<(String, Vec<u8>)> {
    m.iter().filter(|(n, _)| n.starts_with(".SIGN.")).map(|(n, (_, d))| (n.clone(), d.clone())).collect()
}

/// A signed `APKINDEX.tar.gz` in memory: its signatures and the digests of the signed rest;
/// the rest is decompressed only by [`SignedIndex::contents`], after verification.
pub struct SignedIndex<'a> {
    pub signatures: Vec<(String, Vec<u8>)>,
    pub digests: Digests,
    rest: &'a [u8],
}

/// The largest `APKINDEX` text accepted (Alpine's community index is about 20 MiB).
const INDEX_TEXT_LIMIT: u64 = 256 << 20;

pub fn read_index(data: &[u8]) -> Result<SignedIndex<'_>> {
    let mut tap = Tap::new(data);
    let (first, _) = read_member(&mut tap, 1 << 20, "index's first gzip member")?;
    let signatures = signatures(&first);
    let rest = if signatures.is_empty() { data } else { &data[tap.count as usize..] };
    Ok(SignedIndex { signatures, digests: Digests::of(rest), rest })
}

impl SignedIndex<'_> {
    /// The `APKINDEX` text and the `DESCRIPTION`: call once the signature is verified.
    pub fn contents(&self) -> Result<(String, String)> {
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(self.rest));
        let (mut text, mut description) = (None, String::new());
        for entry in archive.entries().context("reading the index tar")? {
            let entry = entry.context("reading the index tar")?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).trim_start_matches("./").to_string();
            let mut s = String::new();
            let mut bounded = crate::packages::extract::Capped::new(entry, INDEX_TEXT_LIMIT, name.clone());
            match name.as_str() {
                "APKINDEX" => {
                    bounded.read_to_string(&mut s).context("reading APKINDEX (UTF-8 text)")?;
                    text = Some(s);
                }
                "DESCRIPTION" => {
                    bounded.read_to_string(&mut s).context("reading DESCRIPTION (UTF-8 text)")?;
                    description = s.trim().to_string();
                }
                _ => {}
            }
        }
        Ok((text.context("the archive has no APKINDEX member")?, description))
    }
}

/// The signature and control segments of a package.
pub struct Control {
    pub signatures: Vec<(String, Vec<u8>)>,
    /// Digests of the control member's raw bytes.
    pub digests: Digests,
    pub files: Members,
    /// `.PKGINFO` as `key = value` pairs.
    pub pkginfo: Vec<(String, String)>,
}

impl Control {
    pub fn info(&self, key: &str) -> Option<&str> {
        self.pkginfo.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn script(&self, name: &str) -> Option<&[u8]> {
        self.files.get(&format!(".{name}")).map(|(_, d)| d.as_slice())
    }
}

/// Reads a package: `check` sees the signature and control segments before any data is
/// read (to verify them), `data` gets the decompressed data tar; the data member's SHA-256
/// is then compared with `.PKGINFO`'s `datahash`.
pub fn read_apk<R: Read, T>(input: R, check: impl FnOnce(&Control) -> Result<()>, data: impl FnOnce(&Control, &mut dyn Read) -> Result<T>) -> Result<(Control, T)> {
    let mut tap = Tap::new(io::BufReader::with_capacity(64 << 10, input));
    let (first, d1) = read_member(&mut tap, 16 << 20, "first gzip member")?;
    let (signatures, files, digests) = if first.contains_key(".PKGINFO") {
        (Vec::new(), first, d1)
    } else {
        let sigs = signatures(&first);
        let (files, d) = read_member(&mut tap, crate::packages::extract::METADATA_LIMIT, "control segment")?;
        (sigs, files, d)
    };
    let pkginfo = files.get(".PKGINFO").map(|(_, d)| parse_pkginfo(d)).context("the control segment has no .PKGINFO")??;
    let control = Control { signatures, digests, files, pkginfo };
    check(&control)?;
    let want = control.info("datahash").context(".PKGINFO has no datahash")?.to_ascii_lowercase();
    let mut gz = GzDecoder::new(&mut tap);
    let out = data(&control, &mut gz).context("unpacking the data segment")?;
    io::copy(&mut gz, &mut io::sink()).context("reading the end of the data segment")?;
    drop(gz);
    let got = hex::encode(tap.digests().sha256);
    if got != want {
        bail!("the data segment's SHA-256 is {got}, .PKGINFO's datahash says {want}");
    }
    if !tap.at_end()? {
        bail!("trailing bytes after the data segment");
    }
    Ok((control, out))
}

/// `.PKGINFO`: `key = value` lines and `#` comments.
pub fn parse_pkginfo(data: &[u8]) -> Result<Vec<(String, String)>> {
    let text = std::str::from_utf8(data).context(".PKGINFO is not UTF-8")?;
    Ok(text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once(" = ").map(|(k, v)| (k.trim().to_string(), v.to_string()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
    }

    fn tar(files: &[(&str, &[u8])], cut: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (n, d) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, n, *d).unwrap();
        }
        let mut v = b.into_inner().unwrap();
        if cut {
            v.truncate(v.len() - 1024);
        }
        v
    }

    #[test]
    fn segments_are_hashed_member_by_member() {
        let data = gz(&tar(&[("usr/share/x", b"x\n")], false));
        let datahash = hex::encode(Sha256::digest(&data));
        let control = gz(&tar(&[(".PKGINFO", format!("pkgname = x\npkgver = 1-r0\ndatahash = {datahash}\n").as_bytes())], true));
        let sig = gz(&tar(&[(".SIGN.RSA.k.rsa.pub", b"sig")], true));
        let apk = [sig.clone(), control.clone(), data.clone()].concat();
        let (c, names) = read_apk(
            &apk[..],
            |_| Ok(()),
            |_, r| {
                let mut a = tar::Archive::new(r);
                Ok(a.entries()?.map(|e| e.unwrap().path().unwrap().display().to_string()).collect::<Vec<_>>())
            },
        )
        .unwrap();
        assert_eq!(names, ["usr/share/x"]);
        assert_eq!(c.signatures[0].0, ".SIGN.RSA.k.rsa.pub");
        assert_eq!(c.digests.sha1, <[u8; 20]>::from(Sha1::digest(&control)));
        assert_eq!(c.info("pkgname"), Some("x"));
        // A flipped byte in the data fails the datahash (or the gzip CRC) at the end.
        let mut bad = apk.clone();
        let at = bad.len() - data.len() / 2;
        bad[at] ^= 1;
        assert!(read_apk(&bad[..], |_| Ok(()), |_, r| Ok(io::copy(r, &mut io::sink())?)).is_err());
        // An unsigned package: the first member is the control segment.
        let (c, _) = read_apk(&[control.clone(), data.clone()].concat()[..], |_| Ok(()), |_, r| Ok(io::copy(r, &mut io::sink())?)).unwrap();
        assert!(c.signatures.is_empty());
        let idx = [sig, gz(&tar(&[("DESCRIPTION", b"v3.20"), ("APKINDEX", b"P:x\nV:1-r0\n\n")], false))].concat();
        let i = read_index(&idx).unwrap();
        let (text, description) = i.contents().unwrap();
        assert_eq!((text.as_str(), description.as_str(), i.signatures.len()), ("P:x\nV:1-r0\n\n", "v3.20", 1));
    }
}
