//! The plan against the real hardware, before anything is written: exactly one target disk,
//! a layout that fits it, every preserved disk or partition present (and its filesystem's
//! UUID known, for fstab), nothing preserved on the target.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{Install, Where};
use crate::disk::{self, layout, Allow, Disk};
use crate::fs::{probe, Target};
use crate::bootloader::{self, Kind};
use crate::plan::{DiskSelector, PartKind, Plan, Preserve, PreserveTarget, TableType};

/// A preserved filesystem that goes into the new fstab.
#[derive(Debug, Clone)]
pub struct Preserved {
    pub device: PathBuf,
    pub uuid: Option<String>,
    pub mountpoint: String,
    pub fstype: String,
    pub options: String,
}

pub fn run(inst: &mut Install) -> Result<()> {
    let Where::Disk { target, uefi } = &inst.place else { return Ok(()) };
    boot_firmware(&inst.plan, *uefi)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let disks = disk::inventory(Path::new("/sys"), &mountinfo)?;
    let selector = target.as_ref().or(inst.plan.disk.as_ref());
    let preserved_disks: Vec<&DiskSelector> = inst
        .plan
        .preserve
        .iter()
        .filter_map(|p| match &p.what {
            PreserveTarget::Disk { disk } => Some(disk),
            _ => None,
        })
        .collect();
    // Outside PID 1 (a test, a dry run) the target may be the running system's disk.
    let allow = Allow { removable: false, in_use: false };
    let chosen = disk::select(&disks, selector, &preserved_disks, allow)?;
    for p in &inst.plan.preserve {
        if let PreserveTarget::Partition { disk: d, .. } = &p.what {
            if disk::matches(Some(d), chosen) {
                bail!("the target {} holds preserved partition {}: it would be wiped; nothing was written", chosen.path.display(), p.what);
            }
        }
    }
    let seed = inst.plan.variables.get("layout_seed").map(String::as_str);
    let planned = layout::plan(&inst.plan.layout, chosen.size, u64::from(chosen.logical_sector), seed)
        .with_context(|| format!("fitting the layout to {} ({})", chosen.path.display(), disk::human_size(chosen.size)))?;
    log::info!("target disk: {}", disk::describe(chosen));
    log::info!("{planned}");
    // An image build (the target named on the command line) may have no preserved disks
    // attached: their fstab lines are then left out, with a warning.
    let image_build = target.is_some();
    let mut preserved = Vec::new();
    for p in &inst.plan.preserve {
        match find_preserved(p, &disks, chosen) {
            Ok(found) => preserved.extend(found),
            Err(e) if image_build => log::warn!("preserved {} is not attached to this image build; its fstab line is left out ({e:#})", p.what),
            Err(e) => return Err(e),
        }
    }
    inst.preserved = preserved;
    for p in &inst.preserved {
        log::info!("preserved: {} ({}) mounted at {}", p.device.display(), p.uuid.as_deref().unwrap_or("no UUID"), p.mountpoint);
    }
    inst.disk = Some((chosen.path.clone(), planned));
    Ok(())
}

/// The boot loader against the firmware this machine booted with: GRUB for BIOS on a GPT
/// disk needs a BIOS boot partition (found here, not after the wipe); systemd-boot on a
/// machine that booted through BIOS is only warned about, as a kexec'd kernel may not see
/// the UEFI it came from.
fn boot_firmware(plan: &Plan, uefi: bool) -> Result<()> {
    let firmware = if uefi { "UEFI" } else { "BIOS" };
    match bootloader::choose(plan.bootloader, &plan.layout, uefi) {
        Some(Kind::GrubBios) if plan.layout.table == TableType::Gpt && !plan.layout.has(PartKind::BiosBoot) => bail!(
            "this machine booted with {firmware} firmware, and GRUB for BIOS on a gpt disk needs a bios-boot partition: add \"bios 1M bios-boot\" to partitions= (or boot the machine with UEFI to use its esp); nothing was written"
        ),
        Some(Kind::SystemdBoot) if !uefi => log::warn!("this machine booted with BIOS firmware (no /sys/firmware/efi), and systemd-boot is UEFI-only: unless the machine boots UEFI next time, use bootloader=grub"),
        _ => {}
    }
    Ok(())
}

/// Resolves one `preserve=` entry to a device; fails if it is missing (a preserved disk that
/// is not there means the plan does not describe this machine).
fn find_preserved(p: &Preserve, disks: &[Disk], target: &Disk) -> Result<Option<Preserved>> {
    let device = match &p.what {
        PreserveTarget::Disk { disk: sel } => {
            let d = disk::select(disks, Some(sel), &[], Allow { removable: true, in_use: true })
                .with_context(|| format!("finding preserved disk {sel}"))?;
            // A whole preserved disk with one partition is mounted by that partition.
            match d.partitions.as_slice() {
                [only] => only.path.clone(),
                _ => d.path.clone(),
            }
        }
        PreserveTarget::Partition { disk: sel, number } => {
            let d = disk::select(disks, Some(sel), &[], Allow { removable: true, in_use: true })
                .with_context(|| format!("finding the disk of preserved partition {}", p.what))?;
            d.partitions.iter().find(|q| q.number == *number).map(|q| q.path.clone()).with_context(|| format!("{} has no partition {number}", d.path.display()))?
        }
        PreserveTarget::PartLabel { label } => by_link("by-partlabel", label, disks, target)?,
        PreserveTarget::Uuid { uuid } => by_link("by-uuid", uuid, disks, target)?,
    };
    let Some(mountpoint) = p.mountpoint.clone() else { return Ok(None) };
    let info = Target::open_read_only(&device).ok().and_then(|t| probe(&t).ok().flatten());
    let fstype = if p.fstype == "auto" { info.as_ref().map(|i| i.kind.name().to_string()).unwrap_or_else(|| "auto".into()) } else { p.fstype.clone() };
    Ok(Some(Preserved { uuid: info.map(|i| i.uuid), device, mountpoint, fstype, options: p.options.clone() }))
}

/// PARTLABEL= and UUID= entries: found by probing every partition not on the target.
fn by_link(kind: &str, value: &str, disks: &[Disk], target: &Disk) -> Result<PathBuf> {
    for d in disks.iter().filter(|d| d.path != target.path) {
        for part in &d.partitions {
            let Ok(t) = Target::open_read_only(&part.path) else { continue };
            let found = match kind {
                "by-uuid" => probe(&t).ok().flatten().is_some_and(|i| i.uuid.eq_ignore_ascii_case(value)),
                _ => crate::disk::partition::gpt_name(&d.path, part.number).is_some_and(|n| n == value),
            };
            if found {
                return Ok(part.path.clone());
            }
        }
    }
    bail!("no partition outside the target disk has {} {value}; nothing was written", if kind == "by-uuid" { "UUID" } else { "PARTLABEL" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Bootloader;

    fn with(kinds: &[PartKind], bootloader: Bootloader) -> Plan {
        let mut p = crate::plan::tests::sample();
        let root = p.layout.partitions[0].clone();
        let extra = kinds.iter().map(|k| crate::plan::Partition { kind: k.clone(), mountpoint: None, ..root.clone() });
        p.layout.partitions.splice(0..0, extra);
        p.bootloader = bootloader;
        p
    }

    #[test]
    fn grub_for_bios_on_gpt_without_bios_boot_is_refused_before_the_wipe() {
        let e = boot_firmware(&with(&[], Bootloader::Grub), false).unwrap_err().to_string();
        assert!(e.contains("BIOS firmware") && e.contains("bios 1M bios-boot") && e.contains("nothing was written"), "{e}");
        assert!(boot_firmware(&with(&[PartKind::Esp], Bootloader::Grub), false).is_err());
        assert!(boot_firmware(&with(&[PartKind::Esp], Bootloader::Grub), true).is_ok());
        assert!(boot_firmware(&with(&[PartKind::BiosBoot], Bootloader::Grub), false).is_ok());
        assert!(boot_firmware(&with(&[PartKind::BiosBoot, PartKind::Esp], Bootloader::Grub), false).is_ok());
        assert!(boot_firmware(&with(&[PartKind::Esp], Bootloader::SystemdBoot), false).is_ok(), "systemd-boot on BIOS only warns");
    }
}
