//! Encrypted partitions (`encrypt=`): a LUKS2 header written in-process ([`luks2`]) and
//! the partition opened through device-mapper ([`dm`]), so the disks phase makes the file
//! system inside it like on any partition. The passphrase is a secret's value; the volume
//! key is random, lives only in this process and the kernel, and is wiped after use.

pub mod dm;
pub mod luks2;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::units::human_size;

/// An encrypted partition, open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The mapping's name (`/dev/mapper/NAME` in the new system; the crypttab name).
    pub name: String,
    /// The opened device the file system goes on (`/dev/dm-N`).
    pub device: PathBuf,
    /// The LUKS2 header's UUID (crypttab's `UUID=`).
    pub luks_uuid: String,
}

/// The kernel modules an open needs (device-mapper's crypt target and the XTS mode; AES
/// itself is built into Debian's kernel, and its accelerated module is optional).
pub const MODULES: &[&str] = &["dm_crypt", "xts"];

/// Writes a new LUKS2 header on `partition` with `passphrase` in its one keyslot and opens
/// it as `name`. Whatever was on the partition is lost.
pub fn format_and_open(partition: &Path, name: &str, passphrase: &[u8]) -> Result<Opened> {
    ensure!(!passphrase.is_empty(), "encrypting {}: the passphrase is empty", partition.display());
    let mut file = std::fs::OpenOptions::new().write(true).open(partition).with_context(|| format!("opening {} to encrypt it", partition.display()))?;
    let size = crate::sys::block_size_bytes(&file).with_context(|| format!("reading the size of {}", partition.display()))?;
    ensure!(size >= luks2::DATA_OFFSET + (1 << 20), "encrypting {}: it holds {}, and LUKS2 needs 16 MiB for its header and more for data", partition.display(), human_size(size));
    let uuid = uuid::Uuid::new_v4();
    let mut key = [0u8; luks2::KEY_BYTES];
    luks2::random(&mut key)?;
    let result = write_and_open(&mut file, partition, name, passphrase, &key, &uuid, size);
    dm::wipe(&mut key);
    result
}

fn write_and_open(file: &mut std::fs::File, partition: &Path, name: &str, passphrase: &[u8], key: &[u8; luks2::KEY_BYTES], uuid: &uuid::Uuid, size: u64) -> Result<Opened> {
    let uuid_text = uuid.hyphenated().to_string();
    let header = luks2::header(&luks2::Params::random(passphrase, key, &uuid_text, name)?)?;
    file.write_all(&header).and_then(|_| file.sync_all()).with_context(|| format!("writing the LUKS2 header to {}", partition.display()))?;
    let dm_uuid = format!("CRYPT-LUKS2-{}-{name}", uuid.simple());
    let target = dm::CryptTarget { name, uuid: &dm_uuid, device: partition, offset_sectors: luks2::DATA_OFFSET / 512, sectors: (size - luks2::DATA_OFFSET) / 512, cipher: luks2::CIPHER, key };
    let device = dm::create_crypt(&target)?;
    log::info!("{}: LUKS2 (aes-xts-plain64, Argon2id), UUID={uuid_text}, open as {name} ({})", partition.display(), device.display());
    Ok(Opened { name: name.to_string(), device, luks_uuid: uuid_text })
}

/// Closes an opened partition (after its file system is unmounted).
pub fn close(opened: &Opened) -> Result<()> {
    dm::remove(&opened.name)
}
