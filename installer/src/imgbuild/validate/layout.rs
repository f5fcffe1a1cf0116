//! The declarative disk layout: `table=` and `partitions=` (one partition per line,
//! `NAME SIZE TYPE [FS [MOUNTPOINT [OPTIONS]]]`), or makeimg's `format raw SIZE TABLE FS`
//! mapped onto the same model as one root partition spanning the disk.
//!
//! Type GUIDs are those of the UAPI Discoverable Partitions Specification (root is the
//! x86-64 root type) and the UEFI specification (ESP); BIOS boot is GRUB's `bios_grub`.

use super::format::{RawArgs, DEFAULT_RAW};
use super::Ctx;
use crate::imgbuild::diag::{bad_part, not_allowed};
use crate::plan::parse::parse_size;
use crate::plan::*;

use crate::plan::type_guid::ROOT_X86_64 as ROOT_X86_64_GUID;
#[cfg(test)]
use crate::plan::type_guid::{ESP as ESP_GUID, LINUX_DATA as LINUX_DATA_GUID};

const TYPES: &[&str] = &["esp", "bios-boot", "root", "swap", "linux", "home", "srv", "lvm"];
const FILESYSTEMS: &[&str] = &["ext4", "btrfs", "vfat", "swap", "none"];

/// Room a table and 1 MiB alignment take from a raw image (gpt: 1 MiB at the start, the
/// backup header at the end).
const TABLE_OVERHEAD: u64 = 2 << 20;

/// `explicit`: the format was given (IMGBUILD or `--format`), not makeimg's default.
pub fn layout(cx: &mut Ctx<'_>, format: Option<&Format>, raw: Option<RawArgs>, explicit: bool) -> Option<Layout> {
    if cx.get("partitions").is_none() {
        if cx.get("encrypt").is_some() {
            cx.error("encrypt", "encrypt= names partitions of partitions=, which is not set (an esp for systemd-boot, and the partition to encrypt)");
        }
        if cx.get("subvolumes").is_some() {
            cx.error("subvolumes", "subvolumes= names btrfs partitions of partitions=, which is not set");
        }
        if let Some(var) = ["volume_group", "volumes"].into_iter().find(|v| cx.get(v).is_some()) {
            cx.error(var, format!("{var}= needs partitions= with an lvm partition for the volume group"));
        }
        if cx.get("table").is_some() {
            cx.warn("table", "table= only applies together with partitions=; the table comes from format");
        }
        let (args, origin) = match raw {
            Some(r) if explicit => (r, LayoutOrigin::Format),
            _ => (DEFAULT_RAW, LayoutOrigin::Default),
        };
        return Some(legacy(args, origin));
    }
    let table = match cx.get("table").map(str::trim) {
        None | Some("gpt") => TableType::Gpt,
        Some("msdos") => TableType::Msdos,
        Some(t) => {
            let msg = bad_part("table", t, t, "not a partition table type", &["gpt", "msdos"]);
            cx.error("table", msg);
            return None;
        }
    };
    let (parts, ok) = cx.parse_lines("partitions", |line| partition(line, table));
    let (encrypted, encrypt_ok) = cx.parse_lines("encrypt", super::encrypt::entry);
    let (group, group_ok) = super::volumes::group(cx);
    let (raid, raid_ok) = cx.parse_lines("raid", super::raid::entry);
    let (subvolumes, subvolumes_ok) = cx.parse_lines("subvolumes", super::subvolumes::entry);
    // The rules across partitions are checked on the lines that parsed, so one bad line
    // does not hide the other problems.
    let lines = Lines {
        parts: parts.iter().map(|(o, _)| *o).collect(),
        encrypt: encrypted.iter().map(|(o, _)| *o).collect(),
        volumes: group.as_ref().map(|g| g.1.clone()).unwrap_or_default(),
        raid: raid.iter().map(|(o, _)| *o).collect(),
        subvolumes: subvolumes.iter().map(|(o, _)| *o).collect(),
    };
    let layout = Layout {
        table,
        partitions: parts.into_iter().map(|(_, p)| p).collect(),
        origin: LayoutOrigin::Partitions,
        encrypted: encrypted.into_iter().map(|(_, e)| e).collect(),
        volume_group: group.map(|g| g.0),
        raid: raid.into_iter().map(|(_, r)| r).collect(),
        subvolumes: subvolumes.into_iter().map(|(_, s)| s).collect(),
    };
    let consistent = check_layout(cx, &layout, &lines, format, explicit);
    (ok && encrypt_ok && group_ok && raid_ok && subvolumes_ok && consistent).then_some(layout)
}

/// makeimg's single partition: the whole disk, root, bootable on msdos.
fn legacy(args: RawArgs, origin: LayoutOrigin) -> Layout {
    let root = Partition {
        name: "root".into(),
        size: PartSize::Rest,
        kind: PartKind::Root,
        type_guid: ROOT_X86_64_GUID.into(),
        mbr_type: 0x83,
        bootable: args.table == TableType::Msdos,
        fs: args.fs,
        mountpoint: Some("/".into()),
        options: "defaults".into(),
    };
    Layout { table: args.table, partitions: vec![root], origin, encrypted: Vec::new(), volume_group: None, raid: Vec::new(), subvolumes: Vec::new() }
}

/// One line of `partitions=`.
fn partition(line: &str, table: TableType) -> Result<Partition, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.len() < 3 || w.len() > 6 {
        return Err("expected NAME SIZE TYPE [FS [MOUNTPOINT [OPTIONS]]]".into());
    }
    let name = w[0];
    if name.len() > 36 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(format!("name {name:?}: use at most 36 letters, digits, '_', '.', '-' (it is the GPT name and the file system label)"));
    }
    let size = part_size(w[1])?;
    let (kind, type_guid, mbr_type) = part_type(w[2])?;
    if table == TableType::Msdos && matches!(kind, PartKind::BiosBoot | PartKind::Guid(_)) {
        return Err(format!("type {}: only on a gpt table", w[2]));
    }
    let fs = match w.get(3).copied() {
        None => default_fs(&kind),
        Some("ext4") => Filesystem::Ext4,
        Some("btrfs") => Filesystem::Btrfs,
        Some("vfat") => Filesystem::Vfat,
        Some("swap") => Filesystem::Swap,
        Some("none") => Filesystem::None,
        Some(f) => return Err(not_allowed(f, &format!("file system {f:?} is not one anemos makes"), FILESYSTEMS)),
    };
    let mountpoint = match w.get(4).copied() {
        Some(m) => mount_point(m)?,
        None => default_mountpoint(&kind).map(str::to_string),
    };
    let options = w.get(5).map(|s| s.to_string()).unwrap_or_else(|| "defaults".into());
    check_partition(name, &kind, fs, mountpoint.as_deref())?;
    let bootable = table == TableType::Msdos && mountpoint.as_deref() == Some("/");
    Ok(Partition { name: name.into(), size, kind, type_guid, mbr_type, bootable, fs, mountpoint, options })
}

/// A size: bytes with a unit, `N%`, or `rest` (of the disk, or of the volume group).
pub(super) fn part_size(s: &str) -> Result<PartSize, String> {
    Ok(match s {
        "rest" => PartSize::Rest,
        s if s.ends_with('%') => match s[..s.len() - 1].parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => PartSize::Percent(p),
            _ => return Err(format!("size {s:?}: a percentage must be 1% to 100%")),
        },
        s => match parse_size(s, false) {
            Ok(0) => return Err("size 0: a partition needs a size".into()),
            Ok(b) => PartSize::Bytes(b),
            Err(e) => return Err(format!("size {s:?}: {e} (or N%, or rest)")),
        },
    })
}

/// A mount point: an absolute path, or `-` for none.
pub(super) fn mount_point(m: &str) -> Result<Option<String>, String> {
    match m {
        "-" => Ok(None),
        m if m.starts_with('/') => Ok(Some(m.trim_end_matches('/').to_string()).map(|m| if m.is_empty() { "/".into() } else { m })),
        m => Err(format!("mount point {m:?} is not an absolute path (or - for none)")),
    }
}

fn part_type(t: &str) -> Result<(PartKind, String, u8), String> {
    let kind = match t {
        "esp" => PartKind::Esp,
        "bios-boot" => PartKind::BiosBoot,
        "root" => PartKind::Root,
        "swap" => PartKind::Swap,
        "linux" => PartKind::Linux,
        "home" => PartKind::Home,
        "srv" => PartKind::Srv,
        "lvm" => PartKind::Lvm,
        g if is_guid(g) => PartKind::Guid(g.to_ascii_uppercase()),
        other => {
            let mut allowed = TYPES.to_vec();
            allowed.push("a GPT type GUID");
            return Err(not_allowed(other, &format!("type {other:?} is not a partition type"), &allowed));
        }
    };
    let (guid, mbr) = kind.type_ids();
    let guid = guid.to_string();
    Ok((kind, guid, mbr))
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn default_fs(kind: &PartKind) -> Filesystem {
    match kind {
        PartKind::Esp => Filesystem::Vfat,
        PartKind::Swap => Filesystem::Swap,
        PartKind::BiosBoot | PartKind::Lvm | PartKind::Guid(_) => Filesystem::None,
        PartKind::Root | PartKind::Linux | PartKind::Home | PartKind::Srv => Filesystem::Ext4,
    }
}

fn default_mountpoint(kind: &PartKind) -> Option<&'static str> {
    match kind {
        PartKind::Esp => Some("/boot/efi"),
        PartKind::Root => Some("/"),
        PartKind::Home => Some("/home"),
        PartKind::Srv => Some("/srv"),
        PartKind::Swap | PartKind::BiosBoot | PartKind::Linux | PartKind::Lvm | PartKind::Guid(_) => None,
    }
}

/// The rules within one partition: types and file systems that belong together.
fn check_partition(name: &str, kind: &PartKind, fs: Filesystem, mp: Option<&str>) -> Result<(), String> {
    match (kind, fs) {
        (PartKind::Esp, f) if f != Filesystem::Vfat => return Err(format!("an esp must be vfat, not {}", f.name())),
        (PartKind::Swap, f) if f != Filesystem::Swap => return Err(format!("a swap partition must have file system swap, not {}", f.name())),
        (k, Filesystem::Swap) if *k != PartKind::Swap => return Err("file system swap belongs on a partition of type swap".into()),
        (PartKind::BiosBoot, f) if f != Filesystem::None => return Err("a bios-boot partition holds no file system (use none)".into()),
        _ => {}
    }
    if mp.is_some() && matches!(fs, Filesystem::None | Filesystem::Swap) {
        return Err(format!("a partition with file system {} cannot be mounted; use - as the mount point", fs.name()));
    }
    let label_max = match fs {
        Filesystem::Vfat => 11,
        Filesystem::Ext4 => 16,
        _ => 36,
    };
    if name.len() > label_max {
        return Err(format!("name {name:?} is longer than a {} label ({label_max} characters)", fs.name()));
    }
    Ok(())
}

/// Where each entry of a layout was written: the line offsets of its partitions, its
/// `encrypt=` entries, its volumes, arrays and subvolumes.
struct Lines {
    parts: Vec<usize>,
    encrypt: Vec<usize>,
    volumes: Vec<usize>,
    raid: Vec<usize>,
    subvolumes: Vec<usize>,
}

/// The rules across partitions ([`Layout::problems`]), each on its line, and whether the
/// partitions fit the raw image. Reports every problem; true when there was none.
fn check_layout(cx: &mut Ctx<'_>, layout: &Layout, lines: &Lines, format: Option<&Format>, explicit: bool) -> bool {
    let before = cx.diags.errors().count();
    for problem in layout.problems() {
        match problem.at {
            At::Partition(i) => cx.error_within("partitions", lines.parts[i], format!("partitions: {}", problem.message)),
            At::Encrypt(i) => cx.error_within("encrypt", lines.encrypt[i], format!("encrypt: {}", problem.message)),
            At::Volume(i) => cx.error_within("volumes", lines.volumes[i], format!("volumes: {}", problem.message)),
            At::Raid(i) => cx.error_within("raid", lines.raid[i], format!("raid: {}", problem.message)),
            At::Subvolume(i) => cx.error_within("subvolumes", lines.subvolumes[i], format!("subvolumes: {}", problem.message)),
            At::VolumeGroup => cx.error("volume_group", format!("volume_group: {}", problem.message)),
            At::Layout => cx.error("partitions", format!("partitions: {}", problem.message)),
        }
    }
    let parts = &layout.partitions;
    if parts.is_empty() {
        return false;
    }
    let percent: u32 = parts.iter().map(|p| if let PartSize::Percent(n) = p.size { n as u32 } else { 0 }).sum();
    if let Some(Format::Raw { size }) = format {
        let fixed: u64 = parts.iter().map(|p| if let PartSize::Bytes(b) = p.size { b } else { 0 }).sum();
        let pct = size / 100 * percent as u64;
        if fixed + pct + TABLE_OVERHEAD > *size {
            let msg = format!("partitions: {} of fixed sizes and {percent} % do not fit a raw image of {}", crate::units::human_size(fixed), crate::units::human_size(*size));
            // With makeimg's default format the project is likely meant for real disks only:
            // `anemos image` would fail, an install would not.
            // A layout over several disks is never one image: nothing to warn about.
            let several_disks = cx.get("disk").is_some_and(|d| d.split_whitespace().count() > 1);
            if explicit {
                cx.error("format", msg);
            } else if !several_disks {
                cx.warn("partitions", msg + " (the default format; set format=\"raw SIZE\" to build images of this layout)");
            }
        }
    }
    cx.diags.errors().count() == before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_parses_with_defaults() {
        let p = partition("efi 512M esp", TableType::Gpt).unwrap();
        assert_eq!((p.fs, p.mountpoint.as_deref(), p.type_guid.as_str()), (Filesystem::Vfat, Some("/boot/efi"), ESP_GUID));
        let p = partition("root rest root ext4 / noatime", TableType::Msdos).unwrap();
        assert_eq!((p.size, p.bootable, p.mbr_type, p.options.as_str()), (PartSize::Rest, true, 0x83, "noatime"));
        let p = partition("data 10% 0fc63daf-8483-4772-8e79-3d69d8477de4 ext4 /data", TableType::Gpt).unwrap();
        assert_eq!(p.kind, PartKind::Guid(LINUX_DATA_GUID.into()));
    }

    #[test]
    fn wrong_lines_say_why() {
        let e = |l: &str, t| partition(l, t).unwrap_err();
        assert!(e("efi 512M esp ext4", TableType::Gpt).contains("esp must be vfat"));
        assert!(e("sw 1G swap ext4", TableType::Gpt).contains("must have file system swap"));
        assert!(e("bb 1M bios-boot vfat", TableType::Gpt).contains("no file system"));
        assert!(e("bb 1M bios-boot", TableType::Msdos).contains("only on a gpt table"));
        assert!(e("r 0M root", TableType::Gpt).contains("needs a size"));
        assert!(e("r 512 root", TableType::Gpt).contains("add a unit"));
        assert!(e("r 101% root", TableType::Gpt).contains("1% to 100%"));
        assert!(e("r rest rot", TableType::Gpt).contains("did you mean \"root\""));
        assert!(e("r rest root ext4 boot", TableType::Gpt).contains("absolute"));
        assert!(e("r rest root xfs", TableType::Gpt).contains("allowed: ext4, btrfs, vfat, swap, none"));
        assert!(e("averyveryverylongname rest root", TableType::Gpt).contains("ext4 label"));
    }
}
