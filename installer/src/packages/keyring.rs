//! OpenPGP keyrings and signatures: Debian's `InRelease` and `Release.gpg`, Arch's detached
//! package and database `.sig` files.
//!
//! rpgp checks the mathematics of a signature only. Whether a key may vouch for an archive
//! is decided here, as gpgv would (RFC 9580 §5.2.3, §10.1): the key (or signing subkey) has a
//! valid self-signature / binding signature (with the subkey's back-signature), is not
//! revoked, has not expired at the time of checking, and is flagged for signing; the
//! signature itself has not expired. A signature from a key that is not in the keyring is
//! ignored (archives are signed by several keys); a signature from a known key that fails any
//! check is an error; at least one good signature is required.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use pgp::armor::{BlockType, Dearmor};
use pgp::composed::{Deserializable, DetachedSignature, PublicOrSecret, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::{KeyDetails, Tag, VerifyingKey};

mod cleartext;

/// A set of trusted public keys.
pub struct Keyring {
    pub keys: Vec<SignedPublicKey>,
    /// Where it came from, for messages.
    pub origin: String,
}

impl Keyring {
    /// Loads a keyring file, binary (`.gpg`, as `debian-archive-keyring` installs) or
    /// ASCII-armored (`.asc`), or a directory laid out like archlinux-keyring's
    /// `/usr/share/pacman/keyrings` (see [`Keyring::load_dir`]).
    pub fn load(path: &Path) -> Result<Keyring> {
        if path.is_dir() {
            return Keyring::load_dir(path);
        }
        let data = std::fs::read(path).with_context(|| format!("reading the keyring {}", path.display()))?;
        Keyring::from_bytes(&data, &path.display().to_string())
    }

    /// Every key of the `*.gpg` files in `dir`, less those whose fingerprints a `*-revoked`
    /// file lists (pacman-key(8) `--populate` reads the same files). The `*-trusted` lists
    /// name the master keys whose certifications make packager keys valid in pacman's web of
    /// trust; the packagers' keys are in the same `*.gpg` file, which is itself the trust
    /// anchor here, so every key in it that is not revoked is accepted.
    pub fn load_dir(dir: &Path) -> Result<Keyring> {
        let mut names: Vec<_> = std::fs::read_dir(dir).with_context(|| format!("reading the keyring directory {}", dir.display()))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        let mut keys = Vec::new();
        let mut revoked = Vec::new();
        for p in &names {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".gpg") {
                let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                keys.extend(Keyring::from_bytes(&data, &p.display().to_string())?.keys);
            } else if name.ends_with("-revoked") {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                revoked.extend(text.lines().filter_map(|l| l.split(':').next()).map(|f| f.trim().to_ascii_lowercase()).filter(|f| !f.is_empty()));
            }
        }
        keys.retain(|k| !revoked.contains(&hex::encode(k.primary_key.fingerprint().as_bytes())));
        if keys.is_empty() {
            bail!("the keyring directory {} holds no usable OpenPGP key (*.gpg)", dir.display());
        }
        Ok(Keyring { keys, origin: dir.display().to_string() })
    }

    /// Keys and signatures are always parsed from plain binary `&[u8]`: armor is taken off
    /// first ([`dearmor`]), and a clearsigned message is split here ([`cleartext`]), because
    /// rpgp's parser is generic over its reader and each reader type is another copy of it in
    /// the static init (docs/benchmarks.md, "initramfs").
    pub fn from_bytes(data: &[u8], origin: &str) -> Result<Keyring> {
        let binary = if is_armored(data) {
            dearmor(data, |t| matches!(t, BlockType::PublicKey | BlockType::PrivateKey | BlockType::File)).with_context(|| format!("reading the keyring {origin}"))?.0
        } else {
            data.to_vec()
        };
        let iter = PublicOrSecret::from_bytes_many(&binary[..]).map_err(|e| anyhow!("{e}")).with_context(|| format!("reading the keyring {origin}"))?;
        let mut keys = Vec::new();
        for k in iter {
            match k {
                Ok(PublicOrSecret::Public(k)) => keys.push(k),
                Ok(PublicOrSecret::Secret(k)) => keys.push(k.to_public_key()),
                Err(e) => log::warn!("keyring {origin}: skipping an unreadable key: {e}"),
            }
        }
        if keys.is_empty() {
            bail!("the keyring {origin} holds no OpenPGP public key");
        }
        Ok(Keyring { keys, origin: origin.to_string() })
    }

    /// Verifies a clearsigned `InRelease` and returns the signed text (LF line ends); text
    /// outside the signed part is never returned.
    pub fn verify_clearsigned(&self, text: &str, now: u64) -> Result<String> {
        let (signed, armored) = cleartext::split(text)?;
        let sigs = parse_signatures(armored.as_bytes(), true).context("reading the signature of the clearsigned message")?;
        self.verify_all(&sigs, signed.replace('\n', "\r\n").as_bytes(), now)?;
        Ok(signed)
    }

    /// Verifies a detached signature (`Release.gpg`, armored or binary) over `data`.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8], now: u64) -> Result<()> {
        self.verify_all(&parse_signatures(signature, false)?, data, now)
    }

    /// Checks everything about a detached signature that does not need the signed data: it
    /// parses, one of its signatures is by a key of ours, and that key (or subkey) and the
    /// signature are valid at `now`. The data is verified later, as it streams, with
    /// [`Checked::verify`]. Arch packages are checked this way before any disk is touched.
    pub fn check_detached(&self, signature: &[u8], now: u64) -> Result<Checked<'_>> {
        let sigs = parse_signatures(signature, false)?;
        let mut unknown = Vec::new();
        for sig in sigs {
            match self.signer(&sig, now)? {
                Some((key, name)) => return Ok(Checked { sig, key, name }),
                None => unknown.push(issuer(&sig)),
            }
        }
        bail!("no signature by a key of {} (signed by: {})", self.origin, if unknown.is_empty() { "nobody".into() } else { unknown.join(", ") })
    }

    fn verify_all(&self, sigs: &[Signature], data: &[u8], now: u64) -> Result<()> {
        let mut good = Vec::new();
        let mut unknown = Vec::new();
        for sig in sigs {
            match self.verify_one(sig, data, now)? {
                Some(fpr) => good.push(fpr),
                None => unknown.push(issuer(sig)),
            }
        }
        if good.is_empty() {
            bail!("no signature by a key of {} (signed by: {}); is this the right keyring for the mirror?", self.origin, if unknown.is_empty() { "nobody".into() } else { unknown.join(", ") });
        }
        log::debug!("good signature(s) by {}", good.join(", "));
        Ok(())
    }

    /// `Ok(Some(fingerprint))` for a good signature, `Ok(None)` if no key of ours made it,
    /// an error if one of ours did but the signature or the key is not acceptable.
    fn verify_one(&self, sig: &Signature, data: &[u8], now: u64) -> Result<Option<String>> {
        let Some((key, name)) = self.signer(sig, now)? else { return Ok(None) };
        let r = match key {
            SignerKey::Primary(k) => sig.verify(k, data),
            SignerKey::Sub(k) => sig.verify(k, data),
        };
        r.map_err(|e| anyhow!("BAD signature by key {name}: {e}"))?;
        Ok(Some(name))
    }

    /// The key of ours that made `sig`, after checking that it and the signature are valid
    /// at `now`; `Ok(None)` if none of ours made it.
    fn signer(&self, sig: &Signature, now: u64) -> Result<Option<(SignerKey<'_>, String)>> {
        let fprs: Vec<String> = sig.issuer_fingerprint().iter().map(|f| hex::encode(f.as_bytes())).collect();
        let ids: Vec<String> = sig.issuer_key_id().iter().map(|k| hex::encode(k.as_ref())).collect();
        let matches = |k: &dyn VerifyingKey| fprs.contains(&hex::encode(k.fingerprint().as_bytes())) || ids.contains(&hex::encode(k.legacy_key_id().as_ref()));
        for key in &self.keys {
            let name = hex::encode(key.primary_key.fingerprint().as_bytes());
            if matches(&key.primary_key) {
                check_primary(key, now, true).with_context(|| format!("key {name} of {}", self.origin))?;
                check_signature_time(sig, now)?;
                return Ok(Some((SignerKey::Primary(&key.primary_key), name)));
            }
            for sub in &key.public_subkeys {
                if matches(&sub.key) {
                    let sname = hex::encode(sub.key.fingerprint().as_bytes());
                    check_primary(key, now, false).with_context(|| format!("key {name} of {}", self.origin))?;
                    check_subkey(key, sub, now).with_context(|| format!("subkey {sname} of key {name} ({})", self.origin))?;
                    check_signature_time(sig, now)?;
                    return Ok(Some((SignerKey::Sub(&sub.key), sname)));
                }
            }
        }
        Ok(None)
    }
}

/// The key that made a signature: a primary key or a subkey.
#[derive(Clone, Copy)]
enum SignerKey<'k> {
    Primary(&'k pgp::packet::PublicKey),
    Sub(&'k pgp::packet::PublicSubkey),
}

/// A detached signature whose key has been checked; only the data is left to verify.
pub struct Checked<'k> {
    sig: Signature,
    key: SignerKey<'k>,
    /// The fingerprint of the (sub)key that signed.
    pub name: String,
}

impl Checked<'_> {
    /// Verifies the signature over all of `data` (read to its end).
    pub fn verify(&self, data: impl Read) -> Result<()> {
        let r = match self.key {
            SignerKey::Primary(k) => self.sig.verify(k, data),
            SignerKey::Sub(k) => self.sig.verify(k, data),
        };
        r.map_err(|e| anyhow!("BAD signature by key {}: {e}", self.name))
    }
}

/// The signatures of a signature block, armored or binary; `alone` when nothing but white
/// space may follow the armor (the end of a clearsigned message).
fn parse_signatures(signature: &[u8], alone: bool) -> Result<Vec<Signature>> {
    let binary = if is_armored(signature) {
        let (binary, rest) = dearmor(signature, |t| matches!(t, BlockType::Signature)).context("reading the signature")?;
        if alone && !rest.iter().all(u8::is_ascii_whitespace) {
            bail!("text follows the signature's armor; it is not signed, and refused");
        }
        binary
    } else {
        signature.to_vec()
    };
    let sigs: Vec<Signature> = DetachedSignature::from_bytes_many(&binary[..])
        .map_err(|e| anyhow!("reading the signature: {e}"))?
        .map(|s| s.map(|s| s.signature))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("reading the signature: {e}"))?;
    if sigs.is_empty() {
        bail!("the signature file holds no signature");
    }
    Ok(sigs)
}

/// Binary OpenPGP data starts with a packet tag, whose high bit is always set (RFC 9580
/// §4.2); anything else is read as armor, which may have text before its header line.
fn is_armored(data: &[u8]) -> bool {
    data.first().is_none_or(|b| b & 0x80 == 0)
}

/// The binary packets of the first ASCII-armored block in `data`, which must be of a type
/// `want` accepts, and what follows its end line.
fn dearmor(data: &[u8], want: fn(&BlockType) -> bool) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut armor = Dearmor::new(data);
    armor.read_header().map_err(|e| anyhow!("bad OpenPGP armor: {e}"))?;
    match &armor.typ {
        Some(t) if want(t) => {}
        t => bail!("unexpected OpenPGP armor block {}", t.as_ref().map(|t| t.to_string()).unwrap_or_default()),
    }
    let mut binary = Vec::new();
    armor.read_to_end(&mut binary).map_err(|e| anyhow!("bad OpenPGP armor: {e}"))?;
    let (_, _, _, mut rest) = armor.into_parts();
    let mut after = Vec::new();
    rest.read_to_end(&mut after)?;
    Ok((binary, after))
}

fn issuer(sig: &Signature) -> String {
    sig.issuer_fingerprint().first().map(|f| hex::encode(f.as_bytes())).or_else(|| sig.issuer_key_id().first().map(|k| hex::encode(k.as_ref()))).unwrap_or_else(|| "an unnamed key".into())
}

fn secs(t: Option<pgp::types::Timestamp>) -> u64 {
    t.map(|t| t.as_secs() as u64).unwrap_or(0)
}

/// The signature's own validity: a digest that is not broken, and not expired at `now`.
fn check_signature_time(sig: &Signature, now: u64) -> Result<()> {
    use pgp::crypto::hash::HashAlgorithm;
    match sig.hash_alg() {
        Some(h @ (HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160 | HashAlgorithm::None)) => {
            bail!("the signature uses the {h} digest, which is broken (collisions can be made): refused; the archive must be signed with SHA-256 or better")
        }
        None => bail!("the signature names no digest algorithm"),
        Some(_) => {}
    }
    let created = secs(sig.created());
    if let Some(exp) = sig.signature_expiration_time().map(|d| d.as_secs() as u64).filter(|&d| d != 0) {
        if created + exp <= now {
            bail!("the signature expired (made {created}, valid for {exp} s)");
        }
    }
    Ok(())
}

/// The primary key: a valid self-signature, not revoked, not expired; if `signs`, it must be
/// allowed to sign data itself.
fn check_primary(key: &SignedPublicKey, now: u64, signs: bool) -> Result<()> {
    let pk = &key.primary_key;
    if key.details.revocation_signatures.iter().any(|s| s.verify_key(pk).is_ok()) {
        bail!("the key is revoked");
    }
    let mut selfsigs: Vec<&Signature> = key
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter().filter(move |s| s.verify_certification(pk, Tag::UserId, &u.id).is_ok()))
        .filter(|s| s.typ() != Some(pgp::packet::SignatureType::CertRevocation))
        .chain(key.details.direct_signatures.iter().filter(|s| s.verify_key(pk).is_ok()))
        .collect();
    selfsigs.sort_by_key(|s| secs(s.created()));
    let latest = selfsigs.last().context("the key has no valid self-signature")?;
    check_expiry(secs(Some(pk.created_at())), latest, now)?;
    if signs && has_flags(latest) && !latest.key_flags().sign() {
        bail!("the key is not allowed to sign (key flags)");
    }
    Ok(())
}

/// A signing subkey: a valid binding with a valid back-signature, not revoked, not expired,
/// flagged for signing.
fn check_subkey(key: &SignedPublicKey, sub: &pgp::composed::SignedPublicSubKey, now: u64) -> Result<()> {
    use pgp::packet::SignatureType;
    let pk = &key.primary_key;
    let valid = |s: &&Signature| s.verify_subkey_binding(pk, &sub.key).is_ok();
    if sub.signatures.iter().filter(|s| s.typ() == Some(SignatureType::SubkeyRevocation)).any(|s| valid(&s)) {
        bail!("the subkey is revoked");
    }
    let mut bindings: Vec<&Signature> = sub.signatures.iter().filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)).filter(valid).collect();
    bindings.sort_by_key(|s| secs(s.created()));
    let latest = bindings.last().context("the subkey has no valid binding signature")?;
    if !latest.key_flags().sign() {
        bail!("the subkey is not allowed to sign (key flags)");
    }
    let back = latest.embedded_signature().context("the signing subkey has no back-signature")?;
    back.verify_primary_key_binding(&sub.key, pk).map_err(|e| anyhow!("the subkey's back-signature is invalid: {e}"))?;
    check_expiry(secs(Some(sub.key.created_at())), latest, now)
}

fn has_flags(sig: &Signature) -> bool {
    sig.key_flags() != pgp::packet::KeyFlags::default()
}

fn check_expiry(created: u64, sig: &Signature, now: u64) -> Result<()> {
    if let Some(exp) = sig.key_expiration_time().map(|d| d.as_secs() as u64).filter(|&d| d != 0) {
        let end = created + exp;
        if end <= now {
            bail!("the key expired at {} (unix time; now {now})", end);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
