//! Alpine's signatures (abuild-sign, apk-tools `apk_sign_ctx`): RSA PKCS#1 v1.5 over the raw
//! bytes that follow the signature's gzip member — SHA-1 for a member named
//! `.SIGN.RSA.<key>`, SHA-256 for `.SIGN.RSA256.<key>`, where `<key>` is the file name of the
//! public key in `/etc/apk/keys/` (PEM). A signature by an unknown key is skipped; one by a
//! known key that does not verify is an error; at least one good signature is required.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};

/// The trusted keys, by file name.
#[derive(Debug, Clone)]
pub struct Keys {
    pub keys: Vec<(String, RsaPublicKey)>,
    /// The key files as read, copied to the target's `/etc/apk/keys/`.
    pub files: Vec<(String, Vec<u8>)>,
    pub origin: String,
}

/// The digests of the signed bytes.
pub struct Digests {
    pub sha1: [u8; 20],
    pub sha256: [u8; 32],
}

impl Digests {
    pub fn of(data: &[u8]) -> Digests {
        Digests {
            sha1: sha1::Digest::finalize(<sha1::Sha1 as sha1::Digest>::new_with_prefix(data)).into(),
            sha256: sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(data)).into(),
        }
    }
}

impl Keys {
    /// Every file of `dir` (apk reads `/etc/apk/keys/*`).
    pub fn load_dir(dir: &Path) -> Result<Keys> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading the key directory {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut files = Vec::new();
        for n in names {
            let p = dir.join(&n);
            files.push((n, std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?));
        }
        Keys::from_files(files, &dir.display().to_string())
    }

    pub fn from_files(files: Vec<(String, Vec<u8>)>, origin: &str) -> Result<Keys> {
        let mut keys = Vec::new();
        for (name, pem) in &files {
            let text = std::str::from_utf8(pem).with_context(|| format!("{origin}/{name} is not a PEM key"))?;
            let key = RsaPublicKey::from_public_key_pem(text).or_else(|_| RsaPublicKey::from_pkcs1_pem(text)).with_context(|| format!("{origin}/{name} is not an RSA public key in PEM"))?;
            keys.push((name.clone(), key));
        }
        if keys.is_empty() {
            bail!("no RSA public key in {origin}");
        }
        Ok(Keys { keys, files, origin: origin.to_string() })
    }

    /// Checks the signatures (`(member name, bytes)`) over data with digests `d`; returns
    /// the name of the key that verified, or an error saying why none did.
    pub fn verify(&self, sigs: &[(String, Vec<u8>)], d: &Digests) -> Result<String> {
        match self.check(sigs, d)? {
            Ok(k) => Ok(k),
            Err(why) => bail!("{why}"),
        }
    }

    /// Like [`Keys::verify`], telling "no signature by a known key" (`Ok(Err(why))`) apart
    /// from a bad one (`Err`).
    pub fn check(&self, sigs: &[(String, Vec<u8>)], d: &Digests) -> Result<Result<String, String>> {
        let mut seen = Vec::new();
        let mut good = None;
        for (member, sig) in sigs {
            let (sha256, keyname) = if let Some(k) = member.strip_prefix(".SIGN.RSA256.") {
                (true, k)
            } else if let Some(k) = member.strip_prefix(".SIGN.RSA.") {
                (false, k)
            } else {
                continue;
            };
            seen.push(keyname.to_string());
            let Some((_, key)) = self.keys.iter().find(|(n, _)| n == keyname) else { continue };
            let r = if sha256 { key.verify(Pkcs1v15Sign::new::<sha2::Sha256>(), &d.sha256, sig) } else { key.verify(Pkcs1v15Sign::new::<sha1::Sha1>(), &d.sha1, sig) };
            r.map_err(|e| anyhow::anyhow!("BAD signature {member} by the key {keyname}: {e}"))?;
            good.get_or_insert_with(|| keyname.to_string());
        }
        Ok(match good {
            Some(k) => Ok(k),
            None if seen.is_empty() => Err("UNTRUSTED: not signed (no .SIGN.RSA. or .SIGN.RSA256. member)".to_string()),
            None => Err(format!("UNTRUSTED: signed by {}, none of which is in {}", seen.join(", "), self.origin)),
        })
    }
}
