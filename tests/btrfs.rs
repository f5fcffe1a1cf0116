//! btrfs made in-process, judged by btrfs-progs (`btrfs check`, `btrfs inspect-internal
//! dump-super`, `btrfs subvolume list`), blkid and the kernel (loop mounts): at odd sizes,
//! with files written through the kernel, and with subvolumes made the installer's way.

use std::collections::BTreeMap;
use std::path::Path;

use anemos_tests::{scratch, sh, sparse_file, Loop, Mount};
use installer::fs::{self, btrfs, FsKind, FsOptions, Target};

const UUID: [u8; 16] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88, 0x89, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF];
const UUID_STR: &str = "11223344-5566-4788-8999-aabbccddeeff";
const MIB: u64 = 1 << 20;

fn make(path: &Path, label: &str) {
    let options = FsOptions { label: Some(label.into()), uuid: Some(UUID), time: Some(1_795_634_533), ..FsOptions::default() };
    let info = fs::make(FsKind::Btrfs, &Target::open(path).unwrap(), &options).unwrap_or_else(|e| panic!("making btrfs on {}: {e:#}", path.display()));
    assert_eq!((info.kind, info.uuid.as_str(), info.label.as_deref()), (FsKind::Btrfs, UUID_STR, Some(label)));
}

fn check(path: &Path) -> String {
    sh(&format!("btrfs check --readonly --check-data-csum {} 2>&1", path.display())).unwrap_or_else(|e| panic!("btrfs check {}: {e:#}", path.display()))
}

fn blkid(path: &Path) -> BTreeMap<String, String> {
    sh(&format!("blkid -p -o export {}", path.display())).unwrap().lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn btrfs_checks_clean_at_odd_sizes() {
    let dir = scratch("btrfs-sizes");
    // The smallest, odd sizes, one whose metadata chunk covers the 64 MiB mirror, and one
    // past 256 GiB (sparse) that has all three super block copies.
    for bytes in [btrfs::MIN_SIZE, 300 * MIB + 4097, 777 * MIB + 512, 3 * 1024 * MIB + 12345, 260 * 1024 * MIB + 8191] {
        let img = dir.join(format!("{bytes}.img"));
        sparse_file(&img, bytes).unwrap();
        make(&img, "data");
        let out = check(&img);
        assert!(out.contains("no error found") && !out.contains("ERROR") && !out.contains("warning"), "{bytes} bytes: btrfs check said\n{out}");
        let ids = blkid(&img);
        assert_eq!((ids["TYPE"].as_str(), ids["UUID"].as_str(), ids["LABEL"].as_str()), ("btrfs", UUID_STR, "data"), "{bytes} bytes");
        let supers = sh(&format!("btrfs inspect-internal dump-super -a {} 2>&1", img.display())).unwrap();
        let copies = [64 << 10, 64 << 20, 256u64 << 30].iter().filter(|&&s| s + 4096 <= bytes).count();
        assert_eq!(supers.matches("csum\t\t\t0x").count(), copies, "{bytes} bytes:\n{supers}");
        assert_eq!(supers.matches("[match]").count(), 3 * copies, "{bytes} bytes: csum, magic, dev_item.fsid of each copy:\n{supers}");
        std::fs::remove_file(&img).unwrap();
    }
    assert!(fs::make(
        FsKind::Btrfs,
        &Target::open(&{
            let small = dir.join("small.img");
            sparse_file(&small, btrfs::MIN_SIZE - 4096).unwrap();
            small
        })
        .unwrap(),
        &FsOptions::default()
    )
    .is_err());
}

#[test]
fn btrfs_takes_files_and_subvolumes_through_the_kernel() {
    if !std::fs::read_to_string("/proc/filesystems").unwrap_or_default().contains("btrfs") && std::process::Command::new("modprobe").arg("btrfs").status().map(|s| !s.success()).unwrap_or(true) {
        panic!("the kernel has no btrfs: this test needs it (modprobe btrfs)");
    }
    let dir = scratch("btrfs-mount");
    let img = dir.join("data.img");
    sparse_file(&img, 700 * MIB + 4096).unwrap();
    make(&img, "pool");
    let lo = Loop::attach(&img).unwrap();
    btrfs::subvol::create(&lo.dev, &["@", "@home", "@/.snapshots"], &dir.join("top")).unwrap();
    let mount = Mount::new_with(&lo.dev, &dir.join("mnt"), "btrfs", "subvol=@home").unwrap();
    let big: Vec<u8> = (0..64 * MIB as usize).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(mount.dir.join("big"), &big).unwrap();
    for i in 0..2000 {
        std::fs::write(mount.dir.join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    mount.unmount().unwrap();
    let out = check(&lo.dev);
    assert!(out.contains("no error found") && !out.contains("ERROR"), "btrfs check after writing:\n{out}");
    let mount = Mount::new_with(&lo.dev, &dir.join("mnt"), "btrfs", "subvolid=5").unwrap();
    let list = sh(&format!("btrfs subvolume list {}", mount.dir.display())).unwrap();
    assert!(list.contains("path @\n") && list.contains("path @home\n") && list.ends_with("path @/.snapshots\n"), "subvolumes:\n{list}");
    // The nested one is a subvolume of its own inside @, not a directory.
    assert_eq!(sh(&format!("stat -c %i {}/@/.snapshots", mount.dir.display())).unwrap().trim(), "256", "@/.snapshots is not a subvolume");
    assert_eq!(std::fs::read(mount.dir.join("@home/big")).unwrap(), big);
    assert_eq!(std::fs::read_to_string(mount.dir.join("@home/f1999")).unwrap(), "file 1999\n");
    mount.unmount().unwrap();
}
