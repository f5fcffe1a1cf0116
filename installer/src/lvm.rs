//! LVM2 written in-process: physical volume labels, one metadata area per physical volume
//! holding the volume group's text metadata (the format `vgcfgbackup` prints), logical
//! volumes allocated linearly across the physical volumes, and each activated as
//! device-mapper `linear` targets named as LVM names them (`VG-LV`, uuid `LVM-…`), so the
//! new system's LVM finds and activates them itself. `pvs`, `vgs`, `lvs` and `vgck` read
//! what this writes (tests/lvm.rs).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::plan::{PartSize, VolumeGroup};
use crate::units::human_size;

const SECTOR: u64 = 512;
/// LVM's defaults: the metadata area from 4 KiB, data (extents) from 1 MiB, 4 MiB extents.
const MDA_START: u64 = 4096;
pub const PE_START: u64 = 1 << 20;
pub const EXTENT: u64 = 4 << 20;
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
const INITIAL_CRC: u32 = 0xf597_a6cf;

/// One physical volume: its device and size in bytes.
#[derive(Debug, Clone)]
pub struct Pv {
    pub device: PathBuf,
    pub size: u64,
}

/// A piece of a logical volume on one physical volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub pv: usize,
    /// First extent on the physical volume, first extent in the volume, and count.
    pub pv_start: u64,
    pub lv_start: u64,
    pub extents: u64,
}

/// The group laid out on its physical volumes: extents per volume, in segments.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub pe_counts: Vec<u64>,
    pub volumes: Vec<Vec<Segment>>,
}

/// Extents of each physical volume of `size` bytes.
pub fn pe_count(size: u64) -> u64 {
    size.saturating_sub(PE_START) / EXTENT
}

/// Sizes the volumes (bytes rounded up to extents, percents of the group, the rest) and
/// places them in order across the physical volumes. Every problem is reported at once.
pub fn allocate(group: &VolumeGroup, pv_sizes: &[u64]) -> Result<Allocation> {
    let pe_counts: Vec<u64> = pv_sizes.iter().map(|s| pe_count(*s)).collect();
    let total: u64 = pe_counts.iter().sum();
    let mut sizes: Vec<Option<u64>> = group
        .volumes
        .iter()
        .map(|v| match v.size {
            PartSize::Bytes(b) => Some(b.div_ceil(EXTENT)),
            PartSize::Percent(p) => Some(total * p as u64 / 100),
            PartSize::Rest => None,
        })
        .collect();
    let fixed: u64 = sizes.iter().flatten().sum();
    let mut problems = Vec::new();
    if fixed > total {
        problems.push(format!("the volumes need {} but volume group {} has {}", human_size(fixed * EXTENT), group.name, human_size(total * EXTENT)));
    }
    if let Some(i) = group.volumes.iter().position(|v| v.size == PartSize::Rest) {
        sizes[i] = Some(total.saturating_sub(fixed));
    }
    for (v, s) in group.volumes.iter().zip(&sizes) {
        if *s == Some(0) {
            problems.push(format!("volume {:?} would be empty in volume group {} ({})", v.name, group.name, human_size(total * EXTENT)));
        }
    }
    if !problems.is_empty() {
        bail!("the logical volumes do not fit:\n  - {}", problems.join("\n  - "));
    }
    let (mut pv, mut used) = (0usize, 0u64);
    let mut volumes = Vec::new();
    for size in sizes.into_iter().map(|s| s.unwrap_or(0)) {
        let mut segments = Vec::new();
        let mut placed = 0;
        while placed < size {
            while used == pe_counts[pv] {
                (pv, used) = (pv + 1, 0);
            }
            let n = (size - placed).min(pe_counts[pv] - used);
            segments.push(Segment { pv, pv_start: used, lv_start: placed, extents: n });
            (placed, used) = (placed + n, used + n);
        }
        volumes.push(segments);
    }
    Ok(Allocation { pe_counts, volumes })
}

/// The identities a volume group is written with.
pub struct Ids {
    pub vg: String,
    pub pvs: Vec<String>,
    pub lvs: Vec<String>,
    pub host: String,
    pub time: u64,
}

impl Ids {
    /// Fresh random identities.
    pub fn random(group: &VolumeGroup, pvs: usize, host: &str, time: u64) -> Result<Ids> {
        Ok(Ids { vg: lvm_id()?, pvs: (0..pvs).map(|_| lvm_id()).collect::<Result<_>>()?, lvs: group.volumes.iter().map(|_| lvm_id()).collect::<Result<_>>()?, host: host.to_string(), time })
    }
}

/// A 32-character LVM identifier (letters and digits).
fn lvm_id() -> Result<String> {
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut b = [0u8; 32];
    crate::crypt::luks2::random(&mut b)?;
    Ok(b.iter().map(|x| CHARS[*x as usize % CHARS.len()] as char).collect())
}

/// An identifier as the text metadata shows it (6-4-4-4-4-4-6).
fn dashed(id: &str) -> String {
    let mut out = String::new();
    let mut at = 0;
    for (i, n) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(&id[at..at + n]);
        at += n;
    }
    out
}

/// The volume group's text metadata (NUL-terminated, as LVM stores it).
pub fn metadata(group: &VolumeGroup, pvs: &[Pv], alloc: &Allocation, ids: &Ids) -> Vec<u8> {
    let mut t = String::new();
    let _ = writeln!(t, "{} {{\nid = \"{}\"\nseqno = 1\nformat = \"lvm2\"\nstatus = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nflags = []", group.name, dashed(&ids.vg));
    let _ = writeln!(t, "extent_size = {}\nmax_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n\nphysical_volumes {{", EXTENT / SECTOR);
    for (i, pv) in pvs.iter().enumerate() {
        let _ = writeln!(t, "\npv{i} {{\nid = \"{}\"\ndevice = \"{}\"\n\nstatus = [\"ALLOCATABLE\"]\nflags = []", dashed(&ids.pvs[i]), pv.device.display());
        let _ = writeln!(t, "dev_size = {}\npe_start = {}\npe_count = {}\n}}", pv.size / SECTOR, PE_START / SECTOR, alloc.pe_counts[i]);
    }
    let _ = writeln!(t, "}}\n\nlogical_volumes {{");
    for (i, (v, segments)) in group.volumes.iter().zip(&alloc.volumes).enumerate() {
        let _ = writeln!(t, "\n{} {{\nid = \"{}\"\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []", v.name, dashed(&ids.lvs[i]));
        let _ = writeln!(t, "creation_time = {}\ncreation_host = \"{}\"\nsegment_count = {}", ids.time, ids.host, segments.len());
        for (n, s) in segments.iter().enumerate() {
            let _ = writeln!(
                t,
                "\nsegment{} {{\nstart_extent = {}\nextent_count = {}\n\ntype = \"striped\"\nstripe_count = 1\n\nstripes = [\n\"pv{}\", {}\n]\n}}",
                n + 1,
                s.lv_start,
                s.extents,
                s.pv,
                s.pv_start
            );
        }
        let _ = writeln!(t, "}}");
    }
    let _ = writeln!(t, "}}\n\n}}\n# Generated by anemos\n\ncontents = \"Text Format Volume Group\"\nversion = 1\n\ndescription = \"\"\n");
    let _ = writeln!(t, "creation_host = \"{}\"\ncreation_time = {}\n", ids.host, ids.time);
    let mut bytes = t.into_bytes();
    bytes.push(0);
    bytes
}

/// The first `PE_START` bytes of a physical volume: its label (sector 1) and its metadata
/// area (header at 4 KiB, the text after it).
pub fn pv_header(pv_id: &str, size: u64, text: &[u8]) -> Result<Vec<u8>> {
    let mda_size = PE_START - MDA_START;
    ensure!((text.len() as u64) < mda_size - 512, "the volume group's metadata ({} bytes) does not fit its area", text.len());
    let mut out = vec![0u8; PE_START as usize];
    let label = &mut out[512..1024];
    label[0..8].copy_from_slice(b"LABELONE");
    label[8..16].copy_from_slice(&1u64.to_le_bytes());
    label[20..24].copy_from_slice(&32u32.to_le_bytes());
    label[24..32].copy_from_slice(b"LVM2 001");
    label[32..64].copy_from_slice(pv_id.as_bytes());
    let mut at = 64;
    // device size, data areas {1 MiB, rest}, end; metadata areas {4 KiB, to 1 MiB}, end;
    // the extension: version 2, flags "used", no boot loader areas.
    for v in [size, PE_START, 0, 0, 0, MDA_START, mda_size, 0, 0] {
        label[at..at + 8].copy_from_slice(&v.to_le_bytes());
        at += 8;
    }
    label[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    label[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
    let label_crc = crc(INITIAL_CRC, &label[20..]);
    label[16..20].copy_from_slice(&label_crc.to_le_bytes());
    let mda = &mut out[MDA_START as usize..];
    mda[4..20].copy_from_slice(MDA_MAGIC);
    mda[20..24].copy_from_slice(&1u32.to_le_bytes());
    mda[24..32].copy_from_slice(&MDA_START.to_le_bytes());
    mda[32..40].copy_from_slice(&mda_size.to_le_bytes());
    mda[40..48].copy_from_slice(&512u64.to_le_bytes());
    mda[48..56].copy_from_slice(&(text.len() as u64).to_le_bytes());
    mda[56..60].copy_from_slice(&crc(INITIAL_CRC, text).to_le_bytes());
    let header_crc = crc(INITIAL_CRC, &mda[4..512]);
    mda[0..4].copy_from_slice(&header_crc.to_le_bytes());
    mda[512..512 + text.len()].copy_from_slice(text);
    Ok(out)
}

/// LVM's CRC-32 (the reflected 0xEDB88320 polynomial, its own start value, no final xor).
fn crc(initial: u32, data: &[u8]) -> u32 {
    let mut crc = initial;
    for b in data {
        crc ^= *b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

/// A volume group written and its volumes active.
pub struct Made {
    /// Each volume's device node (`/dev/dm-N`) and its device-mapper name.
    pub volumes: Vec<(PathBuf, String)>,
}

/// Writes the physical volumes' labels and metadata and activates every volume.
pub fn create(group: &VolumeGroup, members: &[PathBuf], host: &str, time: u64) -> Result<Made> {
    let mut pvs = Vec::new();
    for device in members {
        let f = std::fs::File::open(device).with_context(|| format!("opening {}", device.display()))?;
        let size = crate::sys::block_size_bytes(&f).with_context(|| format!("reading the size of {}", device.display()))?;
        pvs.push(Pv { device: device.clone(), size });
    }
    let alloc = allocate(group, &pvs.iter().map(|p| p.size).collect::<Vec<_>>())?;
    let ids = Ids::random(group, pvs.len(), host, time)?;
    let text = metadata(group, &pvs, &alloc, &ids);
    for (pv, id) in pvs.iter().zip(&ids.pvs) {
        let header = pv_header(id, pv.size, &text)?;
        let mut f = std::fs::OpenOptions::new().write(true).open(&pv.device).with_context(|| format!("opening {}", pv.device.display()))?;
        f.write_all(&header).and_then(|_| f.sync_all()).with_context(|| format!("writing the LVM label and metadata to {}", pv.device.display()))?;
    }
    crate::kmod::load_running(&["dm_mod"]).context("loading device-mapper")?;
    let mut volumes = Vec::new();
    for (i, (v, segments)) in group.volumes.iter().zip(&alloc.volumes).enumerate() {
        let name = dm_name(&group.name, &v.name);
        let uuid = format!("LVM-{}{}", ids.vg, ids.lvs[i]);
        let targets: Vec<(u64, String)> = segments.iter().map(|s| Ok((s.extents * EXTENT / SECTOR, linear(&pvs[s.pv].device, s.pv_start)?))).collect::<Result<_>>()?;
        let node = crate::crypt::dm::create(&name, &uuid, "linear", &targets)?;
        log::info!(
            "LVM: {}/{} {} on {} ({})",
            group.name,
            v.name,
            human_size(segments.iter().map(|s| s.extents).sum::<u64>() * EXTENT),
            segments.iter().map(|s| pvs[s.pv].device.display().to_string()).collect::<Vec<_>>().join(" + "),
            node.display()
        );
        volumes.push((node, name));
    }
    Ok(Made { volumes })
}

/// The parameters of a linear target: the physical volume and the sector of its extent.
fn linear(device: &Path, pv_start: u64) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(device).with_context(|| format!("reading the device number of {}", device.display()))?.rdev();
    Ok(format!("{}:{} {}", rustix::fs::major(rdev), rustix::fs::minor(rdev), (PE_START + pv_start * EXTENT) / SECTOR))
}

/// LVM's device-mapper name for a volume: `VG-LV`, each `-` in a name doubled.
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Filesystem, Volume};

    fn group(sizes: &[PartSize]) -> VolumeGroup {
        let volumes = sizes.iter().enumerate().map(|(i, s)| Volume { name: format!("v{i}"), size: *s, fs: Filesystem::Ext4, mountpoint: None, options: "defaults".into() }).collect();
        VolumeGroup { name: "vg0".into(), members: vec!["pv".into()], volumes }
    }

    #[test]
    fn volumes_fill_the_physical_volumes_in_order_and_span_them() {
        const MIB: u64 = 1 << 20;
        // Two physical volumes of 9 and 5 extents.
        let sizes = [PE_START + 9 * EXTENT + 3 * MIB, PE_START + 5 * EXTENT];
        let a = allocate(&group(&[PartSize::Bytes(10 * MIB), PartSize::Rest, PartSize::Percent(25)]), &sizes).unwrap();
        assert_eq!(a.pe_counts, [9, 5]);
        // 10 MiB → 3 extents; 25 % of 14 → 3; the rest → 8, spanning both.
        assert_eq!(a.volumes[0], [Segment { pv: 0, pv_start: 0, lv_start: 0, extents: 3 }]);
        assert_eq!(a.volumes[1], [Segment { pv: 0, pv_start: 3, lv_start: 0, extents: 6 }, Segment { pv: 1, pv_start: 0, lv_start: 6, extents: 2 }]);
        assert_eq!(a.volumes[2], [Segment { pv: 1, pv_start: 2, lv_start: 0, extents: 3 }]);
        let err = allocate(&group(&[PartSize::Bytes(100 * MIB), PartSize::Rest]), &sizes).unwrap_err().to_string();
        assert!(err.contains("need 100 MiB") && err.contains("\"v1\" would be empty"), "{err}");
    }

    #[test]
    fn names_and_ids_as_lvm_writes_them() {
        assert_eq!(dm_name("vg-a", "root"), "vg--a-root");
        assert_eq!(dashed("4D6k4hJ7io3DnPhzcssO3xRmVEoUBAxW"), "4D6k4h-J7io-3DnP-hzcs-sO3x-RmVE-oUBAxW");
    }

    #[test]
    fn the_crc_matches_a_label_pvcreate_wrote() {
        // The label sector of a 64 MiB physical volume made by pvcreate 2.03.16, with its
        // stored CRC (0x70e081da) over bytes 20..512.
        let header = pv_header("4D6k4hJ7io3DnPhzcssO3xRmVEoUBAxW", 64 << 20, b"x\0").unwrap();
        assert_eq!(u32::from_le_bytes(header[512 + 16..512 + 20].try_into().unwrap()), 0x70e0_81da);
    }
}
