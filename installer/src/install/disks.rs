//! The destructive phase: the planned layout written to every target disk, the partitions
//! of `raid=` made md arrays across the disks, those of `encrypt=` (or their arrays)
//! formatted as LUKS2 and opened, the volume group written and its volumes activated, a
//! filesystem made on every partition that has one (through its own device node, or the
//! array or opened one, so the kernel's view and ours agree; the esp once per disk),
//! everything mounted under the new root in dependency order.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use super::{Install, Made};
use crate::crypt::{self, Opened};
use crate::disk::partition;
use crate::files::template::secret_value;
use crate::fs::{self, FsInfo, FsKind, FsOptions, Target};
use crate::lvm;
use crate::mount::{mount_all, MountSpec};
use crate::plan::{Encrypted, Filesystem, PartKind, VolumeGroup};

pub fn run(inst: &mut Install) -> Result<()> {
    ensure!(!inst.disks.is_empty(), "the check phase did not choose a disk");
    // Per disk, per partition of the layout: its device node.
    let mut nodes: Vec<Vec<PathBuf>> = Vec::new();
    for (disk, layout) in inst.disks.clone() {
        let made = partition::apply(&disk, &layout)?;
        nodes.push(layout.parts.iter().map(|p| made.get(p.number as usize - 1).cloned().unwrap_or_else(|| partition::partition_path(&disk, p.number))).collect());
    }
    let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (mut made, mut subvols) = (Vec::new(), Vec::new());
    let specs = inst.plan().layout.partitions.clone();
    for (i, spec) in specs.iter().enumerate() {
        let members: Vec<PathBuf> = nodes.iter().map(|d| d[i].clone()).collect();
        let node = match inst.plan().layout.raid_of(&spec.name).map(|r| r.level) {
            Some(level) => {
                let array = crate::md::create(&spec.name, &inst.plan().hostname, level, &members, time)?;
                let device = array.device.clone();
                inst.arrays.push(array);
                device
            }
            None => members[0].clone(),
        };
        let encrypted = match inst.plan().layout.encryption(&spec.name) {
            Some(e) => Some(encrypt(inst, &node, e)?),
            None => None,
        };
        let device = encrypted.as_ref().map(|o| o.device.clone()).unwrap_or(node);
        // An esp on a layout over several disks: a copy on each, with the same volume id,
        // so the fstab line finds whichever disk is there.
        let uuid = (spec.kind == PartKind::Esp && members.len() > 1).then(random_uuid).transpose()?;
        let fs = make_fs(&device, spec.fs, &spec.name, "partition", uuid)?;
        if let Some(uuid) = uuid {
            for copy in &members[1..] {
                make_fs(copy, spec.fs, &spec.name, "copy of the esp", Some(uuid))?;
                inst.esp_copies.push(copy.clone());
            }
        }
        // Kept apart until the volume group is made: `made` is one entry per partition,
        // in the layout's order, until then.
        subvols.extend(subvolumes(inst, &spec.name, &device, fs.as_ref())?);
        made.push(Made { number: inst.disks[0].1.parts[i].number, device, fs, mountpoint: spec.mountpoint.clone(), options: spec.options.clone(), encrypted, subvol: None });
    }
    if let Some(group) = inst.plan().layout.volume_group.clone() {
        made.extend(volumes(inst, &group, &made)?);
    }
    made.extend(subvols);
    let specs: Vec<MountSpec> = made
        .iter()
        .filter_map(|m| {
            let fs = m.fs.as_ref()?;
            let mp = m.mountpoint.as_ref()?;
            Some(MountSpec { source: m.device.clone(), target: PathBuf::from(mp), fstype: fs.kind.name().to_string(), options: m.subvol_option().unwrap_or_default() })
        })
        .collect();
    std::fs::create_dir_all(&inst.root).with_context(|| format!("creating {}", inst.root.display()))?;
    inst.mounts = Some(mount_all(&inst.root, &specs)?);
    inst.made = made;
    Ok(())
}

fn random_uuid() -> Result<[u8; 16]> {
    let mut u = [0u8; 16];
    crate::crypt::luks2::random(&mut u)?;
    Ok(u)
}

/// Makes the file system `fs` (if any) on `device`, labelled `name` (with `uuid`, else a
/// random one).
fn make_fs(device: &Path, fs: Filesystem, name: &str, what: &str, uuid: Option<[u8; 16]>) -> Result<Option<FsInfo>> {
    let kind = match fs {
        Filesystem::Ext4 => FsKind::Ext4,
        Filesystem::Btrfs => FsKind::Btrfs,
        Filesystem::Vfat => FsKind::Vfat,
        Filesystem::Swap => FsKind::Swap,
        Filesystem::None => return Ok(None),
    };
    let target = Target::open(device)?;
    let label = if kind == FsKind::Vfat { name.to_ascii_uppercase() } else { name.to_string() };
    let info = fs::make(kind, &target, &FsOptions { label: Some(label), uuid, ..Default::default() }).with_context(|| format!("making {} on {} ({what} {name})", kind.name(), device.display()))?;
    log::info!("{}: {} UUID={} label {}", device.display(), kind.name(), info.uuid, info.label.as_deref().unwrap_or("-"));
    Ok(Some(info))
}

/// The volume group over its partitions (as opened: `partitions` has one entry per
/// partition of the layout, in its order), its volumes active, their file systems.
fn volumes(inst: &mut Install, group: &VolumeGroup, partitions: &[Made]) -> Result<Vec<Made>> {
    let parts = &inst.plan().layout.partitions;
    ensure!(parts.len() == partitions.len(), "volume group {}: {} partitions made for {} in the layout", group.name, partitions.len(), parts.len());
    let members: Vec<PathBuf> = group
        .members
        .iter()
        .map(|m| parts.iter().zip(partitions).find(|(p, _)| &p.name == m).map(|(_, made)| made.device.clone()).with_context(|| format!("volume group {}: no partition {m}", group.name)))
        .collect::<Result<_>>()?;
    let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let created = lvm::create(group, &members, &inst.plan().hostname, time)?;
    inst.volumes = created.volumes.iter().map(|(_, name)| name.clone()).collect();
    let mut made = Vec::new();
    for (v, (device, _)) in group.volumes.iter().zip(created.volumes) {
        let fs = make_fs(&device, v.fs, &v.name, "logical volume", None)?;
        let subvolumes = subvolumes(inst, &v.name, &device, fs.as_ref())?;
        made.push(Made { number: 0, device, fs, mountpoint: v.mountpoint.clone(), options: v.options.clone(), encrypted: None, subvol: None });
        made.extend(subvolumes);
    }
    Ok(made)
}

/// The subvolumes `subvolumes=` puts on the btrfs of partition or volume `name` (just
/// made on `device`), made by the kernel, to be mounted like file systems of their own.
fn subvolumes(inst: &Install, name: &str, device: &Path, fs: Option<&FsInfo>) -> Result<Vec<Made>> {
    let specs: Vec<_> = inst.plan().layout.subvolumes_of(name).cloned().collect();
    let (Some(fs), false) = (fs, specs.is_empty()) else { return Ok(Vec::new()) };
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let scratch = inst.root.with_file_name(format!(".btrfs-top-{name}"));
    fs::btrfs::subvol::create(device, &names, &scratch).with_context(|| format!("making the subvolumes of {name} ({})", device.display()))?;
    let _ = std::fs::remove_dir(&scratch);
    let made = |s: &crate::plan::Subvolume| Made {
        number: 0,
        device: device.to_path_buf(),
        fs: Some(fs.clone()),
        mountpoint: s.mountpoint.clone(),
        options: s.options.clone(),
        encrypted: None,
        subvol: Some(s.name.clone()),
    };
    Ok(specs.iter().map(made).collect())
}

/// Writes a LUKS2 header on the partition and opens it; the file system goes inside.
fn encrypt(inst: &Install, partition: &Path, e: &Encrypted) -> Result<Opened> {
    let loaded = crate::kmod::load_running(crypt::MODULES).context("loading the kernel's device-mapper crypt modules")?;
    log::debug!("crypt: {loaded} modules loaded");
    let secrets = inst.payload.secrets()?;
    let value = secrets.get(&e.secret).with_context(|| format!("encrypting partition {}: the payload has no secret {:?} (pack it again)", e.partition, e.secret))?;
    crypt::format_and_open(partition, &e.partition, secret_value(value)).with_context(|| format!("encrypting partition {} ({})", e.partition, partition.display()))
}
