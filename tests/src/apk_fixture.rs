//! Generates an Alpine repository for tests/alpine.rs exactly per the apk v2 formats (as
//! abuild and abuild-sign make them; there is no apk tool on this host to make or judge
//! them): each `.apk` is three gzip members — a signature tar and a control tar, both cut
//! before their end-of-archive blocks (abuild-tar --cut), and the data tar with an
//! `APK-TOOLS.checksum.SHA1` PAX record per file and symlink (abuild-tar --hash); `.PKGINFO`
//! carries `datahash`, the SHA-256 of the data member; the signature is `openssl dgst -sha1
//! -sign` (`.SIGN.RSA.KEY`) or `-sha256` (`.SIGN.RSA256.KEY`) over the control member.
//! `APKINDEX.tar.gz` is a signature member followed by the gzip of a tar with `DESCRIPTION`
//! and `APKINDEX`, whose records name each package's control member by `C:Q1` + base64
//! SHA-1. Keys are made by `openssl genrsa`. Hostile variants sit beside the real files.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use sha1::Digest;

use crate::sh;

pub enum Entry {
    Dir(&'static str, u32),
    File(&'static str, u32, Vec<u8>),
    Symlink(&'static str, &'static str),
}

pub struct Pkg {
    pub name: &'static str,
    pub version: &'static str,
    pub depends: &'static str,
    pub provides: &'static str,
    pub install_if: &'static str,
    pub entries: Vec<Entry>,
    pub scripts: Vec<(&'static str, &'static str)>,
    pub triggers: &'static str,
    /// Sign with SHA-256 (`.SIGN.RSA256.`) instead of SHA-1.
    pub sha256: bool,
    /// Add a member named `../../../tmp/anemos-canary/x` to the data.
    pub dotdot: bool,
}

impl Pkg {
    pub fn new(name: &'static str, version: &'static str) -> Pkg {
        Pkg { name, version, depends: "", provides: "", install_if: "", entries: Vec::new(), scripts: Vec::new(), triggers: "", sha256: false, dotdot: false }
    }
}

pub const KEY: &str = "anemos-test-5f3a1c.rsa.pub";
pub const OTHER: &str = "anemos-other-77e0b2.rsa.pub";

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// A tar of small files, cut before the end-of-archive blocks.
fn cut_tar(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = header(tar::EntryType::Regular, if name.starts_with(".SIGN") || name == ".PKGINFO" { 0o644 } else { 0o755 }, data.len() as u64);
        b.append_data(&mut h, name, &data[..])?;
    }
    let mut v = b.into_inner()?;
    v.truncate(v.len() - 1024);
    Ok(v)
}

fn data_tar(p: &Pkg) -> Result<(Vec<u8>, u64)> {
    let mut b = tar::Builder::new(Vec::new());
    let mut size = 0;
    for e in &p.entries {
        match e {
            Entry::Dir(path, mode) => {
                let mut h = header(tar::EntryType::Directory, *mode, 0);
                b.append_data(&mut h, format!("{path}/"), &[][..])?;
            }
            Entry::File(path, mode, data) => {
                b.append_pax_extensions([("APK-TOOLS.checksum.SHA1", hex::encode(sha1::Sha1::digest(data)).as_bytes())])?;
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                b.append_data(&mut h, path, &data[..])?;
                size += data.len() as u64;
            }
            Entry::Symlink(path, target) => {
                b.append_pax_extensions([("APK-TOOLS.checksum.SHA1", hex::encode(sha1::Sha1::digest(target.as_bytes())).as_bytes())])?;
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    if p.dotdot {
        // The tar crate refuses `..` in append_data's path: write the name bytes directly.
        let mut h = header(tar::EntryType::Regular, 0o644, 5);
        let name = b"../../../tmp/anemos-canary/x";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"evil\n"[..])?;
    }
    Ok((b.into_inner()?, size))
}

/// `openssl dgst -sha1|-sha256 -sign KEY` over `data`.
fn sign(dir: &Path, key: &str, data: &[u8], sha256: bool) -> Result<Vec<u8>> {
    let input = dir.join("to-sign");
    let sig = dir.join("sig");
    std::fs::write(&input, data)?;
    sh(&format!("openssl dgst -{} -sign {} -out {} {}", if sha256 { "sha256" } else { "sha1" }, dir.join(format!("private/{key}")).display(), sig.display(), input.display()))?;
    Ok(std::fs::read(&sig)?)
}

fn sig_member(dir: &Path, key: &str, data: &[u8], sha256: bool) -> Result<Vec<u8>> {
    let name = format!(".SIGN.{}.{key}", if sha256 { "RSA256" } else { "RSA" });
    Ok(gz(&cut_tar(&[(name, sign(dir, key, data, sha256)?)])?))
}

/// Builds one package into `repo`; returns its APKINDEX record.
fn build(dir: &Path, repo: &Path, p: &Pkg) -> Result<String> {
    let (data, isize) = data_tar(p)?;
    let data = gz(&data);
    let datahash = hex::encode(sha2::Sha256::digest(&data));
    let mut info = format!(
        "# Generated by anemos tests\npkgname = {}\npkgver = {}\npkgdesc = {} (anemos test fixture)\nurl = https://example.invalid/\nbuilddate = 1700000000\npackager = Anemos Test <test@example.invalid>\nsize = {isize}\narch = x86_64\norigin = {}\nlicense = MIT\n",
        p.name, p.version, p.name, p.name
    );
    for d in p.depends.split_whitespace() {
        info.push_str(&format!("depend = {d}\n"));
    }
    for d in p.provides.split_whitespace() {
        info.push_str(&format!("provides = {d}\n"));
    }
    if !p.install_if.is_empty() {
        info.push_str(&format!("install_if = {}\n", p.install_if));
    }
    if !p.triggers.is_empty() {
        info.push_str(&format!("triggers = {}\n", p.triggers));
    }
    info.push_str(&format!("datahash = {datahash}\n"));
    let mut control = vec![(".PKGINFO".to_string(), info.into_bytes())];
    control.extend(p.scripts.iter().map(|(n, s)| (format!(".{n}"), s.as_bytes().to_vec())));
    let control = gz(&cut_tar(&control)?);
    let apk = [sig_member(dir, KEY, &control, p.sha256)?, control.clone(), data].concat();
    std::fs::write(repo.join(format!("{}-{}.apk", p.name, p.version)), &apk)?;
    let c = base64_sha1(&control);
    let mut rec = format!(
        "C:Q1{c}\nP:{}\nV:{}\nA:x86_64\nS:{}\nI:{isize}\nT:{} (anemos test fixture)\nU:https://example.invalid/\nL:MIT\no:{}\nm:Anemos Test <test@example.invalid>\nt:1700000000\n",
        p.name,
        p.version,
        apk.len(),
        p.name,
        p.name
    );
    for (k, v) in [('D', p.depends), ('p', p.provides), ('i', p.install_if)] {
        if !v.is_empty() {
            rec.push_str(&format!("{k}:{v}\n"));
        }
    }
    Ok(rec)
}

fn base64_sha1(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(data))
}

/// Writes `APKINDEX.tar.gz` (signed with SHA-256, or SHA-1) and its hostile variants:
/// `.other` (signed by a key not in keys/), `.tampered` (another index's signature),
/// `.unsigned`, `.wronghash` (a SHA-256 signature under a `.SIGN.RSA.` name).
fn index(dir: &Path, repo: &Path, records: &[String], sha256: bool) -> Result<()> {
    let body = |text: &str| -> Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("DESCRIPTION", b"anemos test repository".to_vec()), ("APKINDEX", text.as_bytes().to_vec())] {
            let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
            b.append_data(&mut h, name, &data[..])?;
        }
        Ok(gz(&b.into_inner()?))
    };
    let text = records.join("\n");
    let idx = body(&text)?;
    let write = |suffix: &str, data: Vec<u8>| std::fs::write(repo.join(format!("APKINDEX.tar.gz{suffix}")), data);
    write("", [sig_member(dir, KEY, &idx, sha256)?, idx.clone()].concat())?;
    write(".other", [sig_member(dir, OTHER, &idx, sha256)?, idx.clone()].concat())?;
    let other = body(&format!("{text}\n"))?;
    write(".tampered", [sig_member(dir, KEY, &other, sha256)?, idx.clone()].concat())?;
    write(".unsigned", idx.clone())?;
    let sig = sign(dir, KEY, &idx, true)?;
    write(".wronghash", [gz(&cut_tar(&[(format!(".SIGN.RSA.{KEY}"), sig)])?), idx].concat())?;
    Ok(())
}

/// Generates keys and repositories under `out`: `keys/` (trusted public key),
/// `private/` (both private keys), `repo/main/x86_64/` (SHA-256 signed index) and
/// `repo/community/x86_64/` (SHA-1 signed index).
pub fn generate(out: &Path, main: &[Pkg], community: &[Pkg]) -> Result<()> {
    let _ = std::fs::remove_dir_all(out);
    for d in ["keys", "private", "repo/main/x86_64", "repo/community/x86_64"] {
        std::fs::create_dir_all(out.join(d)).with_context(|| format!("creating {d}"))?;
    }
    for k in [KEY, OTHER] {
        let private = out.join(format!("private/{k}"));
        sh(&format!("openssl genrsa -out {} 2048 2>/dev/null", private.display()))?;
        let public = if k == KEY { out.join(format!("keys/{k}")) } else { out.join(format!("private/{k}.pub")) };
        sh(&format!("openssl rsa -in {} -pubout -out {} 2>/dev/null", private.display(), public.display()))?;
    }
    for (name, pkgs, sha256) in [("main", main, true), ("community", community, false)] {
        let repo = out.join(format!("repo/{name}/x86_64"));
        let records = pkgs.iter().map(|p| build(out, &repo, p)).collect::<Result<Vec<_>>>()?;
        index(out, &repo, &records, sha256)?;
    }
    Ok(())
}
