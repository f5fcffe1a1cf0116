//! The rules a layout must follow whatever disk it meets: the one list, used by `check`
//! (which places each problem on its IMGBUILD line) and by the installer's layout planner
//! (which adds what only a real disk's size can tell).

use super::types::{Layout, PartKind, PartSize, TableType};

/// A rule the layout breaks, and the partition (by index) it is about, if one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub partition: Option<usize>,
    pub message: String,
}

impl Layout {
    /// Every rule this layout breaks, at once.
    pub fn problems(&self) -> Vec<Problem> {
        let parts = &self.partitions;
        let mut out = Vec::new();
        let mut at = |partition: Option<usize>, message: String| out.push(Problem { partition, message });
        if parts.is_empty() {
            at(None, "the layout has no partitions".into());
            return out;
        }
        for (i, p) in parts.iter().enumerate() {
            if parts[..i].iter().any(|q| q.name == p.name) {
                at(Some(i), format!("the name {:?} is used twice", p.name));
            }
            if matches!(p.size, PartSize::Bytes(0) | PartSize::Percent(0)) {
                at(Some(i), format!("partition {:?} has size zero", p.name));
            }
            if self.table == TableType::Msdos && (p.mbr_type == 0 || matches!(p.kind, PartKind::BiosBoot | PartKind::Guid(_))) {
                at(Some(i), format!("partition {:?} of type {} cannot be on an msdos table: use table=gpt", p.name, p.kind));
            }
            if self.table == TableType::Gpt && p.name.encode_utf16().count() > 36 {
                at(Some(i), format!("partition name {:?} is longer than GPT's 36 characters", p.name));
            }
        }
        let rests: Vec<usize> = parts.iter().enumerate().filter(|(_, p)| p.size == PartSize::Rest).map(|(i, _)| i).collect();
        if rests.len() > 1 {
            at(Some(rests[1]), "only one partition can take the rest of the disk".into());
        }
        let percent: u32 = parts.iter().map(|p| if let PartSize::Percent(n) = p.size { n as u32 } else { 0 }).sum();
        if percent > 100 {
            at(None, format!("the percentages add up to {percent} %, more than the disk"));
        }
        for kind in [PartKind::Esp, PartKind::BiosBoot] {
            if parts.iter().filter(|p| p.kind == kind).count() > 1 {
                at(None, format!("more than one {kind} partition"));
            }
        }
        if self.table == TableType::Msdos && parts.len() > 4 {
            at(None, format!("an msdos table holds 4 primary partitions, this layout has {}; use table=gpt", parts.len()));
        }
        match parts.iter().filter(|p| p.mountpoint.as_deref() == Some("/")).count() {
            0 => at(None, "no partition is mounted at / (add one, e.g. \"root rest root ext4 /\")".into()),
            1 => {}
            _ => at(None, "more than one partition is mounted at /".into()),
        }
        out
    }
}
