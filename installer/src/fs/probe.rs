//! Reading the type, UUID and label of an existing filesystem, as blkid reports them, for
//! disks that are kept and mounted by UUID. Recognised: swap (v1 header), ext2/3/4
//! (reported as ext4: the kernel's ext4 driver mounts all three) and FAT (volume id and
//! boot-sector label).

use anyhow::{bail, Result};

use super::swap::SIGNATURE;
use super::target::Target;
use super::{format_uuid, FsInfo, FsKind};
use crate::fs::fat::format_volume_id;

/// Bytes read from the start of the target: enough for a 64 KiB-page swap header.
const HEAD: u64 = 64 << 10;

/// The filesystem on `target`, or `None` when none of ours is recognised.
pub fn probe(target: &Target) -> Result<Option<FsInfo>> {
    let mut head = vec![0u8; HEAD.min(target.len()) as usize];
    target.read_at(0, &mut head)?;
    Ok(swap(&head).or_else(|| ext(&head)).or_else(|| fat(&head)))
}

/// Like [`probe`], but an unrecognised target is an error.
pub fn probe_uuid(target: &Target) -> Result<FsInfo> {
    match probe(target)? {
        Some(info) => Ok(info),
        None => bail!("no ext4, vfat or swap filesystem found on {}", target.name()),
    }
}

/// A NUL- or space-padded label field, `None` when empty.
fn label(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let s = String::from_utf8_lossy(&field[..end]).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

fn uuid_at(head: &[u8], off: usize) -> Option<[u8; 16]> {
    head.get(off..off + 16)?.try_into().ok()
}

fn swap(head: &[u8]) -> Option<FsInfo> {
    for page in [4096usize, 8192, 16384, 65536] {
        if head.get(page - 10..page) == Some(&SIGNATURE[..]) {
            let uuid = uuid_at(head, 1036)?;
            return Some(FsInfo { kind: FsKind::Swap, uuid: format_uuid(&uuid), label: label(&head[1052..1068]) });
        }
    }
    None
}

fn ext(head: &[u8]) -> Option<FsInfo> {
    let sb = head.get(1024..2048)?;
    if sb[0x38..0x3A] != [0x53, 0xEF] {
        return None;
    }
    let uuid = uuid_at(sb, 0x68)?;
    Some(FsInfo { kind: FsKind::Ext4, uuid: format_uuid(&uuid), label: label(&sb[0x78..0x88]) })
}

fn fat(head: &[u8]) -> Option<FsInfo> {
    let bs = head.get(..512)?;
    if bs[510..512] != [0x55, 0xAA] {
        return None;
    }
    // The extended boot record sits after the FAT32 BPB, or directly after the FAT12/16 one.
    let ebr = if &bs[82..87] == b"FAT32" {
        64
    } else if &bs[54..57] == b"FAT" {
        36
    } else {
        return None;
    };
    if bs[ebr + 2] != 0x29 {
        return None;
    }
    let id = u32::from_le_bytes([bs[ebr + 3], bs[ebr + 4], bs[ebr + 5], bs[ebr + 6]]);
    let name = label(&bs[ebr + 7..ebr + 18]).filter(|l| l != "NO NAME");
    Some(FsInfo { kind: FsKind::Vfat, uuid: format_volume_id(id), label: name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stop_at_nul_and_trailing_spaces() {
        assert_eq!(label(b"root\0\0junk"), Some("root".into()));
        assert_eq!(label(b"ESP        "), Some("ESP".into()));
        assert_eq!(label(b"\0\0\0"), None);
    }

    #[test]
    fn nothing_is_found_in_zeros() {
        let head = vec![0u8; HEAD as usize];
        assert!(swap(&head).or_else(|| ext(&head)).or_else(|| fat(&head)).is_none());
    }
}
