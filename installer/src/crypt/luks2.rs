//! A LUKS2 header, written in-process: the layout cryptsetup makes by default for
//! `luksFormat --type luks2 --cipher aes-xts-plain64 --key-size 512` (two 16 KiB metadata
//! areas, one keyslot, the data from 16 MiB), as the LUKS2 on-disk format specification
//! describes it. `cryptsetup luksDump` and `cryptsetup open` read what this writes (the
//! tests check both on the host).
//!
//! The passphrase is stretched with Argon2id into the keyslot's key; the volume key is
//! split with LUKS's anti-forensic splitter (4000 stripes, SHA-256) and stored encrypted
//! with AES-256-XTS; a PBKDF2-SHA256 digest of the volume key lets an opener know it found
//! the right one. Nothing here logs or formats a key.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes256;
use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The volume key: 512 bits, two AES-256 keys for XTS.
pub const KEY_BYTES: usize = 64;
/// One metadata area (binary header and JSON), written twice.
const HDR_SIZE: u64 = 16 << 10;
const BIN_SIZE: usize = 4096;
/// Where the keyslots area starts (after both metadata areas) and where the data starts.
const KEYSLOTS_OFFSET: u64 = 2 * HDR_SIZE;
pub const DATA_OFFSET: u64 = 16 << 20;
const STRIPES: usize = 4000;
const SECTOR: usize = 512;
/// The Argon2id cost: 64 MiB and 4 passes, one lane — within what a 256 MiB machine has
/// at boot, and about what cryptsetup picks for a small machine.
pub const ARGON2_MEMORY_KIB: u32 = 64 << 10;
pub const ARGON2_TIME: u32 = 4;
pub const ARGON2_LANES: u32 = 1;
/// PBKDF2 iterations of the volume key's digest (the key is 512 random bits: the count
/// only has to meet cryptsetup's floor).
const DIGEST_ITERATIONS: u32 = 1000;
/// The cipher of the keyslot area and of the data.
pub const CIPHER: &str = "aes-xts-plain64";

/// What a header is made of; everything random comes in from the caller, so a test can
/// fix it.
pub struct Params<'a> {
    pub passphrase: &'a [u8],
    pub volume_key: &'a [u8; KEY_BYTES],
    pub uuid: &'a str,
    pub label: &'a str,
    /// Salts: two headers, the keyslot's KDF, the digest.
    pub salts: [[u8; 64]; 2],
    pub kdf_salt: [u8; 32],
    pub digest_salt: [u8; 32],
    /// The anti-forensic stripes' random material (`(STRIPES - 1) × KEY_BYTES` bytes).
    pub af_random: Vec<u8>,
}

impl<'a> Params<'a> {
    /// Parameters with fresh random salts and stripes from the kernel's generator.
    pub fn random(passphrase: &'a [u8], volume_key: &'a [u8; KEY_BYTES], uuid: &'a str, label: &'a str) -> Result<Params<'a>> {
        let mut p = Params { passphrase, volume_key, uuid, label, salts: [[0; 64]; 2], kdf_salt: [0; 32], digest_salt: [0; 32], af_random: vec![0; (STRIPES - 1) * KEY_BYTES] };
        let [s0, s1] = &mut p.salts;
        for buf in [&mut s0[..], &mut s1[..], &mut p.kdf_salt[..], &mut p.digest_salt[..], &mut p.af_random[..]] {
            random(buf)?;
        }
        Ok(p)
    }
}

/// Fills `buf` from the kernel's random generator.
pub fn random(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        done += rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty()).context("reading random bytes for a LUKS2 header")?;
    }
    Ok(())
}

/// The first `DATA_OFFSET` bytes of a LUKS2 device: both metadata areas, the keyslot, and
/// zeros up to the data.
pub fn header(p: &Params<'_>) -> Result<Vec<u8>> {
    ensure!(p.uuid.len() < 40 && p.label.len() < 48, "LUKS2 uuid or label too long");
    ensure!(p.af_random.len() == (STRIPES - 1) * KEY_BYTES, "LUKS2: wrong amount of anti-forensic random material");
    let area = keyslot_area_size();
    let mut out = vec![0u8; DATA_OFFSET as usize];
    let mut slot_key = [0u8; KEY_BYTES];
    argon2id(p.passphrase, &p.kdf_salt, &mut slot_key)?;
    let mut material = af_split(p.volume_key, &p.af_random);
    material.resize(area as usize, 0);
    xts_encrypt(&slot_key, &mut material);
    slot_key.fill(0);
    out[KEYSLOTS_OFFSET as usize..][..material.len()].copy_from_slice(&material);
    let json = metadata(p, area)?;
    for (i, (magic, offset)) in [(b"LUKS\xba\xbe", 0u64), (b"SKUL\xba\xbe", HDR_SIZE)].into_iter().enumerate() {
        let hdr = &mut out[offset as usize..][..HDR_SIZE as usize];
        binary_header(hdr, magic, offset, p, &p.salts[i]);
        hdr[BIN_SIZE..][..json.len()].copy_from_slice(&json);
        let csum = Sha256::digest(&*hdr);
        hdr[448..480].copy_from_slice(&csum);
    }
    Ok(out)
}

/// The keyslot area's size: the split key, whole 4 KiB blocks.
fn keyslot_area_size() -> u64 {
    ((STRIPES * KEY_BYTES) as u64).div_ceil(4096) * 4096
}

/// The binary header (big-endian fields), its checksum left zero.
fn binary_header(hdr: &mut [u8], magic: &[u8; 6], offset: u64, p: &Params<'_>, salt: &[u8; 64]) {
    hdr[0..6].copy_from_slice(magic);
    hdr[6..8].copy_from_slice(&2u16.to_be_bytes());
    hdr[8..16].copy_from_slice(&HDR_SIZE.to_be_bytes());
    hdr[16..24].copy_from_slice(&1u64.to_be_bytes());
    hdr[24..24 + p.label.len()].copy_from_slice(p.label.as_bytes());
    hdr[72..78].copy_from_slice(b"sha256");
    hdr[104..168].copy_from_slice(salt);
    hdr[168..168 + p.uuid.len()].copy_from_slice(p.uuid.as_bytes());
    hdr[256..264].copy_from_slice(&offset.to_be_bytes());
}

/// The JSON metadata: one keyslot, one segment (the rest of the device), one digest.
fn metadata(p: &Params<'_>, area: u64) -> Result<Vec<u8>> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut digest = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(p.volume_key, &p.digest_salt, DIGEST_ITERATIONS, &mut digest);
    let json = serde_json::json!({
        "keyslots": { "0": {
            "type": "luks2", "key_size": KEY_BYTES,
            "af": { "type": "luks1", "stripes": STRIPES, "hash": "sha256" },
            "area": { "type": "raw", "offset": KEYSLOTS_OFFSET.to_string(), "size": area.to_string(), "encryption": CIPHER, "key_size": KEY_BYTES },
            "kdf": { "type": "argon2id", "time": ARGON2_TIME, "memory": ARGON2_MEMORY_KIB, "cpus": ARGON2_LANES, "salt": b64(&p.kdf_salt) },
        }},
        "tokens": {},
        "segments": { "0": { "type": "crypt", "offset": DATA_OFFSET.to_string(), "size": "dynamic", "iv_tweak": "0", "encryption": CIPHER, "sector_size": SECTOR } },
        "digests": { "0": { "type": "pbkdf2", "keyslots": ["0"], "segments": ["0"], "hash": "sha256", "iterations": DIGEST_ITERATIONS, "salt": b64(&p.digest_salt), "digest": b64(&digest) } },
        "config": { "json_size": (HDR_SIZE - BIN_SIZE as u64).to_string(), "keyslots_size": (DATA_OFFSET - KEYSLOTS_OFFSET).to_string() },
    });
    let bytes = serde_json::to_vec(&json)?;
    ensure!(bytes.len() < HDR_SIZE as usize - BIN_SIZE, "LUKS2 metadata does not fit its area");
    Ok(bytes)
}

/// Argon2id (version 0x13) of the passphrase into `out`.
fn argon2id(passphrase: &[u8], salt: &[u8], out: &mut [u8]) -> Result<()> {
    let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_TIME, ARGON2_LANES, Some(out.len())).map_err(|e| anyhow::anyhow!("Argon2 parameters: {e}"))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    a.hash_password_into(passphrase, salt, out).map_err(|e| anyhow::anyhow!("deriving the LUKS2 keyslot key (Argon2id): {e}"))
}

/// LUKS's anti-forensic split of `key` into `STRIPES` stripes: the random stripes, then the
/// key masked by the diffusion of all of them.
fn af_split(key: &[u8; KEY_BYTES], random: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STRIPES * KEY_BYTES);
    let mut block = [0u8; KEY_BYTES];
    for stripe in random.chunks_exact(KEY_BYTES) {
        out.extend_from_slice(stripe);
        block.iter_mut().zip(stripe).for_each(|(b, s)| *b ^= s);
        diffuse(&mut block);
    }
    out.extend(block.iter().zip(key).map(|(b, k)| b ^ k));
    out
}

/// The splitter's diffusion: each 32-byte piece replaced by SHA-256(index ‖ piece).
fn diffuse(block: &mut [u8; KEY_BYTES]) {
    for (i, piece) in block.chunks_mut(32).enumerate() {
        let h = Sha256::new().chain_update((i as u32).to_be_bytes()).chain_update(&*piece).finalize();
        piece.copy_from_slice(&h[..piece.len()]);
    }
}

/// AES-256-XTS over 512-byte sectors, the tweak of each being its sector number from 0
/// (`plain64`). `key` is the data key followed by the tweak key.
fn xts_encrypt(key: &[u8; KEY_BYTES], data: &mut [u8]) {
    let (k1, k2) = key.split_at(32);
    let (data_cipher, tweak_cipher) = (Aes256::new(GenericArray::from_slice(k1)), Aes256::new(GenericArray::from_slice(k2)));
    for (n, sector) in data.chunks_mut(SECTOR).enumerate() {
        let mut tweak = [0u8; 16];
        tweak[..8].copy_from_slice(&(n as u64).to_le_bytes());
        let mut t = GenericArray::from(tweak);
        tweak_cipher.encrypt_block(&mut t);
        for block in sector.chunks_mut(16) {
            let mut b = GenericArray::clone_from_slice(block);
            b.iter_mut().zip(t.iter()).for_each(|(x, y)| *x ^= y);
            data_cipher.encrypt_block(&mut b);
            b.iter_mut().zip(t.iter()).for_each(|(x, y)| *x ^= y);
            block.copy_from_slice(&b);
            times_alpha(&mut t);
        }
    }
}

/// Multiplies an XTS tweak by α in GF(2¹²⁸) (little-endian, x¹²⁸ + x⁷ + x² + x + 1).
fn times_alpha(t: &mut [u8]) {
    let carry = t[15] >> 7;
    for i in (1..16).rev() {
        t[i] = (t[i] << 1) | (t[i - 1] >> 7);
    }
    t[0] = (t[0] << 1) ^ (0x87 * carry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xts_matches_ieee_1619_vector_10() {
        // IEEE P1619/D16, vector 10: AES-256 keys, data unit sequence number 0xff, the
        // first 32 bytes of the 512-byte ciphertext.
        let key1 = hex::decode("2718281828459045235360287471352662497757247093699959574966967627").unwrap();
        let key2 = hex::decode("3141592653589793238462643383279502884197169399375105820974944592").unwrap();
        let mut key = [0u8; KEY_BYTES];
        key[..32].copy_from_slice(&key1);
        key[32..].copy_from_slice(&key2);
        let mut data: Vec<u8> = (0..512).map(|i| i as u8).collect();
        // Sector 0xff: encrypt 256 sectors and keep the last.
        let mut all = vec![0u8; 256 * 512];
        all[255 * 512..].copy_from_slice(&data);
        xts_encrypt(&key, &mut all);
        data.copy_from_slice(&all[255 * 512..]);
        assert_eq!(hex::encode(&data[..32]), "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b");
    }

    #[test]
    fn alpha_carries_into_the_low_byte() {
        let mut t = [0u8; 16];
        t[15] = 0x80;
        times_alpha(&mut t);
        assert_eq!(t[0], 0x87);
        assert!(t[1..].iter().all(|b| *b == 0));
    }

    #[test]
    fn the_split_key_is_recovered_by_merging() {
        let key = [7u8; KEY_BYTES];
        let random: Vec<u8> = (0..(STRIPES - 1) * KEY_BYTES).map(|i| (i * 31 % 251) as u8).collect();
        let split = af_split(&key, &random);
        assert_eq!(split.len(), STRIPES * KEY_BYTES);
        // Merge as an opener does: diffuse the XOR of all stripes but the last.
        let mut block = [0u8; KEY_BYTES];
        for s in split.chunks_exact(KEY_BYTES).take(STRIPES - 1) {
            block.iter_mut().zip(s).for_each(|(b, x)| *b ^= x);
            diffuse(&mut block);
        }
        let last = &split[(STRIPES - 1) * KEY_BYTES..];
        let merged: Vec<u8> = block.iter().zip(last).map(|(b, l)| b ^ l).collect();
        assert_eq!(merged, key);
    }
}
