//! LVM2 volume groups written in-process, judged by LVM's own tools on loop devices of the
//! test's own image files (each command told `--devices`, so nothing else is scanned):
//! `pvs`, `vgs`, `lvs` read the labels, the metadata and the volumes' segments as planned,
//! and `vgck` finds the group consistent.

use std::path::PathBuf;

use anemos_tests::{scratch, sh, sparse_file, Loop};
use installer::lvm::{self, Ids, Pv, EXTENT, PE_START};
use installer::plan::{Filesystem, PartSize, Volume, VolumeGroup};

const MIB: u64 = 1 << 20;

fn volume(name: &str, size: PartSize) -> Volume {
    Volume { name: name.into(), size, fs: Filesystem::Ext4, mountpoint: None, options: "defaults".into() }
}

fn lvm(devices: &[&Loop], cmd: &str) -> String {
    let devs: String = devices.iter().map(|l| format!(" --devices {}", l.dev.display())).collect();
    let (tool, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
    sh(&format!("LVM_SUPPRESS_FD_WARNINGS=1 {tool}{devs} {rest}")).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn lvm_reads_the_group_its_volumes_and_their_segments_across_two_disks() {
    let dir = scratch("lvm-judge");
    // Odd sizes: 9 extents and a bit, 5 extents exactly.
    let sizes = [PE_START + 9 * EXTENT + 3 * MIB + 512, PE_START + 5 * EXTENT];
    let files: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("pv{i}.img"))).collect();
    for (f, s) in files.iter().zip(sizes) {
        sparse_file(f, s).unwrap();
    }
    let loops: Vec<Loop> = files.iter().map(|f| Loop::attach(f).unwrap()).collect();
    let group = VolumeGroup {
        name: "vg-test".into(),
        members: vec!["a".into(), "b".into()],
        volumes: vec![volume("root", PartSize::Bytes(10 * MIB)), volume("srv", PartSize::Rest), volume("swap", PartSize::Percent(25))],
    };
    let pvs: Vec<Pv> = loops.iter().zip(sizes).map(|(l, size)| Pv { device: l.dev.clone(), size }).collect();
    let alloc = lvm::allocate(&group, &sizes).unwrap();
    let ids = Ids::random(&group, 2, "anemos-test", 1_796_400_000).unwrap();
    let text = lvm::metadata(&group, &pvs, &alloc, &ids);
    for (l, id) in loops.iter().zip(&ids.pvs) {
        let header = lvm::pv_header(id, sizes[loops.iter().position(|x| x.dev == l.dev).unwrap()], &text).unwrap();
        std::fs::write(&l.dev, &header).unwrap();
    }
    let all: Vec<&Loop> = loops.iter().collect();
    let pvs_out = lvm(&all, "pvs --noheadings -o pv_name,vg_name,pv_pe_count --separator ,");
    for (l, count) in loops.iter().zip([9, 5]) {
        assert!(pvs_out.contains(&format!("{},vg-test,{count}", l.dev.display())), "{pvs_out}");
    }
    let vgs = lvm(&all, "vgs --noheadings -o vg_name,pv_count,lv_count,vg_extent_count,vg_free_count --separator ,");
    assert_eq!(vgs.trim(), "vg-test,2,3,14,0");
    // Segments: root 3 extents on the first disk; srv 6 + 2 across both; swap 3.
    let segs = lvm(&all, "lvs --noheadings --segments -o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges --separator , vg-test");
    let segs: Vec<String> = segs.lines().map(|l| l.trim().to_string()).collect();
    let (a, b) = (loops[0].dev.display(), loops[1].dev.display());
    assert_eq!(segs, [format!("root,0,3,{a}:0-2"), format!("srv,0,6,{a}:3-8"), format!("srv,6,2,{b}:0-1"), format!("swap,0,3,{b}:2-4")]);
    lvm(&all, "vgck vg-test");
    // The identifiers are those the device-mapper names and uuids are made from.
    let uuids = lvm(&all, "lvs --noheadings -o lv_uuid vg-test");
    assert!(uuids.contains(&format!("{}-{}-", &ids.lvs[0][..6], &ids.lvs[0][6..10])), "{uuids}");
}
