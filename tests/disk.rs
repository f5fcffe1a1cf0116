//! Partitioning image files, judged by the real tools: sgdisk -v, sfdisk --verify and
//! sfdisk's JSON dump, wipefs and blkid for what must be gone.

use std::path::{Path, PathBuf};

use anemos_tests::{scratch, sh};
use installer::disk::layout::{plan, PlannedLayout};
use installer::disk::partition::apply;
use installer::plan::{Filesystem, Layout, LayoutOrigin, PartKind, PartSize as Size, Partition, TableType as TableKind};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A layout as the plan's validation makes it; the seed makes GUIDs reproducible.
fn request(table: TableKind, parts: &[(&str, Size, PartKind)], seed: Option<&str>) -> (Layout, Option<String>) {
    let partitions = parts
        .iter()
        .map(|(n, s, k)| {
            let (guid, mbr) = k.type_ids();
            Partition {
                name: n.to_string(),
                size: *s,
                type_guid: guid.to_string(),
                mbr_type: mbr,
                bootable: table == TableKind::Msdos && *k == PartKind::Root,
                // Every layout mounts something at /: the root partition here.
                fs: if *k == PartKind::Root { Filesystem::Ext4 } else { Filesystem::None },
                mountpoint: (*k == PartKind::Root).then(|| "/".to_string()),
                options: "defaults".into(),
                kind: k.clone(),
            }
        })
        .collect();
    (Layout { table, partitions, origin: LayoutOrigin::Partitions, encrypted: Vec::new(), volume_group: None, raid: Vec::new(), subvolumes: Vec::new() }, seed.map(String::from))
}

fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    sh(&format!("rm -f {0} && truncate -s {size} {0}", p.display())).unwrap();
    p
}

fn partition(img: &Path, req: &(Layout, Option<String>)) -> PlannedLayout {
    let size = std::fs::metadata(img).unwrap().len();
    let layout = plan(&req.0, size, 512, req.1.as_deref()).unwrap();
    assert!(apply(img, &layout).unwrap().is_empty());
    layout
}

/// (start sector, size in sectors, type, name) of each partition as sfdisk reads them.
fn sfdisk_parts(img: &Path) -> Vec<(u64, u64, String, String)> {
    let dump = sh(&format!("sfdisk -d {}", img.display())).unwrap();
    dump.lines()
        .filter(|l| l.contains(" : start="))
        .map(|l| {
            let field = |k: &str| l.split(',').find_map(|f| f.trim().strip_prefix(&format!("{k}=")).map(|v| v.trim_matches('"').to_string())).unwrap_or_default();
            let start = l.split("start=").nth(1).unwrap().split(',').next().unwrap().trim().parse().unwrap();
            let size = l.split("size=").nth(1).unwrap().split(',').next().unwrap().trim().parse().unwrap();
            (start, size, field("type"), field("name"))
        })
        .collect()
}

fn judge_gpt(img: &Path) {
    let v = sh(&format!("sgdisk -v {}", img.display())).unwrap();
    assert!(v.contains("No problems found"), "sgdisk -v:\n{v}");
    sh(&format!("sfdisk --verify {}", img.display())).unwrap();
}

#[test]
fn gpt_esp_swap_root() {
    let dir = scratch("disk-gpt");
    let img = image(&dir, "a.img", 8 * GIB);
    let layout = partition(&img, &request(TableKind::Gpt, &[("esp", Size::Bytes(512 * MIB), PartKind::Esp), ("swap", Size::Bytes(GIB), PartKind::Swap), ("root", Size::Rest, PartKind::Root)], None));
    judge_gpt(&img);
    let parts = sfdisk_parts(&img);
    assert_eq!(parts.len(), 3);
    for (got, want) in parts.iter().zip(&layout.parts) {
        assert_eq!(got.0 * 512, want.start);
        assert_eq!(got.1 * 512, want.size);
        assert_eq!(got.2.to_lowercase(), want.type_guid.to_string());
        assert_eq!(got.3, want.name);
        assert_eq!(got.0 % 2048, 0, "not 1 MiB aligned");
    }
    let sfdisk_l = sh(&format!("sfdisk -l {}", img.display())).unwrap();
    for t in ["EFI System", "Linux swap", "Linux root (x86-64)"] {
        assert!(sfdisk_l.contains(t), "{t} not recognised by sfdisk:\n{sfdisk_l}");
    }
}

#[test]
fn gpt_type_guids_are_the_ones_sfdisk_knows() {
    let known = sh("sfdisk --label gpt -T").unwrap().to_lowercase();
    for (kind, name) in [
        (PartKind::Esp, "efi system"),
        (PartKind::BiosBoot, "bios boot"),
        (PartKind::Root, "linux root (x86-64)"),
        (PartKind::Swap, "linux swap"),
        (PartKind::Linux, "linux filesystem"),
        (PartKind::Home, "linux home"),
        (PartKind::Srv, "linux server data"),
    ] {
        let line = format!("{}  {name}", kind.type_ids().0.to_lowercase());
        assert!(known.lines().any(|l| l.trim() == line), "{line} not in sfdisk's list");
    }
}

#[test]
fn gpt_bios_boot_for_grub() {
    let dir = scratch("disk-biosboot");
    let img = image(&dir, "a.img", 2 * GIB);
    partition(&img, &request(TableKind::Gpt, &[("bios", Size::Bytes(MIB), PartKind::BiosBoot), ("root", Size::Rest, PartKind::Root)], None));
    judge_gpt(&img);
    assert!(sh(&format!("sfdisk -l {}", img.display())).unwrap().contains("BIOS boot"));
}

#[test]
fn msdos_single_bootable_root_like_makeimg_raw() {
    let dir = scratch("disk-msdos");
    let img = image(&dir, "a.img", 4 * GIB);
    partition(&img, &request(TableKind::Msdos, &[("root", Size::Rest, PartKind::Root)], None));
    sh(&format!("sfdisk --verify {}", img.display())).unwrap();
    let dump = sh(&format!("sfdisk -d {}", img.display())).unwrap();
    assert!(dump.contains("label: dos"), "{dump}");
    let line = dump.lines().find(|l| l.contains("start=")).unwrap();
    assert!(line.contains("start=        2048") && line.contains("type=83") && line.contains("bootable"), "{line}");
}

#[test]
fn msdos_esp_and_root() {
    let dir = scratch("disk-msdos-esp");
    let img = image(&dir, "a.img", 4 * GIB);
    partition(&img, &request(TableKind::Msdos, &[("esp", Size::Bytes(256 * MIB), PartKind::Esp), ("root", Size::Percent(50), PartKind::Root)], None));
    sh(&format!("sfdisk --verify {}", img.display())).unwrap();
    let dump = sh(&format!("sfdisk -d {}", img.display())).unwrap();
    assert!(dump.contains("type=ef") && dump.contains("type=83"), "{dump}");
}

#[test]
fn a_seed_gives_identical_tables() {
    let dir = scratch("disk-seed");
    let req = request(TableKind::Gpt, &[("esp", Size::Bytes(100 * MIB), PartKind::Esp), ("root", Size::Rest, PartKind::Root)], Some("host42"));
    let a = image(&dir, "a.img", GIB);
    let b = image(&dir, "b.img", GIB);
    partition(&a, &req);
    partition(&b, &req);
    let dump = |p: &Path| sh(&format!("sfdisk -d {} | sed 's|{}|IMG|'", p.display(), p.display())).unwrap();
    assert_eq!(dump(&a), dump(&b));
    assert_eq!(sh(&format!("cmp {} {} && echo same", a.display(), b.display())).unwrap().trim(), "same");
}

#[test]
fn old_signatures_are_gone() {
    let dir = scratch("disk-wipe");
    let img = image(&dir, "a.img", 2 * GIB);
    // An old GPT (with its backup at the end) and an old ext4 right where the new first
    // partition will start, plus one on the whole disk.
    sh(&format!("sgdisk -n 1:2048:+100M -t 1:8300 {} >/dev/null", img.display())).unwrap();
    sh(&format!("mke2fs -q -t ext4 -E offset={} {} 64M", MIB, img.display())).unwrap();
    assert!(sh(&format!("blkid -p -O {MIB} {}", img.display())).unwrap().contains("ext4"));
    partition(&img, &request(TableKind::Msdos, &[("root", Size::Rest, PartKind::Root)], None));
    let left = sh(&format!("wipefs --no-act --noheadings --output TYPE {}", img.display())).unwrap();
    assert_eq!(left.trim(), "dos", "signatures left on the disk: {left}");
    let probe = std::process::Command::new("blkid").args(["-p", "-O", &MIB.to_string()]).arg(&img).output().unwrap();
    assert!(!String::from_utf8_lossy(&probe.stdout).contains("ext4"), "old ext4 still visible in the new partition");
    let v = sh(&format!("sgdisk -v {} 2>&1 || true", img.display())).unwrap();
    assert!(!v.contains("backup header"), "a stale GPT backup confuses sgdisk:\n{v}");
}

#[test]
fn a_layout_planned_for_another_size_is_refused() {
    let dir = scratch("disk-size-mismatch");
    let img = image(&dir, "a.img", GIB);
    let layout = plan(&request(TableKind::Gpt, &[("root", Size::Rest, PartKind::Root)], None).0, 2 * GIB, 512, None).unwrap();
    let before = std::fs::read(&img).unwrap();
    let err = apply(&img, &layout).unwrap_err().to_string();
    assert!(err.contains("nothing was written"), "{err}");
    assert!(std::fs::read(&img).unwrap() == before);
}
