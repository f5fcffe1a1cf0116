//! The plan against the real hardware, before anything is written: exactly one target disk,
//! a layout that fits it, every preserved disk or partition present (and its filesystem's
//! UUID known, for fstab), nothing preserved on the target.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{Install, Where};
use crate::bootloader::{self, Kind};
use crate::disk::{self, layout, Allow, Disk};
use crate::fs::{probe, Target};
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
    let Where::Disk { target, uefi, confirmed } = &inst.place else { return Ok(()) };
    boot_firmware(inst.plan(), *uefi)?;
    let selector = target.as_ref().or(inst.plan().disk.as_ref());
    if selector.is_none() {
        // "The only fixed disk" must not be chosen while disks are still appearing.
        disk::settle(Path::new("/sys"), SETTLE_QUIET, SETTLE_MAX);
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let disks = disk::inventory(Path::new("/sys"), &mountinfo)?;
    // An image build (the target named on the command line) may have no preserved disks
    // attached: their fstab lines are then left out, with a warning.
    let image_build = target.is_some();
    let resolved = resolve(inst.plan(), &disks, selector, Allow { removable: false, in_use: false }, image_build)?;
    if let Some(c) = confirmed {
        c.check(&disks, resolved.target, &resolved.others)?;
        log::info!("target disk is the one confirmed: {}", c.target.describe());
    }
    let planned = plan_disks(inst.plan(), &resolved.targets())?;
    super::storage_ready::check(inst)?;
    let preserved: Vec<Preserved> = resolved.preserved.iter().filter_map(|l| l.fstab()).collect();
    for p in &preserved {
        log::info!("preserved: {} ({}) mounted at {}", p.device.display(), p.uuid.as_deref().unwrap_or("no UUID"), p.mountpoint);
    }
    inst.preserved = preserved;
    inst.disks = planned;
    Ok(())
}

/// The layout placed on each target disk: the same positions on all (fitted to the
/// smallest, so every array's members are equal), each disk with GUIDs of its own.
fn plan_disks(plan: &Plan, targets: &[&Disk]) -> Result<Vec<(PathBuf, layout::PlannedLayout)>> {
    let smallest = targets.iter().map(|d| d.size).min().unwrap_or(0);
    let sector = targets.first().map(|d| u64::from(d.logical_sector)).unwrap_or(512);
    if let Some(d) = targets.iter().find(|d| u64::from(d.logical_sector) != sector) {
        bail!(
            "{} has {}-byte sectors and {} has {sector}-byte ones: the disks of one layout need the same sector size; nothing was written",
            d.path.display(),
            d.logical_sector,
            targets[0].path.display()
        );
    }
    let seed = plan.variables.get("layout_seed").map(String::as_str);
    let mut out = Vec::new();
    for (i, d) in targets.iter().enumerate() {
        // The first disk keeps the plain seed, so a one-disk layout's GUIDs stay as they were.
        let own_seed = seed.map(|s| if i == 0 { s.to_string() } else { format!("{s} disk {}", i + 1) });
        let planned = layout::plan(&plan.layout, smallest, sector, own_seed.as_deref()).with_context(|| {
            let fitted = if targets.len() > 1 { format!(", fitted to the smallest of the layout's disks, {}", crate::units::human_size(smallest)) } else { String::new() };
            format!("fitting the layout to {} ({}{fitted})", d.path.display(), crate::units::human_size(d.size))
        })?;
        log::info!("target disk: {}", disk::describe(d));
        log::info!("{planned}");
        out.push((d.path.clone(), planned));
    }
    Ok(out)
}

/// With `disk=` unset: how long the set of block devices must stay the same before the
/// only fixed disk is chosen, and the longest wait for that.
const SETTLE_QUIET: std::time::Duration = std::time::Duration::from_secs(3);
const SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The plan's disks on this machine: the ones to wipe and every kept one.
pub struct Resolved<'a> {
    pub target: &'a Disk,
    /// The other disks of a layout over several (`disk=` after its first), in order.
    pub others: Vec<&'a Disk>,
    pub preserved: Vec<Located<'a>>,
}

impl<'a> Resolved<'a> {
    /// Every disk this install wipes, the target first.
    pub fn targets(&self) -> Vec<&'a Disk> {
        std::iter::once(self.target).chain(self.others.iter().copied()).collect()
    }
}

/// A `preserve=` entry found on this machine.
pub struct Located<'a> {
    pub entry: &'a Preserve,
    /// The device to mount (a whole disk's only partition, a partition, or the disk).
    pub device: PathBuf,
    /// The disk that holds it.
    pub disk: &'a Disk,
}

/// Resolves the target (`selector`, else the plan's `disk=`) and every kept disk or
/// partition. A kept entry on the target always stops here, whoever named the target;
/// a kept entry that is missing stops too, unless `missing_ok` (an image build, whose
/// VM has only the image disk attached), where it is left out with a warning.
pub fn resolve<'a>(plan: &'a Plan, disks: &'a [Disk], selector: Option<&DiskSelector>, allow: Allow, missing_ok: bool) -> Result<Resolved<'a>> {
    let preserved_disks: Vec<&DiskSelector> = plan
        .preserve
        .iter()
        .filter_map(|p| match &p.what {
            PreserveTarget::Disk { disk } => Some(disk),
            _ => None,
        })
        .collect();
    let chosen = disk::select(disks, selector, &preserved_disks, allow)?;
    let mut others: Vec<&Disk> = Vec::new();
    for sel in &plan.other_disks {
        let d = disk::select(disks, Some(sel), &preserved_disks, allow)?;
        if d.path == chosen.path || others.iter().any(|o| o.path == d.path) {
            bail!("disk= names {} twice ({sel} selects it again); nothing was written", d.path.display());
        }
        others.push(d);
    }
    let mut preserved = Vec::new();
    for p in &plan.preserve {
        match locate(p, disks) {
            Ok((_, disk)) if disk.path == chosen.path || others.iter().any(|o| o.path == disk.path) => bail!(
                "preserved {} is on {}, a disk this install wipes ({}); nothing was written",
                p.what,
                disk.path.display(),
                if disk.path == chosen.path { selector.map(|s| s.to_string()).unwrap_or_else(|| "the only fixed disk".into()) } else { "a disk= of the arrays".into() }
            ),
            Ok((device, disk)) => preserved.push(Located { entry: p, device, disk }),
            Err(e) if missing_ok => log::warn!("preserved {} is not attached to this image build; its fstab line is left out ({e:#})", p.what),
            Err(e) => return Err(e),
        }
    }
    Ok(Resolved { target: chosen, others, preserved })
}

impl Located<'_> {
    /// The fstab line's facts, when the entry has a mount point.
    fn fstab(&self) -> Option<Preserved> {
        let p = self.entry;
        let mountpoint = p.mountpoint.clone()?;
        let info = Target::open_read_only(&self.device).ok().and_then(|t| probe(&t).ok().flatten());
        let fstype = if p.fstype == "auto" { info.as_ref().map(|i| i.kind.name().to_string()).unwrap_or_else(|| "auto".into()) } else { p.fstype.clone() };
        Some(Preserved { uuid: info.map(|i| i.uuid), device: self.device.clone(), mountpoint, fstype, options: p.options.clone() })
    }
}

/// Finds one `preserve=` entry on any disk (the target included: the caller refuses that).
fn locate<'a>(p: &Preserve, disks: &'a [Disk]) -> Result<(PathBuf, &'a Disk)> {
    let any = Allow { removable: true, in_use: true };
    match &p.what {
        PreserveTarget::Disk { disk: sel } => {
            let d = disk::select(disks, Some(sel), &[], any).with_context(|| format!("finding preserved disk {sel}"))?;
            // A whole preserved disk with one partition is mounted by that partition.
            let device = match d.partitions.as_slice() {
                [only] => only.path.clone(),
                _ => d.path.clone(),
            };
            Ok((device, d))
        }
        PreserveTarget::Partition { disk: sel, number } => {
            let d = disk::select(disks, Some(sel), &[], any).with_context(|| format!("finding the disk of preserved partition {}", p.what))?;
            let part = d.partitions.iter().find(|q| q.number == *number).with_context(|| format!("{} has no partition {number}", d.path.display()))?;
            Ok((part.path.clone(), d))
        }
        PreserveTarget::PartLabel { label } => by_link("by-partlabel", label, disks),
        PreserveTarget::Uuid { uuid } => by_link("by-uuid", uuid, disks),
    }
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

/// PARTLABEL= and UUID= entries: found by probing every partition of every disk.
fn by_link<'a>(kind: &str, value: &str, disks: &'a [Disk]) -> Result<(PathBuf, &'a Disk)> {
    for d in disks {
        for part in &d.partitions {
            let Ok(t) = Target::open_read_only(&part.path) else { continue };
            let found = match kind {
                "by-uuid" => probe(&t).ok().flatten().is_some_and(|i| i.uuid.eq_ignore_ascii_case(value)),
                _ => crate::disk::partition::gpt_name(&d.path, part.number).is_some_and(|n| n == value),
            };
            if found {
                return Ok((part.path.clone(), d));
            }
        }
    }
    bail!("no partition has {} {value}; nothing was written", if kind == "by-uuid" { "UUID" } else { "PARTLABEL" })
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

    /// A disk image file with a GPT holding one partition named `label`, as inventory
    /// would describe it.
    fn disk_with_label(name: &str, label: &str) -> Disk {
        let path = std::env::temp_dir().join(format!("anemos-check-{}-{name}.img", std::process::id()));
        let mut f = std::fs::File::options().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        let mut gpt = gptman::GPT::new_from(&mut f, 512, [7u8; 16]).unwrap();
        gpt[1] = gptman::GPTPartitionEntry { partition_type_guid: [1u8; 16], unique_partition_guid: [2u8; 16], starting_lba: 2048, ending_lba: 4095, attribute_bits: 0, partition_name: label.into() };
        gpt.write_into(&mut f).unwrap();
        let part =
            crate::disk::Partition { name: format!("{name}1"), path: path.clone(), dev: String::new(), number: 1, start: 1 << 20, size: 1 << 20, by_id: vec![], signatures: vec![], mounted: vec![] };
        Disk {
            name: name.into(),
            path,
            dev: String::new(),
            size: 64 << 20,
            logical_sector: 512,
            physical_sector: 512,
            model: None,
            serial: Some(name.into()),
            wwn: None,
            by_id: vec![],
            removable: false,
            read_only: false,
            table: Some("gpt".into()),
            table_id: None,
            signatures: vec![],
            mounted: vec![],
            partitions: vec![part],
        }
    }

    /// A kept partition found on the disk being wiped stops the install, also when the
    /// target was named on the command line (an image build, where a missing kept disk
    /// is only a warning).
    #[test]
    fn a_kept_partition_on_the_target_always_stops() {
        let (target, other) = (disk_with_label("t", "keep"), disk_with_label("o", "other"));
        let mut plan = crate::plan::tests::sample();
        plan.preserve = vec![Preserve { what: PreserveTarget::PartLabel { label: "keep".into() }, mountpoint: None, fstype: "auto".into(), options: "defaults".into() }];
        let disks = [target.clone(), other.clone()];
        let by_serial = DiskSelector::Serial("t".into());
        for missing_ok in [false, true] {
            let e = resolve(&plan, &disks, Some(&by_serial), Allow { removable: true, in_use: true }, missing_ok).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("PARTLABEL=keep") && e.contains("a disk this install wipes") && e.contains("nothing was written"), "{missing_ok}: {e}");
        }
        // On a second disk of the layout (raid=) it stops the same way.
        let mut two = plan.clone();
        two.preserve[0].what = PreserveTarget::PartLabel { label: "other".into() };
        two.other_disks = vec![DiskSelector::Serial("o".into())];
        let e = resolve(&two, &disks, Some(&by_serial), Allow { removable: true, in_use: true }, false).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("PARTLABEL=other") && e.contains("a disk this install wipes"), "{e}");
        two.preserve.clear();
        let r = resolve(&two, &disks, Some(&by_serial), Allow { removable: true, in_use: true }, false).unwrap();
        assert_eq!(r.targets().iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["t", "o"]);
        two.other_disks = vec![DiskSelector::Serial("t".into())];
        assert!(resolve(&two, &disks, Some(&by_serial), Allow { removable: true, in_use: true }, false).err().unwrap().to_string().contains("twice"));
        // On the other disk it is found and kept.
        let r = resolve(&plan, &disks, Some(&DiskSelector::Serial("o".into())), Allow { removable: true, in_use: true }, false).unwrap();
        assert_eq!(r.preserved[0].disk.name, "t");
        // Nowhere at all: an error, or in an image build a warning.
        plan.preserve[0].what = PreserveTarget::PartLabel { label: "gone".into() };
        assert!(resolve(&plan, &disks, Some(&by_serial), Allow { removable: true, in_use: true }, false).is_err());
        assert!(resolve(&plan, &disks, Some(&by_serial), Allow { removable: true, in_use: true }, true).unwrap().preserved.is_empty());
        for d in disks {
            let _ = std::fs::remove_file(d.path);
        }
    }
}
