//! The rules a layout must follow whatever disk it meets: the one list, used by `check`
//! (which places each problem on its IMGBUILD line) and by the installer's layout planner
//! (which adds what only a real disk's size can tell).

use super::types::{Filesystem, Layout, PartKind, PartSize, TableType};

/// A rule the layout breaks, and the partition (by index) or `encrypt=` entry it is
/// about, if one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub partition: Option<usize>,
    pub encrypt: Option<usize>,
    pub message: String,
}

/// The least size of an encrypted partition: the LUKS2 header takes 16 MiB.
pub const ENCRYPTED_MIN: u64 = 32 << 20;

impl Layout {
    /// Every rule this layout breaks, at once.
    pub fn problems(&self) -> Vec<Problem> {
        let parts = &self.partitions;
        let mut out = Vec::new();
        let mut at = |partition: Option<usize>, message: String| out.push(Problem { partition, encrypt: None, message });
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
        out.extend(self.encryption_problems());
        out
    }

    /// The rules of `encrypt=`: each entry names one partition of the layout, once, whose
    /// file system (ext4) goes inside, and which is large enough for the header.
    fn encryption_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, e) in self.encrypted.iter().enumerate() {
            let mut at = |message: String| out.push(Problem { partition: None, encrypt: Some(i), message });
            if self.encrypted[..i].iter().any(|f| f.partition == e.partition) {
                at(format!("partition {:?} is encrypted twice", e.partition));
            }
            let Some(p) = self.partitions.iter().find(|p| p.name == e.partition) else {
                let names: Vec<&str> = self.partitions.iter().map(|p| p.name.as_str()).collect();
                at(format!("there is no partition {:?} to encrypt (partitions: {})", e.partition, names.join(", ")));
                continue;
            };
            if p.fs != Filesystem::Ext4 {
                at(format!("partition {:?} holds {}: only ext4 partitions can be encrypted (the esp and bios-boot never)", p.name, p.fs.name()));
            }
            if matches!(p.size, PartSize::Bytes(b) if b < ENCRYPTED_MIN) {
                at(format!("partition {:?} is too small to encrypt: the LUKS2 header takes 16 MiB, give it at least 32M", p.name));
            }
        }
        out
    }
}
