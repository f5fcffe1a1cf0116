//! LVM: `volume_group="NAME PARTITION…"` (a volume group over `lvm` partitions) and
//! `volumes=` (its logical volumes, one per line, `NAME SIZE [FS [MOUNTPOINT [OPTIONS]]]`).
//! The rules across them and the partitions are [`Layout::problems`]; here is the syntax.

use super::layout::{mount_point, part_size};
use super::Ctx;
use crate::imgbuild::diag::not_allowed;
use crate::plan::*;

/// The volume group with each volume's line offset, and whether every line parsed (wrong
/// lines are reported; the rest is still checked against the layout).
pub fn group(cx: &mut Ctx<'_>) -> (Option<(VolumeGroup, Vec<usize>)>, bool) {
    let (volumes, ok) = cx.parse_lines("volumes", volume);
    let words: Vec<String> = cx.get("volume_group").map(|g| g.split_whitespace().map(String::from).collect()).unwrap_or_default();
    match words.split_first() {
        None if volumes.is_empty() => (None, ok),
        None => {
            cx.error("volumes", "volumes= needs volume_group=\"NAME PARTITION…\": the volume group over lvm partitions that holds them");
            (None, false)
        }
        Some((name, members)) => {
            let (offsets, volumes): (Vec<usize>, Vec<Volume>) = volumes.into_iter().unzip();
            (Some((VolumeGroup { name: name.clone(), members: members.to_vec(), volumes }, offsets)), ok)
        }
    }
}

fn volume(line: &str) -> Result<Volume, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if !(2..=5).contains(&w.len()) {
        return Err("expected NAME SIZE [FS [MOUNTPOINT [OPTIONS]]]".into());
    }
    let size = part_size(w[1])?;
    let fs = match w.get(2).copied() {
        None | Some("ext4") => Filesystem::Ext4,
        Some("btrfs") => Filesystem::Btrfs,
        Some("swap") => Filesystem::Swap,
        Some(f) => return Err(not_allowed(f, &format!("file system {f:?} cannot go on a logical volume"), &["ext4", "btrfs", "swap"])),
    };
    let mountpoint = w.get(3).map(|m| mount_point(m)).transpose()?.flatten();
    if fs == Filesystem::Swap && mountpoint.is_some() {
        return Err("a swap volume cannot be mounted; use - as the mount point".into());
    }
    let options = w.get(4).map(|s| s.to_string()).unwrap_or_else(|| "defaults".into());
    Ok(Volume { name: w[0].to_string(), size, fs, mountpoint, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_lines_parse_with_defaults() {
        let v = volume("root 8G").unwrap();
        assert_eq!((v.size, v.fs, v.mountpoint, v.options.as_str()), (PartSize::Bytes(8 << 30), Filesystem::Ext4, None, "defaults"));
        let v = volume("srv rest ext4 /srv noatime").unwrap();
        assert_eq!((v.size, v.mountpoint.as_deref(), v.options.as_str()), (PartSize::Rest, Some("/srv"), "noatime"));
        assert_eq!(volume("swap 10% swap").unwrap().fs, Filesystem::Swap);
        assert!(volume("x 1G vfat").unwrap_err().contains("cannot go on a logical volume"));
        assert!(volume("x 1G swap /x").unwrap_err().contains("cannot be mounted"));
        assert!(volume("x").unwrap_err().contains("expected NAME SIZE"));
    }
}
