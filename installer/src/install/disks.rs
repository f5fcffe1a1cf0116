//! The destructive phase: the planned layout written to the target disk, the partitions of
//! `encrypt=` formatted as LUKS2 and opened, a filesystem made on every partition that has
//! one (through its own device node, or the opened one, so the kernel's view and ours
//! agree), everything mounted under the new root in dependency order.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Install, Made};
use crate::crypt::{self, Opened};
use crate::disk::partition;
use crate::files::template::secret_value;
use crate::fs::{self, FsKind, FsOptions, Target};
use crate::mount::{mount_all, MountSpec};
use crate::plan::{Encrypted, Filesystem};

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
        let kind = match spec.fs {
            Filesystem::Ext4 => Some(FsKind::Ext4),
            Filesystem::Vfat => Some(FsKind::Vfat),
            Filesystem::Swap => Some(FsKind::Swap),
            Filesystem::None => None,
        };
        let fs = match kind {
            Some(kind) => {
                let target = Target::open(&device)?;
                let label = if kind == FsKind::Vfat { spec.name.to_ascii_uppercase() } else { spec.name.clone() };
                let info = fs::make(kind, &target, &FsOptions { label: Some(label), ..Default::default() })
                    .with_context(|| format!("making {} on {} (partition {})", kind.name(), device.display(), spec.name))?;
                log::info!("{}: {} UUID={} label {}", device.display(), kind.name(), info.uuid, info.label.as_deref().unwrap_or("-"));
                Some(info)
            }
            None => None,
        };
        made.push(Made { number: planned.number, device, fs, mountpoint: spec.mountpoint.clone(), options: spec.options.clone(), encrypted });
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

/// Writes a LUKS2 header on the partition and opens it; the file system goes inside.
fn encrypt(inst: &Install, partition: &Path, e: &Encrypted) -> Result<Opened> {
    let loaded = crate::kmod::load_running(crypt::MODULES).context("loading the kernel's device-mapper crypt modules")?;
    log::debug!("crypt: {loaded} modules loaded");
    let secrets = inst.payload.secrets()?;
    let value = secrets.get(&e.secret).with_context(|| format!("encrypting partition {}: the payload has no secret {:?} (pack it again)", e.partition, e.secret))?;
    crypt::format_and_open(partition, &e.partition, secret_value(value)).with_context(|| format!("encrypting partition {} ({})", e.partition, partition.display()))
}
