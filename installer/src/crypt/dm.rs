//! Device-mapper, spoken directly (no libdevmapper, no udev): mappings of `crypt` or
//! `linear` targets, created, loaded and resumed as cryptsetup and LVM do it, and removed
//! again. The
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
const HEX: &[u8; 16] = b"0123456789abcdef";
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

/// Creates and activates the crypt mapping; returns its device node.
pub fn create_crypt(t: &CryptTarget<'_>) -> Result<PathBuf> {
    let rdev = std::fs::metadata(t.device).with_context(|| format!("reading the device number of {}", t.device.display()))?.rdev();
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let mut params = Vec::with_capacity(256);
    params.extend_from_slice(t.cipher.as_bytes());
    params.push(b' ');
    // Hex digits straight into the buffer that is wiped: no other copy of the key.
    for b in t.key {
        params.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
    }
    params.extend_from_slice(format!(" 0 {major}:{minor} {}", t.offset_sectors).as_bytes());
    let result = create(t.name, t.uuid, "crypt", &[(t.sectors, params.as_slice())]).with_context(|| format!("over {} (is dm_crypt loaded, and the cipher {} known?)", t.device.display(), t.cipher));
    wipe(&mut params);
    result
}

/// Creates a mapping of `kind` targets, one after the other (sectors, parameters), and
/// activates it; returns its device node. On failure nothing is left behind.
pub fn create<P: AsRef<[u8]>>(name: &str, uuid: &str, kind: &str, targets: &[(u64, P)]) -> Result<PathBuf> {
    let control = open_control()?;
    let mut buf = request(name, Some(uuid), SECURE_DATA)?;
    dm_ioctl(&control, DmCommand::Create, &mut buf).with_context(|| format!("creating device-mapper device {name:?} (is dm_mod loaded?)"))?;
    let dev = u64::from_ne_bytes(buf.0[40..48].try_into().unwrap_or_default());
    let node = PathBuf::from(format!("/dev/dm-{}", (dev & 0xff) | ((dev >> 12) & 0xfff00)));
    if let Err(e) = load_and_resume(&control, name, kind, targets) {
        let _ = remove(name);
        return Err(e);
    }
    Ok(node)
}

fn load_and_resume<P: AsRef<[u8]>>(control: &File, name: &str, kind: &str, targets: &[(u64, P)]) -> Result<()> {
    let mut buf = request(name, None, SECURE_DATA)?;
    let result = table(&mut buf, kind, targets).and_then(|_| dm_ioctl(control, DmCommand::TableLoad, &mut buf).with_context(|| format!("loading the {kind} table of device-mapper device {name:?}")));
    wipe(&mut buf.0);
    result?;
    let mut buf = request(name, None, SECURE_DATA)?;
    dm_ioctl(control, DmCommand::Suspend, &mut buf).with_context(|| format!("activating device-mapper device {name:?}"))?;
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

/// Adds the targets (each a `struct dm_target_spec` and its NUL-terminated parameters,
/// 8-aligned, one after the other) to a request.
fn table<P: AsRef<[u8]>>(b: &mut DmBuffer, kind: &str, targets: &[(u64, P)]) -> Result<()> {
    if kind.len() >= 16 || targets.is_empty() {
        bail!("device-mapper table: no targets, or an unknown target type {kind:?}");
    }
    let mut at = HEADER;
    let mut start = 0u64;
    for (sectors, params) in targets {
        let params = params.as_ref();
        let len = (SPEC + params.len() + 1).div_ceil(8) * 8;
        if at + len > DM_BUFFER_SIZE {
            bail!("device-mapper table too large");
        }
        let spec = &mut b.0[at..at + len];
        spec.fill(0);
        spec[0..8].copy_from_slice(&start.to_ne_bytes());
        spec[8..16].copy_from_slice(&sectors.to_ne_bytes());
        spec[20..24].copy_from_slice(&(len as u32).to_ne_bytes());
        spec[24..24 + kind.len()].copy_from_slice(kind.as_bytes());
        spec[SPEC..SPEC + params.len()].copy_from_slice(params);
        at += len;
        start += sectors;
    }
    b.0[12..16].copy_from_slice(&(at as u32).to_ne_bytes());
    b.0[20..24].copy_from_slice(&(targets.len() as u32).to_ne_bytes());
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
        table(&mut b, "crypt", &[(2048, b"aes-xts-plain64 00 0 8:2 32768")]).unwrap();
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
    fn targets_follow_each_other_in_sectors_and_in_the_buffer() {
        let mut b = request("vg-root", Some("LVM-x"), 0).unwrap();
        table(&mut b, "linear", &[(100, "8:3 2048"), (50, "8:4 2048")]).unwrap();
        let u64_at = |o: usize| u64::from_ne_bytes(b.0[o..o + 8].try_into().unwrap());
        let next = u32::from_ne_bytes(b.0[332..336].try_into().unwrap()) as usize;
        assert_eq!(next, 56);
        assert_eq!((u64_at(312), u64_at(320)), (0, 100));
        assert_eq!((u64_at(312 + next), u64_at(320 + next)), (100, 50));
        assert_eq!(&b.0[312 + next + 40..312 + next + 48], b"8:4 2048");
        assert_eq!(u32::from_ne_bytes(b.0[20..24].try_into().unwrap()), 2);
        assert_eq!(u32::from_ne_bytes(b.0[12..16].try_into().unwrap()), 312 + 56 + 56);
    }

    #[test]
    fn names_that_device_mapper_refuses_are_refused_here() {
        assert!(request("", None, 0).is_err());
        assert!(request("a/b", None, 0).is_err());
        assert!(request(&"x".repeat(128), None, 0).is_err());
    }
}
