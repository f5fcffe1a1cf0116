//! `subvolumes=`: btrfs subvolumes, one per line, `FILESYSTEM NAME [MOUNTPOINT [OPTIONS]]`
//! with FILESYSTEM the name of a btrfs partition or logical volume. The rules across the
//! layout are [`Layout::problems`]; here is the line's syntax.

use super::layout::mount_point;
use crate::plan::*;

/// One line of `subvolumes=`.
pub fn entry(line: &str) -> Result<Subvolume, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if !(2..=4).contains(&w.len()) {
        return Err("expected FILESYSTEM NAME [MOUNTPOINT [OPTIONS]] (e.g. \"root @home /home\")".into());
    }
    let mountpoint = w.get(2).map(|m| mount_point(m)).transpose()?.flatten();
    let options = w.get(3).map(|s| s.to_string()).unwrap_or_else(|| "defaults".into());
    if options.split(',').any(|o| o.starts_with("subvol=") || o.starts_with("subvolid=")) {
        return Err(format!("options {options:?}: subvol= is the subvolume's own (the NAME field)"));
    }
    Ok(Subvolume { filesystem: w[0].to_string(), name: w[1].to_string(), mountpoint, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_defaults() {
        let s = entry("root @").unwrap();
        assert_eq!((s.filesystem.as_str(), s.name.as_str(), s.mountpoint, s.options.as_str()), ("root", "@", None, "defaults"));
        let s = entry("root @log /var/log/ noatime,compress=zstd").unwrap();
        assert_eq!((s.mountpoint.as_deref(), s.options.as_str()), (Some("/var/log"), "noatime,compress=zstd"));
        assert!(entry("root").unwrap_err().contains("expected FILESYSTEM NAME"));
        assert!(entry("root @ var").unwrap_err().contains("absolute"));
        assert!(entry("root @ / subvol=@x").unwrap_err().contains("the NAME field"));
    }
}
