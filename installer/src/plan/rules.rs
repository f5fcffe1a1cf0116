//! The rules a layout must follow whatever disk it meets: the one list, used by `check`
//! (which places each problem on its IMGBUILD line) and by the installer's layout planner
//! (which adds what only a real disk's size can tell).

use super::types::{Filesystem, Layout, PartKind, PartSize, TableType};

/// A rule the layout breaks, and what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: At,
    pub message: String,
}

/// What a [`Problem`] is about: the layout as a whole, or one entry (by index) of
/// `partitions=`, `encrypt=`, `volumes=`, `raid=`, `subvolumes=`, or the `volume_group=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Layout,
    Partition(usize),
    Encrypt(usize),
    VolumeGroup,
    Volume(usize),
    Raid(usize),
    Subvolume(usize),
}

/// The least size of an encrypted partition: the LUKS2 header takes 16 MiB.
pub const ENCRYPTED_MIN: u64 = 32 << 20;

impl Layout {
    /// Every rule this layout breaks, at once.
    pub fn problems(&self) -> Vec<Problem> {
        let parts = &self.partitions;
        let mut out = Vec::new();
        let mut at = |partition: Option<usize>, message: String| out.push(Problem { at: partition.map(At::Partition).unwrap_or(At::Layout), message });
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
        match self.mountpoints().filter(|m| *m == "/").count() {
            0 => at(None, "no partition is mounted at / (add one, e.g. \"root rest root ext4 /\")".into()),
            1 => {}
            _ => at(None, "more than one partition, volume or subvolume is mounted at /".into()),
        }
        out.extend(self.encryption_problems());
        out.extend(self.volume_problems());
        out.extend(self.raid_problems());
        out.extend(self.subvolume_problems());
        out
    }

    /// The rules of `raid=`: each entry names one partition, once; the esp and bios-boot
    /// are never members (each disk gets its own copy, so the firmware finds one on either
    /// disk); with arrays, every other partition is one (it is on every disk).
    fn raid_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, r) in self.raid.iter().enumerate() {
            let mut at = |message: String| out.push(Problem { at: At::Raid(i), message });
            if self.raid[..i].iter().any(|q| q.partition == r.partition) {
                at(format!("partition {:?} is named twice", r.partition));
            }
            match self.partitions.iter().find(|p| p.name == r.partition) {
                None => at(format!("there is no partition {:?} to make an array of", r.partition)),
                Some(p) if matches!(p.kind, PartKind::Esp | PartKind::BiosBoot) => {
                    at(format!("partition {:?} is the {}: it is never an array member; every disk gets its own copy, so either disk boots", p.name, p.kind))
                }
                Some(_) => {}
            }
        }
        if !self.raid.is_empty() {
            for p in self.partitions.iter().filter(|p| !matches!(p.kind, PartKind::Esp | PartKind::BiosBoot) && self.raid_of(&p.name).is_none()) {
                out.push(Problem { at: At::Layout, message: format!("partition {:?} is on every disk but in no array: add \"{} raid1\" (or raid0, raid10) to raid=", p.name, p.name) });
            }
        }
        out
    }

    /// The mount points of the partitions, the logical volumes and the subvolumes.
    pub fn mountpoints(&self) -> impl Iterator<Item = &str> {
        let volumes = self.volume_group.iter().flat_map(|g| &g.volumes);
        let subvolumes = self.subvolumes.iter().filter_map(|s| s.mountpoint.as_deref());
        self.partitions.iter().filter_map(|p| p.mountpoint.as_deref()).chain(volumes.filter_map(|v| v.mountpoint.as_deref())).chain(subvolumes)
    }

    /// The rules of `volume_group=` and `volumes=`: the members are `lvm` partitions, each
    /// once, and every `lvm` partition is one; names LVM accepts; sizes that can add up.
    fn volume_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let lvm_parts: Vec<&str> = self.partitions.iter().filter(|p| p.kind == PartKind::Lvm).map(|p| p.name.as_str()).collect();
        let Some(g) = &self.volume_group else {
            if let Some(p) = lvm_parts.first() {
                out.push(Problem { at: At::Layout, message: format!("partition {p:?} is of type lvm but there is no volume_group=\"NAME {p}\" to put it in") });
            }
            return out;
        };
        let mut at = |at: At, message: String| out.push(Problem { at, message });
        if let Some(bad) = lvm_name_problem(&g.name) {
            at(At::VolumeGroup, format!("volume group name {:?}: {bad}", g.name));
        }
        if g.members.is_empty() {
            at(At::VolumeGroup, format!("volume group {:?} has no partitions (volume_group=\"{} PARTITION…\")", g.name, g.name));
        }
        for (i, m) in g.members.iter().enumerate() {
            match self.partitions.iter().find(|p| &p.name == m) {
                None => at(At::VolumeGroup, format!("there is no partition {m:?} for volume group {:?}", g.name)),
                Some(p) if p.kind != PartKind::Lvm || p.fs != Filesystem::None => {
                    at(At::VolumeGroup, format!("partition {m:?} must be of type lvm with file system none to be in volume group {:?}", g.name))
                }
                Some(_) if g.members[..i].contains(m) => at(At::VolumeGroup, format!("partition {m:?} is named twice in volume group {:?}", g.name)),
                Some(_) => {}
            }
        }
        for p in lvm_parts.iter().filter(|p| !g.members.iter().any(|m| m == *p)) {
            at(At::VolumeGroup, format!("partition {p:?} is of type lvm but not in volume group {:?}", g.name));
        }
        if g.volumes.is_empty() {
            at(At::VolumeGroup, format!("volume group {:?} has no volumes (volumes=\"NAME SIZE [FS [MOUNTPOINT]]\")", g.name));
        }
        for (i, v) in g.volumes.iter().enumerate() {
            if let Some(bad) = lvm_name_problem(&v.name) {
                at(At::Volume(i), format!("volume name {:?}: {bad}", v.name));
            }
            if g.volumes[..i].iter().any(|w| w.name == v.name) {
                at(At::Volume(i), format!("the volume name {:?} is used twice", v.name));
            }
            if v.fs == Filesystem::Ext4 && v.name.len() > 16 {
                at(At::Volume(i), format!("volume name {:?} is longer than an ext4 label (16 characters)", v.name));
            }
            if g.volumes[..i].iter().any(|w| w.size == PartSize::Rest) && v.size == PartSize::Rest {
                at(At::Volume(i), "only one volume can take the rest of the volume group".into());
            }
        }
        let percent: u32 = g.volumes.iter().map(|v| if let PartSize::Percent(n) = v.size { n as u32 } else { 0 }).sum();
        if percent > 100 {
            at(At::VolumeGroup, format!("the volumes' percentages add up to {percent} %, more than the volume group"));
        }
        out
    }

    /// The rules of `encrypt=`: each entry names one partition of the layout, once, whose
    /// file system (ext4, btrfs) goes inside, and which is large enough for the header.
    fn encryption_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, e) in self.encrypted.iter().enumerate() {
            let mut at = |message: String| out.push(Problem { at: At::Encrypt(i), message });
            if self.encrypted[..i].iter().any(|f| f.partition == e.partition) {
                at(format!("partition {:?} is encrypted twice", e.partition));
            }
            let Some(p) = self.partitions.iter().find(|p| p.name == e.partition) else {
                let names: Vec<&str> = self.partitions.iter().map(|p| p.name.as_str()).collect();
                at(format!("there is no partition {:?} to encrypt (partitions: {})", e.partition, names.join(", ")));
                continue;
            };
            if !matches!(p.fs, Filesystem::Ext4 | Filesystem::Btrfs) && p.kind != PartKind::Lvm {
                at(format!("partition {:?} holds {}: only ext4, btrfs and lvm partitions can be encrypted (the esp and bios-boot never)", p.name, p.fs.name()));
            }
            if matches!(p.size, PartSize::Bytes(b) if b < ENCRYPTED_MIN) {
                at(format!("partition {:?} is too small to encrypt: the LUKS2 header takes 16 MiB, give it at least 32M", p.name));
            }
        }
        out
    }
}

/// Why LVM would refuse a volume group or volume name, if it would.
fn lvm_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 64 {
        Some("use 1 to 64 characters")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c)) || name.starts_with('-') {
        Some("use letters, digits, '+', '_', '.', '-' (not first)")
    } else if name == "." || name == ".." || name.starts_with("snapshot") || name.starts_with("pvmove") {
        Some("LVM reserves this name")
    } else {
        None
    }
}
