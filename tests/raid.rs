//! md superblocks written in-process, judged by mdadm on the test's own image files at odd
//! sizes: `mdadm --examine` must read each member as format 1.2 with a correct checksum, the
//! level, the members' roles, one array UUID and name, and the sizes anemos planned with.
//! (The host's kernel has no md driver here; assembly by the kernel is proven by the QEMU
//! install in tests/install.rs.)

use std::collections::BTreeMap;
use std::path::PathBuf;

use anemos_tests::{scratch, sh, sparse_file};
use installer::md;
use installer::plan::RaidLevel;

const MIB: u64 = 1 << 20;

/// `mdadm --examine`'s "Key : Value" lines.
fn examine(member: &std::path::Path) -> BTreeMap<String, String> {
    let out = sh(&format!("mdadm --examine {}", member.display())).unwrap_or_else(|e| panic!("{e:#}"));
    out.lines().filter_map(|l| l.split_once(" : ")).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect()
}

fn members(dir: &std::path::Path, sizes: &[u64]) -> Vec<PathBuf> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let f = dir.join(format!("member{i}.img"));
            sparse_file(&f, *s).unwrap();
            // An old ext4 signature where the superblock area is: it must not survive.
            sh(&format!("mke2fs -q -F -t ext4 {} >/dev/null", f.display())).unwrap();
            f
        })
        .collect()
}

#[test]
fn mdadm_reads_each_members_superblock_at_odd_sizes_and_every_level() {
    let dir = scratch("raid-judge");
    let cases: &[(RaidLevel, &[u64], &str)] = &[
        (RaidLevel::Raid1, &[64 * MIB + 7 * 512, 80 * MIB], "raid1"),
        (RaidLevel::Raid0, &[96 * MIB, 96 * MIB + 4096, 97 * MIB], "raid0"),
        (RaidLevel::Raid10, &[72 * MIB + 512, 72 * MIB], "raid10"),
    ];
    for (level, sizes, name) in cases {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let files = members(&sub, sizes);
        let p = md::write_superblocks("root", "web1", *level, &files, 1_700_000_000).unwrap();
        let uuid = md::uuid_text(&p.set_uuid);
        let used_kib = p.used_sectors() / 2;
        for (role, f) in files.iter().enumerate() {
            let e = examine(f);
            let ctx = format!("{name} member {role}: {e:?}");
            assert_eq!(e["Magic"], "a92b4efc", "{ctx}");
            assert_eq!(e["Version"], "1.2", "{ctx}");
            assert!(e["Checksum"].ends_with("- correct"), "{ctx}");
            assert_eq!(e["Array UUID"], uuid, "{ctx}");
            assert_eq!(e["Name"].split_whitespace().next(), Some("web1:root"), "{ctx}");
            assert_eq!(e["Raid Level"], *name, "{ctx}");
            if *level == RaidLevel::Raid10 {
                assert_eq!(e["Layout"], "near=2", "{ctx}");
            }
            assert_eq!(e["Raid Devices"], sizes.len().to_string(), "{ctx}");
            assert_eq!(e["Data Offset"], "2048 sectors", "{ctx}");
            assert_eq!(e["Super Offset"], "8 sectors", "{ctx}");
            assert_eq!(e["Device Role"], format!("Active device {role}"), "{ctx}");
            assert_eq!(e["Array State"].split_whitespace().next(), Some("A".repeat(sizes.len()).as_str()), "{ctx}");
            // Every member offers the smallest one's data area: one zone, equal members.
            let smallest = sizes.iter().min().unwrap() / 512 - 2048;
            assert!(e["Avail Dev Size"].starts_with(&format!("{smallest} ")), "{ctx}");
            // mdadm shows a mirror's used size, and the array size of redundant arrays.
            if *level == RaidLevel::Raid1 {
                assert!(e.get("Used Dev Size").is_some_and(|v| v.starts_with(&format!("{} ", used_kib * 2))), "used size in sectors: {ctx}");
            }
            if *level != RaidLevel::Raid0 {
                assert!(e.get("Array Size").is_some_and(|v| v.starts_with(&format!("{} ", p.array_bytes() / 1024))), "array size in KiB: {ctx}");
            }
            // The old file system's signature is gone: blkid sees only the md member.
            let kind = sh(&format!("blkid -p -o value -s TYPE {}", f.display())).unwrap();
            assert_eq!(kind.trim(), "linux_raid_member", "{ctx}");
        }
    }
}

#[test]
fn members_too_small_or_alone_are_refused_before_a_write() {
    let dir = scratch("raid-refuse");
    let tiny = members(&dir, &[2 * MIB, 64 * MIB]);
    let before = std::fs::read(&tiny[1]).unwrap();
    let e = md::write_superblocks("root", "h", RaidLevel::Raid1, &tiny, 0).unwrap_err().to_string();
    assert!(e.contains("too small"), "{e}");
    assert_eq!(std::fs::read(&tiny[1]).unwrap(), before, "a member was written");
    let e = md::write_superblocks("root", "h", RaidLevel::Raid1, &tiny[1..], 0).unwrap_err().to_string();
    assert!(e.contains("two or more members"), "{e}");
}
