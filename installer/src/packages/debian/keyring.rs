//! OpenPGP keyrings and archive signatures (`InRelease`, `Release.gpg`).
//!
//! rpgp checks the mathematics of a signature only. Whether a key may vouch for an archive
//! is decided here, as gpgv would (RFC 9580 §5.2.3, §10.1): the key (or signing subkey) has a
//! valid self-signature / binding signature (with the subkey's back-signature), is not
//! revoked, has not expired at the time of checking, and is flagged for signing; the
//! signature itself has not expired. A signature from a key that is not in the keyring is
//! ignored (archives are signed by several keys); a signature from a known key that fails any
//! check is an error; at least one good signature is required.

use std::io::BufReader;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, PublicOrSecret, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::{KeyDetails, Tag, VerifyingKey};

/// A set of trusted public keys.
pub struct Keyring {
    pub keys: Vec<SignedPublicKey>,
    /// Where it came from, for messages.
    pub origin: String,
}

impl Keyring {
    /// Loads a keyring file, binary (`.gpg`, as `debian-archive-keyring` installs) or
    /// ASCII-armored (`.asc`).
    pub fn load(path: &Path) -> Result<Keyring> {
        let data = std::fs::read(path).with_context(|| format!("reading the keyring {}", path.display()))?;
        Keyring::from_bytes(&data, &path.display().to_string())
    }

    pub fn from_bytes(data: &[u8], origin: &str) -> Result<Keyring> {
        let (iter, _) = PublicOrSecret::from_reader_many(BufReader::new(data))
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("reading the keyring {origin}"))?;
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
        let (msg, _) = CleartextSignedMessage::from_string(text).map_err(|e| anyhow!("not a clearsigned OpenPGP message: {e}"))?;
        let signed = msg.signed_text();
        self.verify_all(msg.signatures(), signed.as_bytes(), now)?;
        Ok(signed.replace("\r\n", "\n"))
    }

    /// Verifies a detached signature (`Release.gpg`, armored or binary) over `data`.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8], now: u64) -> Result<()> {
        let sigs: Vec<Signature> = if signature.starts_with(b"-----BEGIN") {
            let (iter, _) = DetachedSignature::from_armor_many(signature).map_err(|e| anyhow!("reading the signature: {e}"))?;
            iter.map(|s| s.map(|s| s.signature)).collect::<Result<_, _>>().map_err(|e| anyhow!("reading the signature: {e}"))?
        } else {
            DetachedSignature::from_bytes_many(signature)
                .map_err(|e| anyhow!("reading the signature: {e}"))?
                .map(|s| s.map(|s| s.signature))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow!("reading the signature: {e}"))?
        };
        self.verify_all(&sigs, data, now)
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
            bail!(
                "no signature by a key of {} (signed by: {}); is this the right keyring for the mirror?",
                self.origin,
                if unknown.is_empty() { "nobody".into() } else { unknown.join(", ") }
            );
        }
        log::debug!("good signature(s) by {}", good.join(", "));
        Ok(())
    }

    /// `Ok(Some(fingerprint))` for a good signature, `Ok(None)` if no key of ours made it,
    /// an error if one of ours did but the signature or the key is not acceptable.
    fn verify_one(&self, sig: &Signature, data: &[u8], now: u64) -> Result<Option<String>> {
        let fprs: Vec<String> = sig.issuer_fingerprint().iter().map(|f| hex::encode(f.as_bytes())).collect();
        let ids: Vec<String> = sig.issuer_key_id().iter().map(|k| hex::encode(k.as_ref())).collect();
        let matches = |k: &dyn VerifyingKey| {
            fprs.contains(&hex::encode(k.fingerprint().as_bytes())) || ids.contains(&hex::encode(k.legacy_key_id().as_ref()))
        };
        for key in &self.keys {
            let name = hex::encode(key.primary_key.fingerprint().as_bytes());
            if matches(&key.primary_key) {
                check_primary(key, now, true).with_context(|| format!("key {name} of {}", self.origin))?;
                check_signature_time(sig, now)?;
                sig.verify(&key.primary_key, data).map_err(|e| anyhow!("BAD signature by key {name}: {e}"))?;
                return Ok(Some(name));
            }
            for sub in &key.public_subkeys {
                if matches(&sub.key) {
                    let sname = hex::encode(sub.key.fingerprint().as_bytes());
                    check_primary(key, now, false).with_context(|| format!("key {name} of {}", self.origin))?;
                    check_subkey(key, sub, now).with_context(|| format!("subkey {sname} of key {name} ({})", self.origin))?;
                    check_signature_time(sig, now)?;
                    sig.verify(&sub.key, data).map_err(|e| anyhow!("BAD signature by subkey {sname}: {e}"))?;
                    return Ok(Some(sname));
                }
            }
        }
        Ok(None)
    }
}

fn issuer(sig: &Signature) -> String {
    sig.issuer_fingerprint()
        .first()
        .map(|f| hex::encode(f.as_bytes()))
        .or_else(|| sig.issuer_key_id().first().map(|k| hex::encode(k.as_ref())))
        .unwrap_or_else(|| "an unnamed key".into())
}

fn secs(t: Option<pgp::types::Timestamp>) -> u64 {
    t.map(|t| t.as_secs() as u64).unwrap_or(0)
}

fn check_signature_time(sig: &Signature, now: u64) -> Result<()> {
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
    let mut bindings: Vec<&Signature> =
        sub.signatures.iter().filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)).filter(valid).collect();
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
