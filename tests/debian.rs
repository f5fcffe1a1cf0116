//! A Debian minbase bootstrapped from Debian's real archive (the mirrors of this machine's
//! apt sources) through the caching proxy on loopback, judged by the target's own dpkg and
//! apt in a chroot: `dpkg --audit` prints nothing, `apt-get check` succeeds, `dpkg -V` reports
//! no missing file, and the sources name the mirror used.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use anemos_tests::mirror::MirrorProxy;
use anemos_tests::scratch;
use installer::packages::debian::{self, Config, InstallOptions};

fn in_chroot(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("chroot").arg(root).args(args).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The bootstraps run one at a time (two cores).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn minbase_from_the_real_archive_is_clean() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let proxy = MirrorProxy::start(0).unwrap();
    let suite = "bookworm";
    let sources = proxy.sources_for(suite).unwrap();
    let mut config = Config::new(sources.clone(), "/usr/share/keyrings/debian-archive-keyring.gpg".into());
    config.fetch.proxy = Some(String::new());
    let prepared = debian::prepare(&config).unwrap();
    let names: Vec<&str> = prepared.packages.iter().map(|p| p.name.as_str()).collect();
    for must in ["apt", "dpkg", "base-files", "base-passwd", "libc6", "bash", "coreutils"] {
        assert!(names.contains(&must), "{must} missing from the resolved set {names:?}");
    }
    let root = scratch("debian-minbase").join("root");
    let report = debian::install(&prepared, &root, &InstallOptions::default()).unwrap();
    assert!(!debian::finish(&root).unwrap(), "minbase has no kernel: no initramfs expected");
    eprintln!("{} packages in {} ms (unpack {} ms, configure {} ms)", report.packages, report.total_ms, report.unpack_ms, report.configure_ms);

    let (ok, out) = in_chroot(&root, &["dpkg", "--audit"]);
    assert!(ok && out.trim().is_empty(), "dpkg --audit: {out}");
    let (ok, out) = in_chroot(&root, &["apt-get", "check"]);
    assert!(ok, "apt-get check: {out}");
    let (_, out) = in_chroot(&root, &["dpkg", "-V"]);
    let missing: Vec<&str> = out.lines().filter(|l| l.contains("missing")).collect();
    assert!(missing.is_empty(), "dpkg -V: {}", missing.join("\n"));
    let (ok, out) = in_chroot(&root, &["dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Package}\n"]);
    assert!(ok);
    let not_installed: Vec<&str> = out.lines().filter(|l| !l.starts_with("ii ")).collect();
    assert!(not_installed.is_empty(), "not fully installed: {not_installed:?}");
    assert_eq!(out.lines().count(), prepared.packages.len());

    let list = std::fs::read_to_string(root.join("etc/apt/sources.list.d/debian.sources")).unwrap();
    for s in &sources {
        assert!(list.contains(&format!("URIs: {}\n", s.uri)), "{} not in:\n{list}", s.uri);
    }
    assert!(list.contains("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"), "{list}");
    assert!(root.join("etc/passwd").is_file() && root.join("bin").is_symlink());
    assert!(!root.join("usr/sbin/policy-rc.d").exists());
    assert!(!root.join("usr/sbin/update-initramfs").exists());
}

/// With a kernel, the kernel's and initramfs-tools' hooks and triggers find update-initramfs
/// diverted to a no-op during the install; `finish` restores it and builds the initramfs once.
#[test]
fn a_kernel_gets_one_initramfs_at_finish() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let proxy = MirrorProxy::start(0).unwrap();
    let sources = proxy.sources_for("bookworm").unwrap();
    let mut config = Config::new(sources, "/usr/share/keyrings/debian-archive-keyring.gpg".into());
    config.fetch.proxy = Some(String::new());
    config.include = vec!["linux-image-amd64".into(), "initramfs-tools".into()];
    let prepared = debian::prepare(&config).unwrap();
    let root = scratch("debian-kernel").join("root");
    debian::install(&prepared, &root, &InstallOptions::default()).unwrap();
    let initrds = || std::fs::read_dir(root.join("boot")).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("initrd.img-")).count();
    assert_eq!(initrds(), 0, "an initramfs was built during the install");
    let (_, diversions) = in_chroot(&root, &["dpkg-divert", "--list", "/usr/sbin/update-initramfs"]);
    assert!(diversions.contains("update-initramfs.anemos"), "{diversions}");
    assert!(debian::finish(&root).unwrap());
    assert_eq!(initrds(), 1);
    let (_, diversions) = in_chroot(&root, &["dpkg-divert", "--list", "/usr/sbin/update-initramfs"]);
    assert!(diversions.trim().is_empty(), "{diversions}");
    let (ok, out) = in_chroot(&root, &["dpkg", "--audit"]);
    assert!(ok && out.trim().is_empty(), "dpkg --audit: {out}");
    let (_, out) = in_chroot(&root, &["dpkg", "-V"]);
    assert!(!out.contains("missing"), "dpkg -V: {out}");
}
