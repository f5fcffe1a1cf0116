//! Which disk is wiped (`disk=`), what is never touched (`preserve=`), and extra fstab lines
//! (`mounts=`). Selectors can only be compared as written here; the install resolves them
//! against the real disks and checks again.

use std::collections::BTreeMap;

use super::Ctx;
use crate::plan::parse::parse_selector;
use crate::plan::*;

/// `disk=`: the disk to wipe, or several (for `raid=`), each a selector. Empty when unset.
pub fn disks(cx: &mut Ctx<'_>) -> Vec<DiskSelector> {
    let Some(text) = cx.get("disk").map(str::to_string) else { return Vec::new() };
    let mut out: Vec<DiskSelector> = Vec::new();
    for word in text.split_whitespace() {
        match parse_selector(word) {
            Ok(s) if out.contains(&s) => cx.error("disk", format!("disk={word}: named twice")),
            Ok(s) => {
                if let Some(w) = kernel_name_warning(&s) {
                    cx.warn("disk", format!("disk={word}: {w}"));
                }
                out.push(s)
            }
            Err(e) => cx.error("disk", format!("disk={word:?}: {e}")),
        }
    }
    out
}

/// `preserve=`: `SELECTOR [MOUNTPOINT [FSTYPE [OPTIONS]]]` per line, where SELECTOR is a disk
/// selector, `SELECTOR#N` (partition N), `PARTLABEL=…` or `UUID=…`.
pub fn preserve(cx: &mut Ctx<'_>, targets: &[DiskSelector]) -> Option<Vec<Preserve>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (offset, line) in cx.lines("preserve") {
        match preserve_line(&line, targets) {
            Ok(p) => {
                if let PreserveTarget::Disk { disk } | PreserveTarget::Partition { disk, .. } = &p.what {
                    if let Some(w) = kernel_name_warning(disk) {
                        cx.warn("preserve", format!("preserve: {line:?}: {w}"));
                    }
                }
                out.push(p)
            }
            Err(e) => {
                cx.error_within("preserve", offset, format!("preserve: {line:?}: {e}"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn preserve_line(line: &str, targets: &[DiskSelector]) -> Result<Preserve, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.len() > 4 {
        return Err("expected SELECTOR [MOUNTPOINT [FSTYPE [OPTIONS]]]".into());
    }
    let what = if let Some(l) = w[0].strip_prefix("PARTLABEL=") {
        PreserveTarget::PartLabel { label: nonblank(l, "PARTLABEL")? }
    } else if let Some(u) = w[0].strip_prefix("UUID=") {
        PreserveTarget::Uuid { uuid: nonblank(u, "UUID")? }
    } else if let Some((disk, n)) = w[0].rsplit_once('#') {
        let number = n.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| format!("partition number {n:?} is not a number from 1"))?;
        PreserveTarget::Partition { disk: parse_selector(disk)?, number }
    } else {
        PreserveTarget::Disk { disk: parse_selector(w[0])? }
    };
    if let PreserveTarget::Disk { disk } | PreserveTarget::Partition { disk, .. } = &what {
        if targets.iter().any(|t| same_disk(t, disk)) {
            return Err("this is a disk= target, which the install wipes; a kept disk must be another one".into());
        }
    }
    let mountpoint = match w.get(1).copied() {
        None | Some("-") => None,
        Some(m) if m.starts_with('/') => Some(m.to_string()),
        Some(m) => return Err(format!("mount point {m:?} is not an absolute path (or -)")),
    };
    Ok(Preserve { what, mountpoint, fstype: w.get(2).unwrap_or(&"auto").to_string(), options: w.get(3).unwrap_or(&"defaults").to_string() })
}

/// A selector that is a kernel name (`/dev/sda`, `/dev/nvme0n1`, `/dev/vdb`): names follow
/// probe order and can change between boots, above all between the old system and the
/// installer `anemos kexec` boots. Not an error: the installer requires the disk the
/// operator confirmed and stops if the names moved; but a deploy then fails instead of
/// going on.
pub fn kernel_name_warning(sel: &DiskSelector) -> Option<String> {
    let DiskSelector::Path(p) = sel else { return None };
    let name = p.strip_prefix("/dev/")?;
    let kernel = ["sd", "vd", "hd", "xvd", "nvme", "mmcblk"].iter().any(|k| name.starts_with(k) && name[k.len()..].chars().next().is_some_and(|c| c.is_ascii_alphanumeric()));
    kernel.then(|| {
        "a kernel name, which can change between boots (for a deploy: between the old system and the installer). anemos kexec records this disk's identity and the installer stops before writing if the names moved; select by serial:, wwn: or /dev/disk/by-id/ to deploy regardless".to_string()
    })
}

fn nonblank(v: &str, what: &str) -> Result<String, String> {
    if v.is_empty() {
        Err(format!("{what}= needs a value"))
    } else {
        Ok(v.to_string())
    }
}

/// Whether two selectors name the same disk as written (`by-id:X` is `/dev/disk/by-id/X`).
fn same_disk(a: &DiskSelector, b: &DiskSelector) -> bool {
    a == b
}

/// `mounts=`: verbatim fstab lines (fstab(5): 4 to 6 fields).
pub fn mounts(cx: &mut Ctx<'_>) -> Option<Vec<FstabEntry>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (offset, line) in cx.lines("mounts") {
        match fstab_line(&line) {
            Ok(e) => out.push(e),
            Err(e) => {
                cx.error_within("mounts", offset, format!("mounts: {line:?}: {e}"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn fstab_line(line: &str) -> Result<FstabEntry, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if !(4..=6).contains(&w.len()) {
        return Err(format!("an fstab line has 4 to 6 fields (spec file vfstype options [freq [passno]]), this one has {}", w.len()));
    }
    if !(w[1].starts_with('/') || w[1] == "none" || w[1] == "swap") {
        return Err(format!("mount point {:?} is not an absolute path (or none/swap)", w[1]));
    }
    let num = |i: usize| -> Result<u32, String> {
        match w.get(i) {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| format!("field {} ({v:?}) is not a number", i + 1)),
        }
    };
    Ok(FstabEntry { spec: w[0].into(), file: w[1].into(), vfstype: w[2].into(), options: w[3].into(), freq: num(4)?, passno: num(5)? })
}

/// Every mount point appears once across partitions, kept disks and extra mounts.
pub fn unique_mountpoints(cx: &mut Ctx<'_>, layout: &Layout, kept: &Option<Vec<Preserve>>, mounts: &Option<Vec<FstabEntry>>) {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut dup = Vec::new();
    let parts = layout.mountpoints().map(|m| (m.to_string(), "partitions"));
    let kept = kept.iter().flatten().filter_map(|p| p.mountpoint.clone()).map(|m| (m, "preserve"));
    let extra = mounts.iter().flatten().filter(|m| m.file.starts_with('/')).map(|m| (m.file.clone(), "mounts"));
    for (mp, var) in parts.chain(kept).chain(extra) {
        if let Some(first) = seen.get(&mp) {
            dup.push((var, format!("{var}: mount point {mp} is already used by {first}")));
        } else {
            seen.insert(mp, var);
        }
    }
    for (var, msg) in dup {
        cx.error(var, msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_warned_about() {
        for name in ["/dev/sda", "/dev/vdb", "/dev/nvme0n1", "/dev/xvda", "/dev/mmcblk0"] {
            assert!(kernel_name_warning(&parse_selector(name).unwrap()).is_some(), "{name}");
        }
        for name in ["/dev/disk/by-id/ata-X_1", "serial:S1", "wwn:0x5000c500a1b2c3d4", "/dev/md0", "/dev/mapper/x"] {
            assert!(kernel_name_warning(&parse_selector(name).unwrap()).is_none(), "{name}");
        }
    }

    #[test]
    fn selectors() {
        assert_eq!(parse_selector("/dev/vda"), Ok(DiskSelector::Path("/dev/vda".into())));
        assert_eq!(parse_selector("by-id:ata-X"), parse_selector("/dev/disk/by-id/ata-X"));
        assert_eq!(parse_selector("wwn:0x5000C500A"), Ok(DiskSelector::Wwn("0x5000c500a".into())));
        assert_eq!(parse_selector("size:20G"), Ok(DiskSelector::Size(20 << 30)));
        assert!(parse_selector("sda").unwrap_err().contains("allowed"));
        assert!(parse_selector("wwn:0xZZ").is_err());
        assert!(parse_selector("/dev/../etc").is_err());
    }

    #[test]
    fn preserve_lines() {
        let p = preserve_line("serial:HOME1 /home ext4 noatime", &[]).unwrap();
        assert_eq!(p.what, PreserveTarget::Disk { disk: DiskSelector::Serial("HOME1".into()) });
        assert_eq!((p.mountpoint.as_deref(), p.fstype.as_str(), p.options.as_str()), (Some("/home"), "ext4", "noatime"));
        let p = preserve_line("/dev/vdb#2", &[]).unwrap();
        assert_eq!(p.what, PreserveTarget::Partition { disk: DiskSelector::Path("/dev/vdb".into()), number: 2 });
        assert_eq!(p.fstype, "auto");
        let targets = [DiskSelector::Serial("A".into()), DiskSelector::ById("x".into())];
        assert!(preserve_line("/dev/disk/by-id/x /data", &targets).unwrap_err().contains("disk= target"));
        assert!(preserve_line("by-id:x#1", &targets).unwrap_err().contains("disk= target"));
        assert!(preserve_line("PARTLABEL=", &[]).is_err());
    }

    #[test]
    fn fstab() {
        assert_eq!(fstab_line("tmpfs /tmp tmpfs defaults").unwrap().passno, 0);
        assert!(fstab_line("tmpfs /tmp tmpfs").unwrap_err().contains("4 to 6"));
        assert!(fstab_line("a b c d").unwrap_err().contains("absolute"));
        assert!(fstab_line("a /x c d 0 z").unwrap_err().contains("not a number"));
    }
}
