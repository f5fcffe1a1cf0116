//! `raid=`: partitions made md arrays across the disks of `disk=`, one per line,
//! `PARTITION LEVEL` with LEVEL `raid1` (or `1`), `raid0`, `raid10`. The rules across the
//! layout are [`Layout::problems`], what the rest of the plan must allow is `storage.rs`;
//! here is the line's syntax.

use crate::imgbuild::diag::not_allowed;
use crate::plan::*;

/// One line of `raid=`.
pub fn entry(line: &str) -> Result<Raid, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.len() != 2 {
        return Err("expected PARTITION LEVEL (raid1, raid0 or raid10)".into());
    }
    let level = match w[1].strip_prefix("raid").unwrap_or(w[1]) {
        "1" => RaidLevel::Raid1,
        "0" => RaidLevel::Raid0,
        "10" => RaidLevel::Raid10,
        l => return Err(not_allowed(l, &format!("{:?} is not a RAID level anemos makes", w[1]), &["raid1", "raid0", "raid10"])),
    };
    Ok(Raid { partition: w[0].to_string(), level })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_with_or_without_their_prefix() {
        assert_eq!(entry("root raid1").unwrap(), Raid { partition: "root".into(), level: RaidLevel::Raid1 });
        assert_eq!(entry("srv 10").unwrap().level, RaidLevel::Raid10);
        assert!(entry("root").unwrap_err().contains("expected PARTITION LEVEL"));
        assert!(entry("root raid5").unwrap_err().contains("not a RAID level"));
    }
}
