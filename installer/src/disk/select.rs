//! Choosing the target disk: a selector must match exactly one disk, or nothing is written
//! and the whole inventory is shown. Preserved disks, disks in use and removable media are
//! refused unless explicitly allowed.

use std::path::Path;

use anyhow::{bail, Result};

use super::{describe, Disk};
use crate::plan::DiskSelector;

/// Whether `sel` names disk `d`; `None` (nothing named) matches any fixed, writable disk.
pub fn matches(sel: Option<&DiskSelector>, d: &Disk) -> bool {
    match sel {
        Some(DiskSelector::Path(p)) => d.path == Path::new(p) || std::fs::canonicalize(p).is_ok_and(|r| r == d.path),
        Some(DiskSelector::ById(id)) => d.by_id.iter().any(|i| i == id),
        Some(DiskSelector::Serial(s)) => d.serial.as_deref() == Some(s.as_str()),
        Some(DiskSelector::Wwn(w)) => d.wwn.as_deref().is_some_and(|x| same_wwn(x, w)),
        Some(DiskSelector::Size(n)) => (d.size as f64 - *n as f64).abs() <= *n as f64 * 0.01,
        None => !d.removable && !d.read_only && !d.name.starts_with("loop") && !d.name.starts_with("sr"),
    }
}

fn describe_selector(sel: Option<&DiskSelector>) -> String {
    sel.map(|s| s.to_string()).unwrap_or_else(|| "the only fixed disk".into())
}

fn same_wwn(reported: &str, wanted: &str) -> bool {
    let norm = |s: &str| s.trim_start_matches("naa.").trim_start_matches("eui.").trim_start_matches("0x").to_ascii_lowercase();
    norm(reported) == norm(wanted)
}

/// What selection may accept that it normally refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    pub removable: bool,
    pub in_use: bool,
}

/// Picks the one disk `target` names, never a preserved one. The error shows every disk.
pub fn select<'a>(disks: &'a [Disk], target: Option<&DiskSelector>, preserved: &[&DiskSelector], allow: Allow) -> Result<&'a Disk> {
    let matching: Vec<&Disk> = disks.iter().filter(|d| matches(target, d)).collect();
    let target = describe_selector(target);
    let chosen = match matching.as_slice() {
        [one] => *one,
        [] => bail!("no disk matches {target}; nothing was written. Disks found:\n{}", listing(disks)),
        many if target == "the only fixed disk" => bail!(
            "disk= is not set and {} fixed disks exist ({}): set disk= to one of them (by-id, serial or wwn); nothing was written. Disks found:\n{}",
            many.len(),
            many.iter().map(|d| d.path.display().to_string()).collect::<Vec<_>>().join(", "),
            listing(disks)
        ),
        many => bail!(
            "{} disks match {target} ({}); name one exactly (by-id, serial or wwn); nothing was written. Disks found:\n{}",
            many.len(),
            many.iter().map(|d| d.path.display().to_string()).collect::<Vec<_>>().join(", "),
            listing(disks)
        ),
    };
    if let Some(p) = preserved.iter().find(|p| matches(Some(p), chosen)) {
        bail!("{} is the target ({target}) but also preserved ({p}); nothing was written", chosen.path.display());
    }
    if chosen.read_only {
        bail!("{} is read-only; nothing was written", chosen.path.display());
    }
    if chosen.removable && !allow.removable {
        bail!("{} is removable media; refusing to install on it unless removable disks are allowed", chosen.path.display());
    }
    if chosen.in_use() && !allow.in_use {
        let points: Vec<&String> = chosen.mounted.iter().chain(chosen.partitions.iter().flat_map(|p| &p.mounted)).collect();
        bail!("{} has mounted filesystems ({}); refusing to overwrite a disk in use", chosen.path.display(), points.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(chosen)
}

fn listing(disks: &[Disk]) -> String {
    if disks.is_empty() {
        return "  (none)".into();
    }
    disks.iter().map(|d| format!("  {}", describe(d).replace('\n', "\n  "))).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A disk `/dev/NAME` with `serial` (by-id `virtio-SERIAL`), for tests.
    pub(crate) fn disk(name: &str, size: u64, serial: &str) -> Disk {
        Disk {
            name: name.into(),
            path: PathBuf::from(format!("/dev/{name}")),
            dev: "254:0".into(),
            size,
            logical_sector: 512,
            physical_sector: 512,
            model: None,
            serial: Some(serial.into()),
            wwn: Some("naa.5000C500A1B2C3D4".into()),
            by_id: vec![format!("virtio-{serial}")],
            removable: false,
            read_only: false,
            table: None,
            table_id: None,
            signatures: vec![],
            mounted: vec![],
            partitions: vec![],
        }
    }

    #[test]
    fn selectors_match() {
        let d = disk("vda", 20 << 30, "ROOT");
        assert!(matches(Some(&DiskSelector::Path("/dev/vda".into())), &d));
        assert!(matches(Some(&DiskSelector::ById("virtio-ROOT".into())), &d));
        assert!(matches(Some(&DiskSelector::Wwn("0x5000c500a1b2c3d4".into())), &d));
        assert!(matches(Some(&DiskSelector::Size(20 << 30)), &d));
        assert!(!matches(Some(&DiskSelector::Size(22 << 30)), &d));
        assert!(matches(None, &d));
    }

    #[test]
    fn exactly_one_or_nothing() {
        let disks = vec![disk("vda", 8 << 30, "ROOT"), disk("vdb", 8 << 30, "HOME")];
        assert_eq!(select(&disks, Some(&DiskSelector::Serial("ROOT".into())), &[], Allow::default()).unwrap().name, "vda");
        let err = select(&disks, Some(&DiskSelector::Size(8 << 30)), &[], Allow::default()).unwrap_err().to_string();
        assert!(err.contains("2 disks match") && err.contains("/dev/vdb") && err.contains("nothing was written"), "{err}");
        let err = select(&disks, None, &[], Allow::default()).unwrap_err().to_string();
        assert!(err.contains("disk= is not set and 2 fixed disks exist"), "{err}");
        let err = select(&disks, Some(&DiskSelector::Serial("NOPE".into())), &[], Allow::default()).unwrap_err().to_string();
        assert!(err.contains("no disk matches serial:NOPE") && err.contains("/dev/vda 8 GiB"), "{err}");
    }

    #[test]
    fn preserved_removable_and_in_use_are_refused() {
        let mut disks = vec![disk("vda", 8 << 30, "ROOT")];
        let vda = DiskSelector::Path("/dev/vda".into());
        let err = select(&disks, Some(&vda), &[&DiskSelector::Serial("ROOT".into())], Allow::default()).unwrap_err();
        assert!(err.to_string().contains("also preserved"), "{err}");
        disks[0].removable = true;
        assert!(select(&disks, Some(&vda), &[], Allow::default()).unwrap_err().to_string().contains("removable"));
        assert!(select(&disks, Some(&vda), &[], Allow { removable: true, in_use: false }).is_ok());
        disks[0].removable = false;
        disks[0].mounted = vec!["/".into()];
        assert!(select(&disks, Some(&vda), &[], Allow::default()).unwrap_err().to_string().contains("in use"));
        assert!(select(&disks, Some(&vda), &[], Allow { removable: false, in_use: true }).is_ok());
    }
}
