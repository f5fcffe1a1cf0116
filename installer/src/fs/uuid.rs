//! Random identifiers for new filesystems: UUIDs (version 4, RFC 9562) from random bytes
//! of the kernel (`getrandom(2)`, which waits until the kernel's generator is seeded:
//! early in boot that is how identifiers stay unique across machines). The bytes are read
//! here rather than by `Uuid::new_v4`, which panics when the generator fails; the `uuid`
//! crate sets the version bits and formats.

use anyhow::{Context, Result};
use rustix::io::Errno;
use rustix::rand::{getrandom, GetRandomFlags};

/// Fills `buf` with random bytes.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match getrandom(&mut buf[done..], GetRandomFlags::empty()) {
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("reading random bytes from the kernel (getrandom)"),
        }
    }
    Ok(())
}

/// A random version-4 UUID.
pub fn random_uuid() -> Result<[u8; 16]> {
    let mut u = [0u8; 16];
    random_bytes(&mut u)?;
    Ok(uuid::Builder::from_random_bytes(u).into_uuid().into_bytes())
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower case, as blkid and fstab show it.
pub fn format_uuid(u: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*u).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_random_version_4() {
        let (a, b) = (random_uuid().unwrap(), random_uuid().unwrap());
        assert_ne!(a, b);
        let s = format_uuid(&a);
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(format_uuid(&[0xAB; 16]), "abababab-abab-abab-abab-abababababab");
    }
}
