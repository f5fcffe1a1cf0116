//! Partition layouts: what the plan asks for (sizes in bytes, percent or "rest"; kinds of
//! partition) turned into exact, aligned, validated positions for one disk — computed and
//! shown before anything is written.

use std::fmt;

use anyhow::{bail, Result};
use uuid::Uuid;

use super::human_size;

/// Every partition starts on a 1 MiB boundary, like every modern partitioner.
pub const ALIGN: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Gpt,
    #[serde(alias = "msdos")]
    Mbr,
}

/// A requested size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Bytes(u64),
    /// Percent of the disk's usable space.
    Percent(u32),
    /// What is left after every other partition (at most one).
    Rest,
}

/// What a partition is for; decides its GPT type GUID and MBR type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    Esp,
    BiosBoot,
    /// Linux root (x86-64), per the Discoverable Partitions Specification.
    Root,
    Swap,
    /// Generic Linux data.
    Linux,
    Home,
    Srv,
    /// An explicit GPT type GUID.
    Guid(Uuid),
}

impl PartKind {
    pub fn gpt_type(&self) -> Uuid {
        let s = match self {
            PartKind::Esp => "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            PartKind::BiosBoot => "21686148-6449-6e6f-744e-656564454649",
            PartKind::Root => "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
            PartKind::Swap => "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
            PartKind::Linux => "0fc63daf-8483-4772-8e79-3d69d8477de4",
            PartKind::Home => "933ac7e1-2eb4-4f13-b844-0e14e2aef915",
            PartKind::Srv => "3b8f8425-20e0-4f3b-907f-1a25a76f98e8",
            PartKind::Guid(g) => return *g,
        };
        Uuid::parse_str(s).unwrap_or_default()
    }

    /// The MBR system id, or `None` where MBR has no such partition.
    pub fn mbr_type(&self) -> Option<u8> {
        match self {
            PartKind::Esp => Some(0xef),
            PartKind::Swap => Some(0x82),
            PartKind::Root | PartKind::Linux | PartKind::Home | PartKind::Srv => Some(0x83),
            PartKind::BiosBoot | PartKind::Guid(_) => None,
        }
    }
}

impl fmt::Display for PartKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartKind::Esp => write!(f, "esp"),
            PartKind::BiosBoot => write!(f, "bios-boot"),
            PartKind::Root => write!(f, "root"),
            PartKind::Swap => write!(f, "swap"),
            PartKind::Linux => write!(f, "linux"),
            PartKind::Home => write!(f, "home"),
            PartKind::Srv => write!(f, "srv"),
            PartKind::Guid(g) => write!(f, "{g}"),
        }
    }
}

/// One requested partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartRequest {
    /// GPT partition name (and usually the filesystem label).
    pub name: String,
    pub size: Size,
    pub kind: PartKind,
}

/// A requested layout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayoutRequest {
    pub table: TableKind,
    pub parts: Vec<PartRequest>,
    /// Makes every GUID (and the MBR signature) reproducible.
    pub seed: Option<String>,
}

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
}

/// A layout computed for one disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedLayout {
    pub table: TableKind,
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

/// Computes exact positions for `req` on a disk of `disk_size` bytes. Every problem is
/// reported at once.
pub fn plan(req: &LayoutRequest, disk_size: u64, sector: u64) -> Result<PlannedLayout> {
    let mut problems = check_request(req);
    let first = ALIGN;
    let end = match req.table {
        TableKind::Gpt => disk_size.saturating_sub(gpt_tail(sector)),
        TableKind::Mbr => disk_size.min(MBR_LIMIT_SECTORS * sector),
    };
    let end = end / sector * sector;
    if end <= first {
        problems.push(format!("the disk ({}) is too small for a partition table and one aligned partition", human_size(disk_size)));
    }
    let usable = end.saturating_sub(first);
    // Fixed and percent sizes first; "rest" gets what remains.
    let mut sizes: Vec<Option<u64>> = req
        .parts
        .iter()
        .map(|p| match p.size {
            Size::Bytes(b) => Some(b / sector * sector),
            Size::Percent(pc) => Some((usable as u128 * pc as u128 / 100) as u64 / ALIGN * ALIGN),
            Size::Rest => None,
        })
        .collect();
    let fixed: u64 = sizes.iter().flatten().map(|s| align_up(*s)).sum();
    if fixed > usable && !req.parts.is_empty() {
        problems.push(format!(
            "the partitions need {} but the disk has {} usable ({} in all): shrink a partition or choose a bigger disk",
            human_size(fixed),
            human_size(usable),
            human_size(disk_size)
        ));
    }
    if let Some(i) = req.parts.iter().position(|p| p.size == Size::Rest) {
        let rest = usable.saturating_sub(fixed) / ALIGN * ALIGN;
        if rest == 0 && fixed <= usable {
            problems.push(format!("partition {:?} (size rest) would be empty: the others take the whole disk", req.parts[i].name));
        }
        sizes[i] = Some(rest);
    }
    if !problems.is_empty() {
        bail!("the partition layout does not fit:\n  - {}", problems.join("\n  - "));
    }
    let mut parts = Vec::new();
    let mut at = first;
    for (i, (p, size)) in req.parts.iter().zip(sizes).enumerate() {
        let size = size.unwrap_or(0);
        let number = i as u32 + 1;
        parts.push(PlannedPart {
            number,
            name: p.name.clone(),
            kind: p.kind,
            start: at,
            size,
            type_guid: p.kind.gpt_type(),
            part_guid: guid(req.seed.as_deref(), &format!("partition {number} {}", p.name)),
        });
        at = align_up(at + size);
    }
    let disk_guid = guid(req.seed.as_deref(), "disk");
    let mbr_signature = u32::from_le_bytes(disk_guid.as_bytes()[..4].try_into().unwrap_or([1, 2, 3, 4]));
    Ok(PlannedLayout { table: req.table, disk_size, sector_size: sector, disk_guid, mbr_signature, parts })
}

fn check_request(req: &LayoutRequest) -> Vec<String> {
    let mut problems = Vec::new();
    let rests: Vec<&str> = req.parts.iter().filter(|p| p.size == Size::Rest).map(|p| p.name.as_str()).collect();
    if rests.len() > 1 {
        problems.push(format!("only one partition can take the rest of the disk; {} do", rests.join(" and ")));
    }
    let percent: u32 = req.parts.iter().filter_map(|p| if let Size::Percent(x) = p.size { Some(x) } else { None }).sum();
    if percent > 100 {
        problems.push(format!("percentages add up to {percent} %"));
    }
    for p in &req.parts {
        match p.size {
            Size::Bytes(0) | Size::Percent(0) => problems.push(format!("partition {:?} has size zero", p.name)),
            _ => {}
        }
        if req.table == TableKind::Mbr && p.kind.mbr_type().is_none() {
            problems.push(format!("partition {:?} of type {} cannot be on an msdos table: use table=gpt", p.name, p.kind));
        }
        if req.table == TableKind::Gpt && p.name.encode_utf16().count() > 36 {
            problems.push(format!("partition name {:?} is longer than GPT's 36 characters", p.name));
        }
    }
    if req.table == TableKind::Mbr && req.parts.len() > 4 {
        problems.push(format!("{} partitions do not fit an msdos table (4 primary at most): use table=gpt", req.parts.len()));
    }
    if req.parts.is_empty() {
        problems.push("the layout has no partitions".into());
    }
    problems
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// A random GUID, or one derived from `seed` and `what` when a seed is given.
fn guid(seed: Option<&str>, what: &str) -> Uuid {
    match seed {
        Some(seed) => {
            let ns = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("anemos layout seed {seed}").as_bytes());
            Uuid::new_v5(&ns, what.as_bytes())
        }
        None => Uuid::new_v4(),
    }
}

impl fmt::Display for PlannedLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = match self.table {
            TableKind::Gpt => "GPT",
            TableKind::Mbr => "msdos (MBR)",
        };
        writeln!(f, "{table} partition table on {} (disk {}):", human_size(self.disk_size), self.disk_guid)?;
        for p in &self.parts {
            writeln!(
                f,
                "  {:>2}  {:<12} {:<9} {:>10} at {:>10}",
                p.number,
                p.name,
                p.kind.to_string(),
                human_size(p.size),
                human_size(p.start)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn req(table: TableKind, parts: &[(&str, Size, PartKind)]) -> LayoutRequest {
        LayoutRequest {
            table,
            parts: parts.iter().map(|(n, s, k)| PartRequest { name: n.to_string(), size: *s, kind: *k }).collect(),
            seed: Some("test".into()),
        }
    }

    #[test]
    fn esp_swap_root_on_gpt() {
        let r = req(
            TableKind::Gpt,
            &[("esp", Size::Bytes(512 * MIB), PartKind::Esp), ("swap", Size::Bytes(GIB), PartKind::Swap), ("root", Size::Rest, PartKind::Root)],
        );
        let l = plan(&r, 8 * GIB, 512).unwrap();
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
    fn seeds_make_guids_reproducible() {
        let r = req(TableKind::Gpt, &[("root", Size::Rest, PartKind::Root)]);
        let a = plan(&r, GIB, 512).unwrap();
        let b = plan(&r, GIB, 512).unwrap();
        assert_eq!(a, b);
        let mut other = r.clone();
        other.seed = Some("other".into());
        assert_ne!(plan(&other, GIB, 512).unwrap().disk_guid, a.disk_guid);
        let mut random = r;
        random.seed = None;
        assert_ne!(plan(&random, GIB, 512).unwrap().disk_guid, plan(&random, GIB, 512).unwrap().disk_guid);
    }

    #[test]
    fn percent_of_usable_space() {
        let r = req(TableKind::Gpt, &[("a", Size::Percent(50), PartKind::Linux), ("b", Size::Rest, PartKind::Linux)]);
        let l = plan(&r, 10 * GIB, 512).unwrap();
        let diff = l.parts[0].size as i64 - l.parts[1].size as i64;
        assert!(diff.abs() <= ALIGN as i64, "{l:?}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let r = req(
            TableKind::Gpt,
            &[
                ("a", Size::Rest, PartKind::Linux),
                ("b", Size::Rest, PartKind::Linux),
                ("c", Size::Bytes(0), PartKind::Linux),
                ("d", Size::Percent(70), PartKind::Linux),
                ("e", Size::Percent(40), PartKind::Linux),
            ],
        );
        let err = plan(&r, 4 * GIB, 512).unwrap_err().to_string();
        assert!(err.contains("a and b"), "{err}");
        assert!(err.contains("\"c\" has size zero"), "{err}");
        assert!(err.contains("110 %"), "{err}");
    }

    #[test]
    fn layout_larger_than_disk() {
        let r = req(TableKind::Gpt, &[("big", Size::Bytes(20 * GIB), PartKind::Root)]);
        let err = plan(&r, 8 * GIB, 512).unwrap_err().to_string();
        assert!(err.contains("need 20 GiB") && err.contains("8 GiB in all"), "{err}");
    }

    #[test]
    fn msdos_limits() {
        let r = req(TableKind::Mbr, &[("bios", Size::Bytes(MIB), PartKind::BiosBoot), ("root", Size::Rest, PartKind::Root)]);
        assert!(plan(&r, 8 * GIB, 512).unwrap_err().to_string().contains("cannot be on an msdos table"));
        let five: Vec<(&str, Size, PartKind)> = (0..5).map(|_| ("p", Size::Bytes(MIB), PartKind::Linux)).collect();
        assert!(plan(&req(TableKind::Mbr, &five), 8 * GIB, 512).unwrap_err().to_string().contains("4 primary"));
        // A 3 TiB disk: an msdos table stops at 2 TiB.
        let l = plan(&req(TableKind::Mbr, &[("root", Size::Rest, PartKind::Root)]), 3 << 40, 512).unwrap();
        assert!(l.parts[0].start + l.parts[0].size <= MBR_LIMIT_SECTORS * 512);
    }
}
