//! The destructive phase: the planned layout written to the target disk, the partitions of
//! `encrypt=` formatted as LUKS2 and opened, the volume group written and its volumes
//! activated, a filesystem made on every partition that has
//! one (through its own device node, or the opened one, so the kernel's view and ours
//! agree), everything mounted under the new root in dependency order.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Install, Made};
use crate::crypt::{self, Opened};
use crate::disk::partition;
use crate::files::template::secret_value;
use crate::fs::{self, FsInfo, FsKind, FsOptions, Target};
use crate::lvm;
use crate::mount::{mount_all, MountSpec};
use crate::plan::{Encrypted, Filesystem, VolumeGroup};

pub fn run(inst: &mut Install) -> Result<()> {
    let (disk, layout) = inst.disk.clone().context("the check phase did not choose a disk")?;
    let nodes = partition::apply(&disk, &layout)?;
    let mut made = Vec::new();
    for (planned, spec) in layout.parts.iter().zip(&inst.plan().layout.partitions) {
        let node = nodes.get(planned.number as usize - 1).cloned().unwrap_or_else(|| partition::partition_path(&disk, planned.number));
        let encrypted = match inst.plan().layout.encryption(&spec.name) {
            Some(e) => Some(encrypt(inst, &node, e)?),
            None => None,
        };
        let device = encrypted.as_ref().map(|o| o.device.clone()).unwrap_or(node);
        let fs = make_fs(&device, spec.fs, &spec.name, "partition")?;
        made.push(Made { number: planned.number, device, fs, mountpoint: spec.mountpoint.clone(), options: spec.options.clone(), encrypted });
    }
    if let Some(group) = inst.plan().layout.volume_group.clone() {
        made.extend(volumes(inst, &group, &made)?);
    }
    let specs: Vec<MountSpec> = made
        .iter()
        .filter_map(|m| {
            let fs = m.fs.as_ref()?;
            let mp = m.mountpoint.as_ref()?;
            Some(MountSpec { source: m.device.clone(), target: PathBuf::from(mp), fstype: fs.kind.name().to_string(), options: String::new() })
        })
        .collect();
    std::fs::create_dir_all(&inst.root).with_context(|| format!("creating {}", inst.root.display()))?;
    inst.mounts = Some(mount_all(&inst.root, &specs)?);
    inst.made = made;
    Ok(())
}

/// Makes the file system `fs` (if any) on `device`, labelled `name`.
fn make_fs(device: &Path, fs: Filesystem, name: &str, what: &str) -> Result<Option<FsInfo>> {
    let kind = match fs {
        Filesystem::Ext4 => FsKind::Ext4,
        Filesystem::Vfat => FsKind::Vfat,
        Filesystem::Swap => FsKind::Swap,
        Filesystem::None => return Ok(None),
    };
    let target = Target::open(device)?;
    let label = if kind == FsKind::Vfat { name.to_ascii_uppercase() } else { name.to_string() };
    let info = fs::make(kind, &target, &FsOptions { label: Some(label), ..Default::default() }).with_context(|| format!("making {} on {} ({what} {name})", kind.name(), device.display()))?;
    log::info!("{}: {} UUID={} label {}", device.display(), kind.name(), info.uuid, info.label.as_deref().unwrap_or("-"));
    Ok(Some(info))
}

/// The volume group over its partitions (as opened), its volumes active, their file systems.
fn volumes(inst: &mut Install, group: &VolumeGroup, partitions: &[Made]) -> Result<Vec<Made>> {
    let parts = &inst.plan().layout.partitions;
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
        let fs = make_fs(&device, v.fs, &v.name, "logical volume")?;
        made.push(Made { number: 0, device, fs, mountpoint: v.mountpoint.clone(), options: v.options.clone(), encrypted: None });
    }
    Ok(made)
}

/// Writes a LUKS2 header on the partition and opens it; the file system goes inside.
fn encrypt(inst: &Install, partition: &Path, e: &Encrypted) -> Result<Opened> {
    let loaded = crate::kmod::load_running(crypt::MODULES).context("loading the kernel's device-mapper crypt modules")?;
    log::debug!("crypt: {loaded} modules loaded");
    let secrets = inst.payload.secrets()?;
    let value = secrets.get(&e.secret).with_context(|| format!("encrypting partition {}: the payload has no secret {:?} (pack it again)", e.partition, e.secret))?;
    crypt::format_and_open(partition, &e.partition, secret_value(value)).with_context(|| format!("encrypting partition {} ({})", e.partition, partition.display()))
}
