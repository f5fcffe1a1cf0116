//! `anemos initramfs` end to end: contents, reproducibility, compression choices, payloads.

use anemos_tests::{anemos, scratch, sh, test_kernel};

fn build(dir: &std::path::Path, name: &str, extra: &[&str]) -> Vec<u8> {
    let kernel = test_kernel();
    let out = dir.join(name);
    let modules = kernel.modules_dir.display().to_string();
    let mut args = vec!["initramfs", "-o", out.to_str().unwrap(), "--modules-dir", &modules, "--no-autodetect"];
    args.extend_from_slice(extra);
    anemos(&args).unwrap();
    std::fs::read(&out).unwrap()
}

#[test]
fn two_builds_are_byte_identical() {
    let dir = scratch("initramfs-repro");
    for compression in ["zstd", "gzip", "none"] {
        let a = build(&dir, &format!("a.{compression}"), &["--compression", compression]);
        let b = build(&dir, &format!("b.{compression}"), &["--compression", compression]);
        assert!(a == b, "{compression}: two builds differ");
    }
}

#[test]
fn carries_init_skeleton_and_module_subset() {
    let dir = scratch("initramfs-contents");
    let kernel = test_kernel();
    build(&dir, "i.zst", &["--module", "vfat"]);
    let listing = sh(&format!("zstd -dc {} | cpio -itv --quiet", dir.join("i.zst").display())).unwrap();
    let has = |suffix: &str| listing.lines().any(|l| l.ends_with(suffix));
    assert!(has(" init"), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with("crw-------") && l.ends_with(" dev/console")));
    assert!(has(" etc/initrd-release"));
    for f in ["modules.dep", "modules.alias", "modules.softdep", "modules.builtin"] {
        assert!(has(&format!("lib/modules/{}/{f}", kernel.release)), "{f} missing");
    }
    assert!(has("/vfat.ko") && has("/fat.ko") && has("/virtio_blk.ko") && has("/ext4.ko"));
    // A subset, not the whole tree: no sound drivers.
    assert!(!listing.contains("/sound/"), "the whole module tree was copied");
    // Every module in the subset's modules.dep is in the archive.
    let dep = sh(&format!("zstd -dc {} | cpio -i --quiet --to-stdout lib/modules/{}/modules.dep", dir.join("i.zst").display(), kernel.release)).unwrap();
    for line in dep.lines() {
        let path = line.split(':').next().unwrap();
        assert!(has(path), "{path} is in modules.dep but not in the archive");
    }
    // The init inside is the static one.
    sh(&format!("cd {} && zstd -dc i.zst | cpio -id --quiet init && file init | grep -q 'statically linked'", dir.display())).unwrap();
}

#[test]
fn payload_is_appended_as_its_own_archive() {
    let dir = scratch("initramfs-payload");
    let payload = dir.join("payload.cpio");
    sh(&format!(
        "cd {} && mkdir -p anemos/payload && echo hello > anemos/payload/note && printf 'anemos\\nanemos/payload\\nanemos/payload/note\\n' | cpio -o -H newc --quiet > payload.cpio",
        dir.display()
    ))
    .unwrap();
    let without = build(&dir, "base.img", &["--no-default-modules", "--compression", "none"]);
    let with = build(&dir, "full.img", &["--no-default-modules", "--compression", "none", "--payload", payload.to_str().unwrap()]);
    assert_eq!(&with[..without.len()], &without[..]);
    assert_eq!(without.len() % 4, 0);
    assert_eq!(&with[without.len()..], &std::fs::read(&payload).unwrap()[..]);
    // GNU cpio reads the first archive; skipping it, the payload is a valid archive too.
    let listing = sh(&format!("tail -c +{} {} | cpio -it --quiet", without.len() + 1, dir.join("full.img").display())).unwrap();
    assert!(listing.contains("anemos/payload/note"));
    // An image with a payload holds secrets: 0600, whatever the umask; without, 0644.
    let mode = |name: &str| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join(name)).unwrap().permissions()) & 0o777;
    assert_eq!((mode("full.img"), mode("base.img")), (0o600, 0o644));
}

#[test]
fn a_payload_that_is_not_an_archive_is_refused() {
    let dir = scratch("initramfs-bad-payload");
    let bad = dir.join("notes.txt");
    std::fs::write(&bad, "just text\n").unwrap();
    let kernel = test_kernel();
    let out = dir.join("x.img");
    let err =
        anemos(&["initramfs", "-o", out.to_str().unwrap(), "--modules-dir", kernel.modules_dir.to_str().unwrap(), "--no-autodetect", "--payload", bad.to_str().unwrap()]).unwrap_err().to_string();
    assert!(err.contains("is not a cpio archive") && err.contains("notes.txt"), "{err}");
    assert!(!out.exists(), "a half-made initramfs was left behind");
}

#[test]
fn a_missing_module_names_itself() {
    let dir = scratch("initramfs-missing-module");
    let kernel = test_kernel();
    let out = dir.join("x.img");
    let err = anemos(&["initramfs", "-o", out.to_str().unwrap(), "--modules-dir", kernel.modules_dir.to_str().unwrap(), "--no-autodetect", "--module", "no_such_driver"]).unwrap_err().to_string();
    assert!(err.contains("--module no_such_driver") && err.contains("not in"), "{err}");
}
