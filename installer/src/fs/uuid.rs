//! Random identifiers for new filesystems: UUIDs (version 4, RFC 9562) and random bytes
//! from the kernel (`getrandom(2)`, which waits until the kernel's generator is seeded:
//! early in boot that is how identifiers stay unique across machines).

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
    u[6] = (u[6] & 0x0F) | 0x40;
    u[8] = (u[8] & 0x3F) | 0x80;
    Ok(u)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower case, as blkid and fstab show it.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
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
