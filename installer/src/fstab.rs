//! The new system's /etc/fstab: every filesystem by UUID, including preserved disks.

use std::fmt::Write as _;

/// One fstab line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `UUID=…`, `PARTLABEL=…`, or a path.
    pub spec: String,
    /// Mount point, or `none` for swap.
    pub file: String,
    pub vfstype: String,
    pub options: String,
    pub pass: u8,
}

impl Entry {
    /// An entry by UUID with the conventional fsck pass: 1 for `/`, 2 for other
    /// filesystems that have a checker, 0 for swap.
    pub fn by_uuid(uuid: &str, mountpoint: &str, fstype: &str, options: &str) -> Entry {
        let pass = match (fstype, mountpoint) {
            ("swap", _) => 0,
            (_, "/") => 1,
            ("ext2" | "ext3" | "ext4" | "vfat" | "xfs" | "btrfs", _) => 2,
            _ => 0,
        };
        Entry {
            spec: format!("UUID={uuid}"),
            file: if fstype == "swap" { "none".into() } else { mountpoint.to_string() },
            vfstype: fstype.to_string(),
            options: if options.is_empty() { default_options(fstype).to_string() } else { options.to_string() },
            pass,
        }
    }
}

fn default_options(fstype: &str) -> &'static str {
    match fstype {
        "swap" => "sw",
        // The ESP holds boot code: readable by root only, as Debian's installer does it.
        "vfat" => "umask=0077",
        _ => "defaults",
    }
}

/// Renders entries (sorted by mount point depth, so parents come first) plus extra lines
/// given verbatim.
pub fn render(entries: &[Entry], extra: &[String]) -> String {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| (e.file == "none", e.file.matches('/').count() - usize::from(e.file == "/"), e.file.clone()));
    let mut out = String::from("# /etc/fstab: written by anemos. <file system> <mount point> <type> <options> <dump> <pass>\n");
    for e in sorted {
        let _ = writeln!(out, "{}\t{}\t{}\t{}\t0\t{}", e.spec, e.file, e.vfstype, e.options, e.pass);
    }
    for line in extra {
        let _ = writeln!(out, "{line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_parents_first_with_passes() {
        let text = render(
            &[
                Entry::by_uuid("AAAA-BBBB", "/boot/efi", "vfat", ""),
                Entry::by_uuid("swap-uuid", "", "swap", ""),
                Entry::by_uuid("root-uuid", "/", "ext4", ""),
                Entry::by_uuid("home-uuid", "/home", "ext4", "defaults,nodev"),
            ],
            &["tmpfs /tmp tmpfs defaults 0 0".to_string()],
        );
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines[0], "UUID=root-uuid\t/\text4\tdefaults\t0\t1");
        assert_eq!(lines[1], "UUID=home-uuid\t/home\text4\tdefaults,nodev\t0\t2");
        assert_eq!(lines[2], "UUID=AAAA-BBBB\t/boot/efi\tvfat\tumask=0077\t0\t2");
        assert_eq!(lines[3], "UUID=swap-uuid\tnone\tswap\tsw\t0\t0");
        assert_eq!(lines[4], "tmpfs /tmp tmpfs defaults 0 0");
    }
}
