//! Recognising what is on a disk or partition by its magic bytes (there is no blkid in the
//! initramfs): filesystems, swap, RAID and LVM members, encrypted volumes, partition tables.
//! Offsets are those documented by each format (and used by util-linux's libblkid).

use std::fs::File;
use std::os::unix::fs::FileExt;

use serde::Serialize;

/// Something found on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signature {
    Ext4,
    Vfat,
    Swap,
    Xfs,
    Btrfs,
    Iso9660,
    Luks,
    LvmPv,
    /// Linux md RAID member (any superblock version).
    MdRaid,
    Mbr,
    GptPrimary,
    GptBackup,
}

impl Signature {
    pub fn name(self) -> &'static str {
        match self {
            Signature::Ext4 => "ext2/3/4",
            Signature::Vfat => "vfat",
            Signature::Swap => "swap",
            Signature::Xfs => "xfs",
            Signature::Btrfs => "btrfs",
            Signature::Iso9660 => "iso9660",
            Signature::Luks => "LUKS",
            Signature::LvmPv => "LVM2 PV",
            Signature::MdRaid => "md RAID",
            Signature::Mbr => "MBR",
            Signature::GptPrimary => "GPT",
            Signature::GptBackup => "GPT backup header",
        }
    }
}

const MD_MAGIC: u32 = 0xa92b_4efc;

/// Probes `len` bytes of `dev` starting at `offset` (a whole disk or one partition).
/// Unreadable regions count as "nothing found"; probing never fails.
pub fn probe(dev: &File, offset: u64, len: u64, sector: u64) -> Vec<Signature> {
    let mut found = Vec::new();
    let head = read(dev, offset, 128 * 1024);
    let at = |o: usize, magic: &[u8]| head.get(o..o + magic.len()) == Some(magic);
    if at(0x438, &[0x53, 0xef]) {
        found.push(Signature::Ext4);
    }
    if at(0x1fe, &[0x55, 0xaa]) && (at(0x52, b"FAT32   ") || at(0x36, b"FAT1")) {
        found.push(Signature::Vfat);
    } else if at(0x1fe, &[0x55, 0xaa]) && head.get(0x1be..0x1fe).is_some_and(|t| t.iter().any(|&b| b != 0)) {
        found.push(Signature::Mbr);
    }
    if at(4096 - 10, b"SWAPSPACE2") || at(4096 - 10, b"SWAP-SPACE") {
        found.push(Signature::Swap);
    }
    if at(0, b"XFSB") {
        found.push(Signature::Xfs);
    }
    if at(0x10040, b"_BHRfS_M") {
        found.push(Signature::Btrfs);
    }
    if at(0x8001, b"CD001") {
        found.push(Signature::Iso9660);
    }
    if at(0, b"LUKS\xba\xbe") || at(0, b"SKUL\xba\xbe") {
        found.push(Signature::Luks);
    }
    if (0..4).any(|s| at(s * 512, b"LABELONE") && at(s * 512 + 24, b"LVM2 001")) {
        found.push(Signature::LvmPv);
    }
    if at(sector as usize, b"EFI PART") {
        found.push(Signature::GptPrimary);
    }
    // md superblocks: 1.1 at 0, 1.2 at 4 KiB, 1.0 near the end, 0.90 in the last 64 KiB block.
    let md_at = |o: u64| u32::from_le_bytes(read(dev, o, 4).try_into().unwrap_or([0; 4])) == MD_MAGIC;
    let md_v090 = (len & !0xffff).saturating_sub(0x10000);
    let md_v10 = (len.saturating_sub(8192)) & !4095;
    if md_at(offset) || md_at(offset + 4096) || (len > 0x20000 && (md_at(offset + md_v090) || md_at(offset + md_v10))) {
        found.push(Signature::MdRaid);
    }
    if len >= 2 * sector && read(dev, offset + len - sector, 8) == b"EFI PART" {
        found.push(Signature::GptBackup);
    }
    found
}

fn read(dev: &File, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match dev.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    buf.truncate(done);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn image(size: u64, writes: &[(u64, &[u8])]) -> File {
        let mut f = tempfile();
        f.set_len(size).unwrap();
        for (off, data) in writes {
            f.write_all_at(data, *off).unwrap();
        }
        f.flush().unwrap();
        f
    }

    fn tempfile() -> File {
        let path = std::env::temp_dir().join(format!("anemos-sig-{}-{}", std::process::id(), rand_suffix()));
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        f
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn finds_magic_at_documented_offsets() {
        let size = 4 << 20;
        let f = image(size, &[(0x438, &[0x53, 0xef]), (512, b"EFI PART"), (size - 512, b"EFI PART"), (4096, &MD_MAGIC.to_le_bytes())]);
        assert_eq!(probe(&f, 0, size, 512), [Signature::Ext4, Signature::GptPrimary, Signature::MdRaid, Signature::GptBackup]);
        let f = image(size, &[(4086, b"SWAPSPACE2"), (0, b"LUKS\xba\xbe")]);
        assert_eq!(probe(&f, 0, size, 512), [Signature::Swap, Signature::Luks]);
        let end_md = (size & !0xffff) - 0x10000;
        let f = image(size, &[(end_md, &MD_MAGIC.to_le_bytes())]);
        assert_eq!(probe(&f, 0, size, 512), [Signature::MdRaid]);
        assert!(probe(&image(size, &[]), 0, size, 512).is_empty());
    }
}
