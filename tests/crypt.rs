//! LUKS2 headers written in-process, judged by cryptsetup: it reads them as valid LUKS2,
//! its keyslot opens with the passphrase and no other, the volume key it recovers is the
//! one the header was made with, and the secondary header stands in for a damaged
//! primary one.

use std::path::Path;

use anemos_tests::{scratch, sh};
use installer::crypt::luks2::{self, Params, KEY_BYTES};

const UUID: &str = "5f0c4ad2-77a9-4b7e-9a43-0c3e5b6f8e21";
const PASSPHRASE: &[u8] = b"correct horse battery staple";

fn params(key: &[u8; KEY_BYTES]) -> Params<'_> {
    let mut p = Params::random(PASSPHRASE, key, UUID, "root").unwrap();
    p.salts = [[1; 64], [2; 64]];
    p
}

/// A device of `len` bytes holding a fresh header (the data area left sparse).
fn device(dir: &Path, name: &str, key: &[u8; KEY_BYTES], len: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    let header = luks2::header(&params(key)).unwrap();
    std::fs::write(&path, &header).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len).unwrap();
    path
}

fn key() -> [u8; KEY_BYTES] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
}

#[test]
fn cryptsetup_reads_the_header_and_opens_the_keyslot_with_the_passphrase_only() {
    let dir = scratch("crypt-judge");
    let key = key();
    std::fs::write(dir.join("pass"), PASSPHRASE).unwrap();
    std::fs::write(dir.join("wrong"), b"correct horse battery stapler").unwrap();
    // Odd sizes: the segment is "dynamic", so the header is the same for any of them.
    for (i, len) in [(17u64 << 20) + 512, 100 << 20, (1 << 30) - 4096].into_iter().enumerate() {
        let img = device(&dir, &format!("luks{i}.img"), &key, len);
        let dump = sh(&format!("cryptsetup luksDump {}", img.display())).unwrap();
        for want in ["Version:       \t2", "Label:         \troot", UUID, "aes-xts-plain64", "argon2id", "offset: 16777216 [bytes]", "length: (whole device)", "Key:        512 bits"] {
            assert!(dump.contains(want), "luksDump lacks {want:?}:\n{dump}");
        }
        sh(&format!("cryptsetup open --test-passphrase --key-file {} {}", dir.join("pass").display(), img.display())).unwrap();
        assert!(sh(&format!("cryptsetup open --test-passphrase --key-file {} {}", dir.join("wrong").display(), img.display())).is_err(), "a wrong passphrase opened the keyslot");
    }
    let img = dir.join("luks0.img");
    let dumped = sh(&format!("cryptsetup luksDump -q --dump-volume-key --key-file {} {}", dir.join("pass").display(), img.display())).unwrap();
    let hex: String = dumped.lines().skip_while(|l| !l.starts_with("MK dump:")).flat_map(|l| l.trim_start_matches("MK dump:").split_whitespace()).collect::<Vec<_>>().concat();
    assert_eq!(hex, installer_hex(&key), "the volume key cryptsetup recovers:\n{dumped}");
}

#[test]
fn the_secondary_header_stands_in_for_a_damaged_primary() {
    let dir = scratch("crypt-secondary");
    let img = device(&dir, "luks.img", &key(), 64 << 20);
    std::fs::write(dir.join("pass"), PASSPHRASE).unwrap();
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[..4096].fill(0);
    std::fs::write(&img, &bytes).unwrap();
    // A read-only check recovers from the secondary header without writing.
    sh(&format!("cryptsetup open --test-passphrase --key-file {} {}", dir.join("pass").display(), img.display())).unwrap();
}

fn installer_hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
