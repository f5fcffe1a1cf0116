//! Partition layouts: the plan's layout (sizes in bytes, percent of the disk or "rest";
//! type GUIDs and MBR types) turned into exact, aligned, validated positions for one disk —
//! computed and shown before anything is written.

use std::fmt;

use anyhow::{bail, Result};
use uuid::Uuid;

use crate::plan::{Layout, PartKind, PartSize, Partition, TableType};
use crate::units::human_size;

/// Every partition starts on a 1 MiB boundary, like every modern partitioner.
pub const ALIGN: u64 = 1 << 20;

/// A partition at its final place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedPart {
    /// 1-based partition number.
    pub number: u32,
    pub name: String,
    pub kind: PartKind,
    /// Offset and length in bytes (multiples of the sector size; the start of 1 MiB).
    pub start: u64,
    pub size: u64,
    pub type_guid: Uuid,
    pub part_guid: Uuid,
    pub mbr_type: u8,
    pub bootable: bool,
}

/// A layout computed for one disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedLayout {
    pub table: TableType,
    pub disk_size: u64,
    pub sector_size: u64,
    pub disk_guid: Uuid,
    pub mbr_signature: u32,
    pub parts: Vec<PlannedPart>,
}

/// Space GPT keeps at the end of the disk: backup entries (16 KiB) plus the backup header.
fn gpt_tail(sector: u64) -> u64 {
    16384 + sector
}

const MBR_LIMIT_SECTORS: u64 = u32::MAX as u64;

/// Computes exact positions for `layout` on a disk of `disk_size` bytes. `seed` makes every
/// GUID reproducible. Every problem is reported at once. The checks the plan's validation
/// already made are repeated, because a payload can be written by hand: a layout that breaks
/// them never reaches a disk.
pub fn plan(layout: &Layout, disk_size: u64, sector: u64, seed: Option<&str>) -> Result<PlannedLayout> {
    let parts = &layout.partitions;
    let mut problems: Vec<String> = layout.problems().into_iter().map(|p| p.message).collect();
    let first = ALIGN;
    let end = match layout.table {
        TableType::Gpt => disk_size.saturating_sub(gpt_tail(sector)),
        TableType::Msdos => disk_size.min(MBR_LIMIT_SECTORS * sector),
    };
    let end = end / sector * sector;
    if end <= first {
        problems.push(format!("the disk ({}) is too small for a partition table and one aligned partition", human_size(disk_size)));
    }
    let usable = end.saturating_sub(first);
    // Fixed and percent sizes first; "rest" gets what remains.
    let mut sizes: Vec<Option<u64>> = parts
        .iter()
        .map(|p| match p.size {
            PartSize::Bytes(b) => Some(b / sector * sector),
            // Percent of the whole disk, as the IMGBUILD documents it.
            PartSize::Percent(pc) => Some((disk_size as u128 * pc as u128 / 100) as u64 / ALIGN * ALIGN),
            PartSize::Rest => None,
        })
        .collect();
    let fixed: u64 = sizes.iter().flatten().map(|s| align_up(*s)).sum();
    if fixed > usable && !parts.is_empty() {
        problems.push(format!(
            "the partitions need {} but the disk has {} usable ({} in all): shrink a partition or choose a bigger disk",
            human_size(fixed),
            human_size(usable),
            human_size(disk_size)
        ));
    }
    if let Some(i) = parts.iter().position(|p| p.size == PartSize::Rest) {
        let rest = usable.saturating_sub(fixed) / ALIGN * ALIGN;
        if rest == 0 && fixed <= usable {
            problems.push(format!("partition {:?} (size rest) would be empty: the others take the whole disk", parts[i].name));
        }
        sizes[i] = Some(rest);
    }
    if let Some(g) = &layout.volume_group {
        // A member on an array gets at least what one disk's partition gives a mirror (a
        // stripe over several disks gets more): the lower bound, so nothing that fits here
        // fails after the wipe.
        let usable = |i: usize| {
            let size = sizes[i].unwrap_or(0);
            match layout.raid_of(&parts[i].name) {
                Some(_) => crate::md::member_data_bytes(size),
                None => size,
            }
        };
        let member_sizes: Vec<u64> = g.members.iter().filter_map(|m| parts.iter().position(|p| &p.name == m)).map(usable).collect();
        match crate::lvm::allocate(g, &member_sizes) {
            Err(e) => problems.push(format!("on this disk, {e:#}")),
            Ok(a) => problems.extend(small_btrfs_volumes(g, &a)),
        }
    }
    problems.extend(small_btrfs_partitions(layout, &sizes));
    for (p, size) in parts.iter().zip(&sizes) {
        if layout.encryption(&p.name).is_some() && size.is_some_and(|s| s < crate::plan::ENCRYPTED_MIN) {
            problems.push(format!("partition {:?} would be {} on this disk, too small to encrypt (the LUKS2 header takes 16 MiB)", p.name, human_size(size.unwrap_or(0))));
        }
    }
    if !problems.is_empty() {
        bail!("the partition layout does not fit:\n  - {}", problems.join("\n  - "));
    }
    let mut planned = Vec::new();
    let mut at = first;
    for (i, (p, size)) in parts.iter().zip(sizes).enumerate() {
        let size = size.unwrap_or(0);
        let number = i as u32 + 1;
        planned.push(PlannedPart {
            number,
            name: p.name.clone(),
            kind: p.kind.clone(),
            start: at,
            size,
            type_guid: type_guid(layout, p)?,
            part_guid: guid(seed, &format!("partition {number} {}", p.name)),
            mbr_type: if layout.raid_of(&p.name).is_some() { 0xfd } else { p.mbr_type },
            bootable: p.bootable,
        });
        at = align_up(at + size);
    }
    let disk_guid = guid(seed, "disk");
    let mbr_signature = u32::from_le_bytes(disk_guid.as_bytes()[..4].try_into().unwrap_or([1, 2, 3, 4]));
    Ok(PlannedLayout { table: layout.table, disk_size, sector_size: sector, disk_guid, mbr_signature, parts: planned })
}

/// btrfs partitions this disk would make smaller than btrfs's least size (what is left
/// after an array's superblock area and a LUKS2 header).
fn small_btrfs_partitions(layout: &Layout, sizes: &[Option<u64>]) -> Vec<String> {
    let min = crate::fs::btrfs::MIN_SIZE;
    let room = |p: &Partition, size: u64| {
        let size = if layout.raid_of(&p.name).is_some() { crate::md::member_data_bytes(size) } else { size };
        size.saturating_sub(if layout.encryption(&p.name).is_some() { crate::crypt::luks2::DATA_OFFSET } else { 0 })
    };
    let parts = layout.partitions.iter().zip(sizes).filter(|(p, _)| p.fs == crate::plan::Filesystem::Btrfs);
    parts
        .filter(|(p, s)| room(p, s.unwrap_or(0)) < min)
        .map(|(p, s)| format!("partition {:?} would be {} on this disk, too small for btrfs (at least {} MiB)", p.name, human_size(s.unwrap_or(0)), min >> 20))
        .collect()
}

/// btrfs volumes the allocation makes smaller than btrfs's least size.
fn small_btrfs_volumes(g: &crate::plan::VolumeGroup, a: &crate::lvm::Allocation) -> Vec<String> {
    let min = crate::fs::btrfs::MIN_SIZE;
    let bytes = |segs: &Vec<crate::lvm::Segment>| segs.iter().map(|s| s.extents).sum::<u64>() * crate::lvm::EXTENT;
    let vols = g.volumes.iter().zip(&a.volumes).filter(|(v, _)| v.fs == crate::plan::Filesystem::Btrfs);
    vols.filter(|(_, segs)| bytes(segs) < min)
        .map(|(v, segs)| format!("volume {:?} would be {} on this disk, too small for btrfs (at least {} MiB)", v.name, human_size(bytes(segs)), min >> 20))
        .collect()
}

/// The partition's type; an array member is "Linux RAID", whatever its partition's type.
fn type_guid(layout: &Layout, p: &Partition) -> Result<Uuid> {
    if layout.raid_of(&p.name).is_some() {
        return Ok(Uuid::parse_str(crate::plan::type_guid::RAID)?);
    }
    Uuid::parse_str(&p.type_guid).map_err(|e| anyhow::anyhow!("partition {:?}: type GUID {:?}: {e}", p.name, p.type_guid))
}

/// `x` rounded up to the next [`ALIGN`] boundary.
fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// A random GUID, or one derived from `seed` and `what` when a seed is given.
fn guid(seed: Option<&str>, what: &str) -> Uuid {
    match seed {
        Some(seed) => {
            let ns = uuid_v5(&Uuid::NAMESPACE_OID, format!("anemos layout seed {seed}").as_bytes());
            uuid_v5(&ns, what.as_bytes())
        }
        None => Uuid::new_v4(),
    }
}

/// A name-based UUID (RFC 9562 §5.5, what `Uuid::new_v5` makes) with the sha1 crate the
/// installer already uses, so that the init carries no second SHA-1 (uuid's `v5` feature
/// brings sha1_smol).
fn uuid_v5(namespace: &Uuid, name: &[u8]) -> Uuid {
    use sha1::Digest;
    let digest = sha1::Sha1::new().chain_update(namespace.as_bytes()).chain_update(name).finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

impl fmt::Display for PlannedLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = match self.table {
            TableType::Gpt => "GPT",
            TableType::Msdos => "msdos (MBR)",
        };
        writeln!(f, "{table} partition table on {} (disk {}):", human_size(self.disk_size), self.disk_guid)?;
        for p in &self.parts {
            writeln!(f, "  {:>2}  {:<12} {:<9} {:>10} at {:>10}", p.number, p.name, p.kind.to_string(), human_size(p.size), human_size(p.start))?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::Filesystem;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    /// A partition as the plan's validation makes it (type GUIDs from the same table; a
    /// root partition mounted at /).
    pub(crate) fn part(name: &str, size: PartSize, kind: PartKind) -> Partition {
        let (guid, mbr) = kind.type_ids();
        let mountpoint = (kind == PartKind::Root).then(|| "/".to_string());
        Partition { name: name.into(), size, type_guid: guid.to_string(), mbr_type: mbr, bootable: false, fs: Filesystem::None, mountpoint, options: "defaults".into(), kind }
    }

    fn layout(table: TableType, parts: Vec<Partition>) -> Layout {
        Layout { table, partitions: parts, origin: crate::plan::LayoutOrigin::Partitions, encrypted: Vec::new(), volume_group: None, raid: Vec::new(), subvolumes: Vec::new() }
    }

    #[test]
    fn esp_swap_root_on_gpt() {
        let r = layout(TableType::Gpt, vec![part("esp", PartSize::Bytes(512 * MIB), PartKind::Esp), part("swap", PartSize::Bytes(GIB), PartKind::Swap), part("root", PartSize::Rest, PartKind::Root)]);
        let l = plan(&r, 8 * GIB, 512, Some("t")).unwrap();
        let starts: Vec<u64> = l.parts.iter().map(|p| p.start / MIB).collect();
        assert_eq!(starts, [1, 513, 1537]);
        let root = &l.parts[2];
        assert_eq!(root.start % ALIGN, 0);
        assert_eq!(root.size % ALIGN, 0);
        assert!(root.start + root.size <= 8 * GIB - gpt_tail(512));
        assert!(8 * GIB - gpt_tail(512) - (root.start + root.size) < ALIGN);
        assert_eq!(root.type_guid.to_string(), "4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
    }

    #[test]
    fn name_based_uuids_are_uuids_v5() {
        for (ns, name) in [(Uuid::NAMESPACE_OID, &b"anemos layout seed x"[..]), (Uuid::NAMESPACE_DNS, b"example.invalid"), (Uuid::nil(), b"")] {
            assert_eq!(uuid_v5(&ns, name), Uuid::new_v5(&ns, name));
        }
    }

    #[test]
    fn seeds_make_guids_reproducible() {
        let r = layout(TableType::Gpt, vec![part("root", PartSize::Rest, PartKind::Root)]);
        let a = plan(&r, GIB, 512, Some("test")).unwrap();
        assert_eq!(a, plan(&r, GIB, 512, Some("test")).unwrap());
        assert_ne!(plan(&r, GIB, 512, Some("other")).unwrap().disk_guid, a.disk_guid);
        assert_ne!(plan(&r, GIB, 512, None).unwrap().disk_guid, plan(&r, GIB, 512, None).unwrap().disk_guid);
    }

    #[test]
    fn percent_of_the_disk() {
        let r = layout(TableType::Gpt, vec![part("a", PartSize::Percent(25), PartKind::Linux), part("b", PartSize::Rest, PartKind::Root)]);
        let l = plan(&r, 8 * GIB, 512, None).unwrap();
        assert_eq!(l.parts[0].size, 2 * GIB);
    }

    #[test]
    fn btrfs_too_small_on_this_disk_is_found_before_the_wipe() {
        let mut root = part("root", PartSize::Rest, PartKind::Root);
        root.fs = crate::plan::Filesystem::Btrfs;
        let mut r = layout(TableType::Gpt, vec![part("esp", PartSize::Bytes(64 << 20), PartKind::Esp), root]);
        assert!(plan(&r, 200 << 20, 512, None).is_ok());
        let err = plan(&r, 180 << 20, 512, None).unwrap_err().to_string();
        assert!(err.contains("partition \"root\" would be 114 MiB on this disk, too small for btrfs"), "{err}");
        r.encrypted = vec![crate::plan::Encrypted { partition: "root".into(), secret: "k".into(), unlock: crate::plan::Unlock::Prompt }];
        let err = plan(&r, 200 << 20, 512, None).unwrap_err().to_string();
        assert!(err.contains("partition \"root\" would be") && err.contains("too small for btrfs (at least 128 MiB)"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let r = layout(
            TableType::Gpt,
            vec![
                part("a", PartSize::Rest, PartKind::Root),
                part("b", PartSize::Rest, PartKind::Linux),
                part("c", PartSize::Bytes(0), PartKind::Linux),
                part("d", PartSize::Percent(70), PartKind::Linux),
                part("e", PartSize::Percent(40), PartKind::Linux),
            ],
        );
        let err = plan(&r, 4 * GIB, 512, None).unwrap_err().to_string();
        assert!(err.contains("only one partition can take the rest"), "{err}");
        assert!(err.contains("\"c\" has size zero"), "{err}");
        assert!(err.contains("110 %"), "{err}");
    }

    #[test]
    fn layout_larger_than_disk() {
        let r = layout(TableType::Gpt, vec![part("big", PartSize::Bytes(20 * GIB), PartKind::Root)]);
        let err = plan(&r, 8 * GIB, 512, None).unwrap_err().to_string();
        assert!(err.contains("need 20 GiB") && err.contains("8 GiB in all"), "{err}");
    }

    #[test]
    fn msdos_limits() {
        let r = layout(TableType::Msdos, vec![part("bios", PartSize::Bytes(MIB), PartKind::BiosBoot), part("root", PartSize::Rest, PartKind::Root)]);
        assert!(plan(&r, 8 * GIB, 512, None).unwrap_err().to_string().contains("cannot be on an msdos table"));
        let five = (0..5).map(|i| part(&format!("p{i}"), PartSize::Bytes(MIB), if i == 0 { PartKind::Root } else { PartKind::Linux })).collect();
        assert!(plan(&layout(TableType::Msdos, five), 8 * GIB, 512, None).unwrap_err().to_string().contains("4 primary"));
        // A 3 TiB disk: an msdos table stops at 2 TiB.
        let l = plan(&layout(TableType::Msdos, vec![part("root", PartSize::Rest, PartKind::Root)]), 3 << 40, 512, None).unwrap();
        assert!(l.parts[0].start + l.parts[0].size <= MBR_LIMIT_SECTORS * 512);
    }
}
