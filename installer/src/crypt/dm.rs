//! Device-mapper, spoken directly (no libdevmapper, no udev): a `crypt` target over a
//! partition, created, loaded and resumed as cryptsetup does it, and removed again. The
//! device's node is the kernel's own `/dev/dm-N` (devtmpfs); its name and UUID are the
//! ones cryptsetup gives (`CRYPT-LUKS2-…-NAME`), so the target's tools (the initramfs
//! hooks, lsblk, systemd) recognise it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::sys::{dm_ioctl, DmBuffer, DmCommand, DM_BUFFER_SIZE};

const CONTROL: &str = "/dev/mapper/control";
/// sizeof(struct dm_ioctl) and sizeof(struct dm_target_spec).
const HEADER: usize = 312;
const SPEC: usize = 40;
/// DM_SECURE_DATA_FLAG: the kernel wipes its buffers of this call (they hold a key).
const SECURE_DATA: u32 = 1 << 15;

/// A crypt target to create.
pub struct CryptTarget<'a> {
    pub name: &'a str,
    pub uuid: &'a str,
    /// The partition holding the encrypted data.
    pub device: &'a Path,
    /// Where the data starts on it, and how long it is, in 512-byte sectors.
    pub offset_sectors: u64,
    pub sectors: u64,
    pub cipher: &'a str,
    pub key: &'a [u8],
}

/// Creates and activates the mapping; returns its device node.
pub fn create_crypt(t: &CryptTarget<'_>) -> Result<PathBuf> {
    let control = open_control()?;
    let rdev = std::fs::metadata(t.device).with_context(|| format!("reading the device number of {}", t.device.display()))?.rdev();
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let mut buf = request(t.name, Some(t.uuid), SECURE_DATA)?;
    dm_ioctl(&control, DmCommand::Create, &mut buf).with_context(|| format!("creating device-mapper device {:?} (is dm_mod loaded?)", t.name))?;
    let dev = u64::from_ne_bytes(buf.0[40..48].try_into().unwrap_or_default());
    let node = PathBuf::from(format!("/dev/dm-{}", (dev & 0xff) | ((dev >> 12) & 0xfff00)));
    let loaded = load_and_resume(&control, t, major, minor);
    if let Err(e) = loaded {
        let _ = remove(t.name);
        return Err(e);
    }
    Ok(node)
}

fn load_and_resume(control: &File, t: &CryptTarget<'_>, major: u32, minor: u32) -> Result<()> {
    let mut params = Vec::with_capacity(256);
    params.extend_from_slice(t.cipher.as_bytes());
    params.push(b' ');
    params.extend(hex::encode(t.key).into_bytes());
    params.extend_from_slice(format!(" 0 {major}:{minor} {}", t.offset_sectors).as_bytes());
    let mut buf = request(t.name, None, SECURE_DATA)?;
    let result = table(&mut buf, t.sectors, "crypt", &params).and_then(|_| {
        dm_ioctl(control, DmCommand::TableLoad, &mut buf)
            .with_context(|| format!("loading the crypt table of {:?} over {} (is dm_crypt loaded, and the cipher {} known?)", t.name, t.device.display(), t.cipher))
    });
    wipe(&mut params);
    wipe(&mut buf.0);
    result?;
    let mut buf = request(t.name, None, SECURE_DATA)?;
    dm_ioctl(control, DmCommand::Suspend, &mut buf).with_context(|| format!("activating device-mapper device {:?}", t.name))?;
    Ok(())
}

/// Removes the mapping `name` (its file systems must be unmounted).
pub fn remove(name: &str) -> Result<()> {
    let control = open_control()?;
    let mut buf = request(name, None, 0)?;
    dm_ioctl(&control, DmCommand::Remove, &mut buf).with_context(|| format!("removing device-mapper device {name:?}"))?;
    Ok(())
}

fn open_control() -> Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).open(CONTROL).with_context(|| format!("opening {CONTROL} (the device-mapper driver, dm_mod, is not loaded?)"))
}

/// A request header for device `name`: interface version 4.0.0, no data yet.
fn request(name: &str, uuid: Option<&str>, flags: u32) -> Result<Box<DmBuffer>> {
    if name.is_empty() || name.len() >= 128 || name.contains('/') || uuid.is_some_and(|u| u.len() >= 129) {
        bail!("device-mapper name {name:?} or its uuid is not usable (1–127 bytes, no '/')");
    }
    let mut b = Box::new(DmBuffer([0; DM_BUFFER_SIZE]));
    for (i, v) in [4u32, 0, 0, HEADER as u32, HEADER as u32].into_iter().enumerate() {
        b.0[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    b.0[28..32].copy_from_slice(&flags.to_ne_bytes());
    b.0[48..48 + name.len()].copy_from_slice(name.as_bytes());
    if let Some(u) = uuid {
        b.0[176..176 + u.len()].copy_from_slice(u.as_bytes());
    }
    Ok(b)
}

/// Adds one target (`struct dm_target_spec` and its NUL-terminated parameters) to a
/// request.
fn table(b: &mut DmBuffer, sectors: u64, kind: &str, params: &[u8]) -> Result<()> {
    let total = (HEADER + SPEC + params.len() + 1).div_ceil(8) * 8;
    if total > DM_BUFFER_SIZE || kind.len() >= 16 {
        bail!("device-mapper table too large");
    }
    b.0[12..16].copy_from_slice(&(total as u32).to_ne_bytes());
    b.0[20..24].copy_from_slice(&1u32.to_ne_bytes());
    let spec = &mut b.0[HEADER..];
    spec[0..8].copy_from_slice(&0u64.to_ne_bytes());
    spec[8..16].copy_from_slice(&sectors.to_ne_bytes());
    spec[20..24].copy_from_slice(&((total - HEADER) as u32).to_ne_bytes());
    spec[24..24 + kind.len()].copy_from_slice(kind.as_bytes());
    spec[SPEC..SPEC + params.len()].copy_from_slice(params);
    Ok(())
}

/// Overwrites key material before the memory is freed.
pub fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crypt_table_request_is_laid_out_as_the_kernel_reads_it() {
        let mut b = request("root", Some("CRYPT-LUKS2-0123-root"), SECURE_DATA).unwrap();
        table(&mut b, 2048, "crypt", b"aes-xts-plain64 00 0 8:2 32768").unwrap();
        let u32_at = |o: usize| u32::from_ne_bytes(b.0[o..o + 4].try_into().unwrap());
        assert_eq!((u32_at(0), u32_at(4), u32_at(8)), (4, 0, 0));
        let size = u32_at(12) as usize;
        assert_eq!(size % 8, 0);
        assert_eq!(size, (312 + 40 + 30 + 1usize).div_ceil(8) * 8);
        assert_eq!((u32_at(16), u32_at(20), u32_at(28)), (312, 1, SECURE_DATA));
        assert_eq!(&b.0[48..53], b"root\0");
        assert_eq!(&b.0[176..198], b"CRYPT-LUKS2-0123-root\0");
        assert_eq!(u64::from_ne_bytes(b.0[320..328].try_into().unwrap()), 2048);
        assert_eq!(&b.0[336..342], b"crypt\0");
        assert_eq!(&b.0[352..382], b"aes-xts-plain64 00 0 8:2 32768");
        assert_eq!(b.0[382], 0);
    }

    #[test]
    fn names_that_device_mapper_refuses_are_refused_here() {
        assert!(request("", None, 0).is_err());
        assert!(request("a/b", None, 0).is_err());
        assert!(request(&"x".repeat(128), None, 0).is_err());
    }
}
