//! Whole installs under QEMU (TCG), from the caching mirror on loopback: examples built by
//! `anemos image`, then booted from their own disks and judged by what the new systems
//! print and answer. The slowest tests of the suite; they run one at a time.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anemos_qemu::{Config, Console, Disk, Firmware, Net, Ovmf, Vm};
use anemos_tests::mirror::MirrorProxy;
use anemos_tests::{anemos, free_port, scratch, sh, vm_lock, workspace};

const BOOT: Duration = Duration::from_secs(300);

/// The caching proxy for this test binary, and the mirror arguments for `anemos image`.
fn mirror_args() -> Vec<String> {
    static PROXY: OnceLock<MirrorProxy> = OnceLock::new();
    let proxy = PROXY.get_or_init(|| MirrorProxy::start(0).expect("starting the caching mirror"));
    let sources = proxy.sources_for("bookworm").expect("host apt sources");
    let main = sources.first().expect("a Debian source").uri.clone();
    let mut args = vec!["--mirror".to_string(), main];
    if let Some(sec) = sources.iter().find(|s| s.suite.ends_with("-security")) {
        args.extend(["--security-mirror".to_string(), sec.uri.clone()]);
    }
    args
}

/// A scratch copy of an example (or a test project) with a fresh ssh key for `demo`.
fn project(name: &str, from: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    sh(&format!("cp -a {}/. {}/project", workspace().join(from).display(), dir.display())).unwrap();
    let key = dir.join("id_ed25519");
    sh(&format!("ssh-keygen -q -t ed25519 -N '' -f {}", key.display())).unwrap();
    let auth = dir.join("project/files/home/demo/.ssh/authorized_keys");
    if auth.exists() {
        std::fs::copy(key.with_extension("pub"), &auth).unwrap();
    }
    (dir.join("project"), dir)
}

/// `anemos image` with the test mirror; returns the image path.
fn build(project: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    let mut args: Vec<String> = vec!["image".into(), project.display().to_string(), "-o".into(), out.display().to_string()];
    args.extend(mirror_args());
    args.extend(["--log".into(), out.join("install.log").display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = anemos(&refs).unwrap_or_else(|e| panic!("{e:#}"));
    let path = summary.lines().next().and_then(|l| l.strip_prefix("built ")).and_then(|l| l.split(" in ").next()).expect("built … in …");
    PathBuf::from(path)
}

fn boot(disks: Vec<Disk>, uefi: bool, forwards: Vec<(u16, u16)>, log: &Path) -> Vm {
    let firmware = if uefi { Firmware::Uefi(Ovmf::find().unwrap()) } else { Firmware::Bios };
    let mut config = Config::from_disk(disks[0].clone(), firmware);
    config.disks = disks;
    config.net = Some(Net { forwards, ..Default::default() });
    Vm::start(&config, Console::Capture(log.to_path_buf())).unwrap()
}

/// The fields of the example's `ANEMOS-REPORT` line.
fn report(vm: &mut Vm) -> std::collections::BTreeMap<String, String> {
    vm.expect("ANEMOS-REPORT ", BOOT).unwrap();
    let line = vm.expect("\n", Duration::from_secs(10)).unwrap();
    line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn debian_minimal_uefi_systemd_boot_comes_up_clean() {
    let _lock = vm_lock();
    let (project, dir) = project("install-uefi", "examples/debian-minimal");
    let image = build(&project, &dir, &[]);
    let log = std::fs::read_to_string(dir.join("install.log")).unwrap();
    for phase in ["check", "indexes", "disks", "packages", "files", "system", "provision", "initramfs", "bootloader", "log", "unmount"] {
        assert!(log.contains(&format!("[finished] {phase} in")), "phase {phase} missing from the install log");
    }
    let ssh_port = free_port();
    let mut vm = boot(vec![Disk::raw(&image)], true, vec![(ssh_port, 22)], &dir.join("boot.log"));
    let r = report(&mut vm);
    assert_eq!(r["host"], "debian-minimal");
    assert_eq!(r["dpkg-audit"], "clean");
    assert_eq!(r["fstab"], "valid");
    assert_eq!(r["mounted"], "/,/boot/efi");
    assert_eq!(r.get("missing").map(String::as_str), Some(""));
    vm.expect("login:", BOOT).unwrap();
    // The user key from files/ lets the demo user in; the install log is in the new system.
    let out = sh(&format!(
        "ssh -i {} -p {ssh_port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=20 demo@127.0.0.1 'hostname; sudo test -s /var/log/anemos/install.log && echo log-present; ls /boot/efi/EFI/BOOT'",
        dir.join("id_ed25519").display()
    ))
    .unwrap();
    assert!(out.contains("debian-minimal") && out.contains("log-present") && out.contains("BOOTX64.EFI"), "{out}");
}

#[test]
fn mail_server_bios_grub_keeps_home_and_serves_mail() {
    let _lock = vm_lock();
    let (project, dir) = project("install-mail", "examples/mail-server");
    // The preserved disk: ext4 with a mailbox already in it.
    let seed = dir.join("home-seed");
    sh(&format!(
        "mkdir -p {0}/vmail/mail/Maildir/cur {0}/vmail/mail/Maildir/new {0}/vmail/mail/Maildir/tmp && printf 'From: a@example.test\\nSubject: kept\\n\\nkept across reinstalls\\n' > {0}/vmail/mail/Maildir/cur/1.seed:2,S && chown -R 5000:5000 {0}/vmail",
        seed.display()
    ))
    .unwrap();
    let home = dir.join("home.img");
    sh(&format!("mke2fs -q -t ext4 -L home -d {} {} 256M", seed.display(), home.display())).unwrap();
    let before = sh(&format!("sha256sum < {}", home.display())).unwrap();
    let identity = project.join("demo-age.key");
    let attach = format!("{}:mail-home", home.display());
    let image = build(&project, &dir, &["--identity", identity.to_str().unwrap(), "--attach", &attach]);
    assert_eq!(sh(&format!("sha256sum < {}", home.display())).unwrap(), before, "the install wrote to the preserved disk");
    let (imap, smtp) = (free_port(), free_port());
    let disks = vec![Disk { serial: Some("mail-system".into()), ..Disk::raw(&image) }, Disk { serial: Some("mail-home".into()), ..Disk::raw(&home) }];
    let mut vm = boot(disks, false, vec![(imap, 143), (smtp, 25)], &dir.join("boot.log"));
    let r = report(&mut vm);
    assert_eq!((r["host"].as_str(), r["dpkg-audit"].as_str(), r["fstab"].as_str()), ("mail", "clean", "valid"));
    assert_eq!(r["mounted"], "/,/home");
    // The secret reached Dovecot's config: a login with it works (the password is read
    // from the age file here and never printed).
    let password = sh(&format!("age -d -i {} {}", identity.display(), project.join("secrets/mailpass.age").display())).unwrap();
    let session = format!("a LOGIN mail {password}\\r\\nb SELECT INBOX\\r\\nc LOGOUT\\r\\n");
    let reply = imap_session(imap, &session);
    assert!(reply.contains("a OK"), "IMAP login with the secret failed");
    assert!(reply.contains("* 1 EXISTS"), "the mailbox on the preserved disk is not there");
    let banner = sh(&format!("timeout 20 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{smtp}; head -1 <&3'")).unwrap();
    assert!(banner.starts_with("220 mail.example.test ESMTP Postfix"), "{banner}");
    assert!(!std::fs::read_to_string(dir.join("install.log")).unwrap().contains(password.trim()), "the secret reached the install log");
}

/// Sends an IMAP session once the server greets, retrying while the forward is not up yet.
fn imap_session(port: u16, session: &str) -> String {
    for _ in 0..30 {
        let out = sh(&format!("printf '{session}' | timeout 20 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; head -1 <&3 >/dev/null; cat >&3; cat <&3' 2>/dev/null || true")).unwrap();
        if out.contains("a ") {
            return out;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    panic!("no IMAP answer on port {port}");
}
