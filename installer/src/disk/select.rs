//! Choosing the target disk: a selector must match exactly one disk, or nothing is written
//! and the whole inventory is shown. Preserved disks, disks in use and removable media are
//! refused unless explicitly allowed.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::{describe, human_size, Disk};

/// How an IMGBUILD names a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selector {
    /// `/dev/vda`
    Path(PathBuf),
    /// `/dev/disk/by-id/NAME` or `by-id:NAME`
    ById(String),
    /// `serial:XYZ`
    Serial(String),
    /// `wwn:0x…`
    Wwn(String),
    /// `size:20G` — within 1 % of that size.
    Size(u64),
    /// Nothing named: the only non-removable disk.
    Only,
}

impl Selector {
    /// Parses the IMGBUILD syntax (see docs/IMGBUILD.5.md).
    pub fn parse(s: &str) -> Result<Selector> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Selector::Only);
        }
        if let Some(id) = s.strip_prefix("/dev/disk/by-id/").or_else(|| s.strip_prefix("by-id:")) {
            return Ok(Selector::ById(id.to_string()));
        }
        if s.starts_with("/dev/") {
            return Ok(Selector::Path(PathBuf::from(s)));
        }
        if let Some(v) = s.strip_prefix("serial:") {
            return Ok(Selector::Serial(v.to_string()));
        }
        if let Some(v) = s.strip_prefix("wwn:") {
            return Ok(Selector::Wwn(v.to_string()));
        }
        if let Some(v) = s.strip_prefix("size:") {
            return Ok(Selector::Size(parse_size(v)?));
        }
        bail!("{s:?} is not a disk selector: use /dev/NAME, /dev/disk/by-id/NAME, by-id:NAME, serial:S, wwn:W or size:N[KMGT]")
    }

    pub fn matches(&self, d: &Disk) -> bool {
        match self {
            Selector::Path(p) => d.path == *p || resolve_dev(p).is_some_and(|r| r == d.path),
            Selector::ById(id) => d.by_id.iter().any(|i| i == id),
            Selector::Serial(s) => d.serial.as_deref() == Some(s.as_str()),
            Selector::Wwn(w) => d.wwn.as_deref().is_some_and(|x| same_wwn(x, w)),
            Selector::Size(n) => (d.size as f64 - *n as f64).abs() <= *n as f64 * 0.01,
            Selector::Only => !d.removable && !d.read_only && !d.name.starts_with("loop") && !d.name.starts_with("sr"),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Path(p) => write!(f, "{}", p.display()),
            Selector::ById(id) => write!(f, "/dev/disk/by-id/{id}"),
            Selector::Serial(s) => write!(f, "serial:{s}"),
            Selector::Wwn(w) => write!(f, "wwn:{w}"),
            Selector::Size(n) => write!(f, "size:{}", human_size(*n)),
            Selector::Only => write!(f, "the only fixed disk"),
        }
    }
}

/// A symlink such as /dev/disk/by-path/… resolved (absent in the initramfs; harmless).
fn resolve_dev(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

fn same_wwn(reported: &str, wanted: &str) -> bool {
    let norm = |s: &str| s.trim_start_matches("naa.").trim_start_matches("eui.").trim_start_matches("0x").to_ascii_lowercase();
    norm(reported) == norm(wanted)
}

/// `512M`, `8G`, `1T`, `4096K`, or plain bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        Some((i, 'T' | 't')) => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    let value: f64 = num.parse().map_err(|_| anyhow::anyhow!("{s:?} is not a size (use e.g. 512M, 8G, 1.5T)"))?;
    if !(value.is_finite() && value >= 0.0) {
        bail!("{s:?} is not a size");
    }
    Ok((value * mult as f64) as u64)
}

/// What selection may accept that it normally refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    pub removable: bool,
    pub in_use: bool,
}

/// Picks the one disk `target` names, never a preserved one. The error shows every disk.
pub fn select<'a>(disks: &'a [Disk], target: &Selector, preserved: &[Selector], allow: Allow) -> Result<&'a Disk> {
    let matching: Vec<&Disk> = disks.iter().filter(|d| target.matches(d)).collect();
    let chosen = match matching.as_slice() {
        [one] => *one,
        [] => bail!("no disk matches {target}; nothing was written. Disks found:\n{}", listing(disks)),
        many => bail!(
            "{} disks match {target} ({}); name one exactly (by-id, serial or wwn); nothing was written. Disks found:\n{}",
            many.len(),
            many.iter().map(|d| d.path.display().to_string()).collect::<Vec<_>>().join(", "),
            listing(disks)
        ),
    };
    if let Some(p) = preserved.iter().find(|p| p.matches(chosen)) {
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
        bail!(
            "{} has mounted filesystems ({}); refusing to overwrite a disk in use",
            chosen.path.display(),
            points.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
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
mod tests {
    use super::*;

    fn disk(name: &str, size: u64, serial: &str) -> Disk {
        Disk {
            name: name.into(),
            path: PathBuf::from(format!("/dev/{name}")),
            dev: "254:0".into(),
            size,
            logical_sector: 512,
            physical_sector: 512,
            model: None,
            serial: Some(serial.into()),
            wwn: None,
            by_id: vec![format!("virtio-{serial}")],
            removable: false,
            read_only: false,
            table: None,
            signatures: vec![],
            mounted: vec![],
            partitions: vec![],
        }
    }

    #[test]
    fn selectors_parse() {
        assert_eq!(Selector::parse("/dev/vda").unwrap(), Selector::Path("/dev/vda".into()));
        assert_eq!(Selector::parse("/dev/disk/by-id/virtio-ROOT").unwrap(), Selector::ById("virtio-ROOT".into()));
        assert_eq!(Selector::parse("by-id:virtio-ROOT").unwrap(), Selector::ById("virtio-ROOT".into()));
        assert_eq!(Selector::parse("size:20G").unwrap(), Selector::Size(20 << 30));
        assert_eq!(Selector::parse("").unwrap(), Selector::Only);
        assert!(Selector::parse("sda").is_err());
        assert!(Selector::parse("size:big").is_err());
    }

    #[test]
    fn exactly_one_or_nothing() {
        let disks = vec![disk("vda", 8 << 30, "ROOT"), disk("vdb", 8 << 30, "HOME")];
        assert_eq!(select(&disks, &Selector::Serial("ROOT".into()), &[], Allow::default()).unwrap().name, "vda");
        let err = select(&disks, &Selector::Size(8 << 30), &[], Allow::default()).unwrap_err().to_string();
        assert!(err.contains("2 disks match") && err.contains("/dev/vdb") && err.contains("nothing was written"), "{err}");
        let err = select(&disks, &Selector::Only, &[], Allow::default()).unwrap_err().to_string();
        assert!(err.contains("2 disks match"), "{err}");
        let err = select(&disks, &Selector::Serial("NOPE".into()), &[], Allow::default()).unwrap_err().to_string();
        assert!(err.contains("no disk matches serial:NOPE") && err.contains("/dev/vda 8 GiB"), "{err}");
    }

    #[test]
    fn preserved_removable_and_in_use_are_refused() {
        let mut disks = vec![disk("vda", 8 << 30, "ROOT")];
        let err = select(&disks, &Selector::Path("/dev/vda".into()), &[Selector::Serial("ROOT".into())], Allow::default()).unwrap_err();
        assert!(err.to_string().contains("also preserved"), "{err}");
        disks[0].removable = true;
        assert!(select(&disks, &Selector::Path("/dev/vda".into()), &[], Allow::default()).unwrap_err().to_string().contains("removable"));
        assert!(select(&disks, &Selector::Path("/dev/vda".into()), &[], Allow { removable: true, in_use: false }).is_ok());
        disks[0].removable = false;
        disks[0].mounted = vec!["/".into()];
        assert!(select(&disks, &Selector::Path("/dev/vda".into()), &[], Allow::default()).unwrap_err().to_string().contains("in use"));
    }
}
