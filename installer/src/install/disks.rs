//! The destructive phase: the planned layout written to the target disk, a filesystem made
//! on every partition that has one (through its own device node, so the kernel's view and
//! ours agree), everything mounted under the new root in dependency order.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{Install, Made};
use crate::disk::partition;
use crate::fs::{self, FsKind, FsOptions, Target};
use crate::mount::{mount_all, MountSpec};
use crate::plan::Filesystem;

pub fn run(inst: &mut Install) -> Result<()> {
    let (disk, layout) = inst.disk.clone().context("the check phase did not choose a disk")?;
    let nodes = partition::apply(&disk, &layout)?;
    let mut made = Vec::new();
    for (planned, spec) in layout.parts.iter().zip(&inst.plan().layout.partitions) {
        let device = nodes.get(planned.number as usize - 1).cloned().unwrap_or_else(|| partition::partition_path(&disk, planned.number));
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
        made.push(Made { number: planned.number, device, fs, mountpoint: spec.mountpoint.clone(), options: spec.options.clone() });
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
