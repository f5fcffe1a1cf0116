//! Whole installs under QEMU (TCG), from the caching mirror on loopback: examples built by
//! `anemos image` — the test server from an image `anemos build` made, the mail server and
//! the provision failure through the package path — then booted from their own disks and
//! judged by what the new systems print and answer. The slowest tests of the suite; they
//! run one at a time, and the slowest of them (the mail server, a second reinstall with
//! DHCP, the single-disk encrypted root) only in `make test-long`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anemos_qemu::{Config, Console, Disk, Firmware, Net, Ovmf, Vm};
use anemos_tests::server::{self, build_image, build_server, guest_mirror_args, serve_for_guests, Server, ServerBuild, BOOT, DATA_SUMS};
use anemos_tests::{anemos, free_port, passed, scratch, sh, vm_lock, workspace};

/// The server, built once for this test binary; the caller holds the VM lock.
fn server_build() -> &'static ServerBuild {
    static BUILD: OnceLock<ServerBuild> = OnceLock::new();
    BUILD.get_or_init(|| {
        // By hand, `ANEMOS_TEST_REUSE_IMAGES=1` reuses the server an earlier run built.
        let kept = std::env::var_os("ANEMOS_TEST_REUSE_IMAGES").and_then(|_| ServerBuild::kept("install-server"));
        kept.unwrap_or_else(|| build_server("install-server")).unwrap_or_else(|e| panic!("{e:#}"))
    })
}

fn project(name: &str, from: &str) -> (PathBuf, PathBuf) {
    server::project(name, from).unwrap_or_else(|e| panic!("{e:#}"))
}

fn build(project: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    server::build(project, out, extra).unwrap_or_else(|e| panic!("{e:#}"))
}

fn boot(disks: Vec<Disk>, uefi: bool, forwards: Vec<(u16, u16)>, log: &Path) -> Vm {
    let firmware = if uefi { Firmware::Uefi(Ovmf::find().unwrap()) } else { Firmware::Bios };
    let mut config = Config::from_disk(disks[0].clone(), firmware);
    config.disks = disks;
    config.net = Some(Net { forwards, ..Default::default() });
    Vm::start(&config, Console::Capture(log.to_path_buf())).unwrap()
}

fn wait_login(vm: &mut Vm) {
    server::wait_login(vm).unwrap();
}

/// The fields of the example's `ANEMOS-REPORT` line.
fn report(vm: &mut Vm) -> std::collections::BTreeMap<String, String> {
    vm.expect("ANEMOS-REPORT ", BOOT).unwrap();
    let line = vm.expect("\n", Duration::from_secs(10)).unwrap();
    line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn ssh_demo(dir: &Path, port: u16, cmd: &str) -> String {
    let key = server_build().dir.join("id_ed25519");
    sh(&format!(
        "ssh -i {} -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=20 demo@127.0.0.1 {}",
        key.display(),
        anemos_tests::shell_quote(cmd)
    ))
    .unwrap_or_else(|e| panic!("ssh in {}: {e:#}", dir.display()))
}

/// The phases of an install from an image, in order.
const IMAGE_PHASES: &[&str] = &["check", "image-check", "disks", "image", "files", "system", "bootloader", "log", "unmount"];

/// The server, installed from its image with the kept disk attached, comes up clean; a
/// second machine installed from the same image by `anemos test` (with a copy of the kept
/// disk, attached read-only) comes up too, as a host of its own.
#[test]
fn a_server_installed_from_an_image_comes_up_clean_and_a_second_host_from_it_is_its_own() {
    let _lock = vm_lock();
    let b = server_build();
    let log = std::fs::read_to_string(b.dir.join("install.log")).unwrap();
    for phase in IMAGE_PHASES {
        assert!(log.contains(&format!("[finished] {phase} in")), "phase {phase} missing from the install log");
    }
    assert!(!log.contains("[started] packages") && log.contains("SHA-256 verified"), "not an install from the image");
    assert_eq!(sh(&format!("sha256sum < {}", b.data.display())).unwrap(), b.data_sum, "the install wrote to the kept disk");
    let dir = scratch("install-server-boot");
    let ssh_port = free_port();
    let mut vm = boot(b.disks(&dir).unwrap(), true, vec![(ssh_port, 22)], &dir.join("boot.log"));
    let first = report(&mut vm);
    assert_eq!(first["host"], "server");
    assert_eq!(first["dpkg-audit"], "clean");
    assert_eq!(first["fstab"], "valid");
    assert_eq!(first["mounted"], "/,/boot/efi,/srv/data");
    assert_eq!(first.get("missing").map(String::as_str), Some(""));
    assert_eq!(first["swaps"], "1", "the swap partition is not in use");
    assert_eq!(first["world-writable"], "0", "files anyone may write: {first:?}");
    assert_eq!(first["machine-id"].len(), 32, "{first:?}");
    assert!(first["hostkey"].starts_with("SHA256:"), "no ssh host key: {first:?}");
    wait_login(&mut vm);
    // The user key from files/ lets the demo user in; the install log is in the new system,
    // root-only; the kept disk's files are the ones written before the install.
    let out = ssh_demo(&dir, ssh_port, "hostname; sudo stat -c %a /var/log/anemos/install.log; sudo ls /boot/efi/EFI/BOOT");
    assert!(out.contains("server") && out.contains("\n600\n") && out.contains("BOOTX64.EFI"), "{out}");
    assert_eq!(ssh_demo(&dir, ssh_port, DATA_SUMS), b.data_files, "the kept disk's files changed");
    drop(vm);

    // A second host from the same image, through the anemos CLI, with its kept disk.
    let other = scratch("install-second-host");
    let data = other.join("data.img");
    sh(&format!("cp --sparse=always {} {}", b.data.display(), data.display())).unwrap();
    let mut args: Vec<String> = ["test", &b.project.display().to_string(), "-o", &other.display().to_string(), "--image", &b.os_image.display().to_string()].map(String::from).to_vec();
    args.extend(["--attach".into(), format!("{}:server-data", data.display()), "--marker".into(), "ANEMOS-REPORT".into()]);
    args.extend(server::mirror_args().unwrap());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = anemos(&refs).unwrap_or_else(|e| panic!("{e:#}"));
    let line = out.lines().find(|l| l.trim_start().starts_with("ANEMOS-REPORT")).unwrap_or_else(|| panic!("no report line:\n{out}"));
    let second: std::collections::BTreeMap<&str, &str> = line.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
    assert_eq!((second["dpkg-audit"], second["fstab"], second["mounted"]), ("clean", "valid", "/,/boot/efi,/srv/data"), "{line}");
    assert_ne!(second["machine-id"], first["machine-id"], "two hosts from one image share a machine-id");
    assert_ne!(second["hostkey"], first["hostkey"], "two hosts from one image share an ssh host key");
    assert_eq!(sh(&format!("sha256sum < {}", data.display())).unwrap(), b.data_sum, "the test boot wrote to the kept disk");
    passed(&dir);
    passed(&other);
}

/// The image of the same project, built again, is the same bytes.
#[test]
fn an_image_built_twice_is_the_same_bytes() {
    let _lock = vm_lock();
    let b = server_build();
    let again = scratch("install-image-again");
    let (_, sha) = build_image(&b.project, &again).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(sha, b.os_image_sha, "a second build of {} gave other bytes", b.project.display());
    passed(&again);
}

/// One byte of the image changed on its server: the installer stops in the image phase,
/// naming the pin, and the disk (which held an old system) is left unbootable.
#[test]
fn an_image_with_one_byte_changed_stops_the_install_and_nothing_boots() {
    let _lock = vm_lock();
    let b = server_build();
    let dir = scratch("install-bad-image");
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let bad = served.join("bad.image.tar.zst");
    std::fs::copy(&b.os_image, &bad).unwrap();
    // Every bit of one byte inverted (a fixed value could be the byte already there).
    let mut bytes = std::fs::read(&bad).unwrap();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    let url = format!("{}/bad.image.tar.zst", serve_for_guests(&served));
    let payload = dir.join("payload.cpio");
    let project = b.project.display().to_string();
    let mut pack = vec!["pack", &project, "-o", payload.to_str().unwrap(), "--image", &url, "--image-sha256", &b.os_image_sha];
    let mirrors = guest_mirror_args().unwrap();
    pack.extend(mirrors.iter().map(String::as_str));
    anemos(&pack).unwrap();
    let kernel = anemos_tests::test_kernel();
    let initrd = dir.join("initramfs.img");
    let modules = kernel.modules_dir.display().to_string();
    anemos(&["initramfs", "-o", initrd.to_str().unwrap(), "--kernel-release", &kernel.release, "--modules-dir", &modules, "--no-autodetect", "--payload", payload.to_str().unwrap()]).unwrap();
    let disk = dir.join("disk.img");
    sh(&format!("truncate -s 3G {0} && echo 'start=2048, type=83' | sfdisk -q {0} && mke2fs -q -t ext4 -E offset=1048576 -L oldroot {0} 1G", disk.display())).unwrap();
    let mut config = Config::direct(&kernel.vmlinuz, &initrd);
    config.accel = anemos_qemu::choose_accel(&kernel.vmlinuz, &initrd);
    config.append = "anemos.target=serial:server-system".into();
    config.disks = vec![Disk { serial: Some("server-system".into()), ..Disk::raw(&disk) }, Disk { serial: Some("server-data".into()), read_only: true, ..Disk::raw(&b.data) }];
    config.net = Some(Net::default());
    let mut vm = Vm::start(&config, Console::Capture(dir.join("console.log"))).unwrap();
    let failed = vm.expect_event(Duration::from_secs(900), |e| matches!(e, installer::event::Event::Failed { .. })).unwrap();
    let installer::event::Event::Failed { phase, error, .. } = failed else { unreachable!() };
    assert_eq!(phase, "image", "{error}");
    assert!(error.contains("not the one the plan pins") && error.contains(&b.os_image_sha) && error.contains("nothing was made bootable"), "{error}");
    vm.expect_event(Duration::from_secs(60), |e| matches!(e, installer::event::Event::Rescue)).unwrap();
    assert!(vm.output_text().contains("safety step done: make the half-installed"), "the disk was not made unbootable");
    vm.send("poweroff\n").unwrap();
    assert!(vm.wait_exit(Duration::from_secs(120)).unwrap().success());
    sh(&format!("cmp -n 1048576 {} /dev/zero", disk.display())).expect("the start of the disk is not zeroed");
    assert!(sh(&format!("sfdisk -d {}", disk.display())).is_err(), "a partition table survived");
    assert_eq!(sh(&format!("sha256sum < {}", b.data.display())).unwrap(), b.data_sum, "the kept disk changed");
    passed(&dir);
}

/// The mail-server example built once for this test binary, its seeded /home disk, and
/// that disk's checksum before the build.
struct MailBuild {
    project: PathBuf,
    dir: PathBuf,
    image: PathBuf,
    home: PathBuf,
    home_sum: String,
    identity: PathBuf,
}

/// Builds the mail server on first use; the caller holds the VM lock.
fn mail_build() -> &'static MailBuild {
    static BUILD: OnceLock<MailBuild> = OnceLock::new();
    BUILD.get_or_init(|| {
        // By hand, `ANEMOS_TEST_REUSE_IMAGES=1` reuses the image an earlier run built (the
        // build is ~20 min under TCG); the tests boot copies, so it stays as built.
        let kept = workspace().join("target/test-scratch/install-mail");
        if std::env::var_os("ANEMOS_TEST_REUSE_IMAGES").is_some() && kept.join("mail-server.img").is_file() && kept.join("built-home.sum").is_file() {
            let project = kept.join("project");
            let home_sum = std::fs::read_to_string(kept.join("built-home.sum")).unwrap();
            return MailBuild { identity: project.join("demo-age.key"), project, image: kept.join("mail-server.img"), home: kept.join("home.img"), home_sum, dir: kept };
        }
        let (project, dir) = project("install-mail", "examples/mail-server");
        // The preserved disk: ext4 with a mailbox already in it.
        let seed = dir.join("home-seed");
        sh(&format!(
            "mkdir -p {0}/vmail/alice/Maildir/cur {0}/vmail/alice/Maildir/new {0}/vmail/alice/Maildir/tmp && printf 'From: a@example.test\\nSubject: kept\\n\\nkept across reinstalls\\n' > {0}/vmail/alice/Maildir/cur/1.seed:2,S && chown -R 5000:5000 {0}/vmail",
            seed.display()
        ))
        .unwrap();
        let home = dir.join("home.img");
        sh(&format!("mke2fs -q -t ext4 -L home -d {} {} 256M", seed.display(), home.display())).unwrap();
        let home_sum = sh(&format!("sha256sum < {}", home.display())).unwrap();
        let identity = project.join("demo-age.key");
        let attach = format!("{}:mail-home", home.display());
        let image = build(&project, &dir, &["--identity", identity.to_str().unwrap(), "--attach", &attach]);
        std::fs::write(dir.join("built-home.sum"), &home_sum).unwrap();
        MailBuild { project, dir, image, home, home_sum, identity }
    })
}

/// The mail-server example on the package path: BIOS GRUB on an msdos disk booting the btrfs
/// subvolume @ as /, a kept /home, IMAP with the age secret and SMTP answering.
#[test]
#[ignore = "the slowest build of the suite (~16 min under TCG), over CI's budget: `make test-long`; make test boots GRUB by BIOS (the deploy's SeaBIOS boot), a btrfs subvolume as / (tests/raid.rs), runs the package path on a disk (the provision failure) and in every image build, keeps disks (the test server) and secrets off the console (the provision failure)"]
fn mail_server_bios_grub_keeps_home_and_serves_mail() {
    let _lock = vm_lock();
    let m = mail_build();
    assert_eq!(sh(&format!("sha256sum < {}", m.home.display())).unwrap(), m.home_sum, "the install wrote to the preserved disk");
    // Boot copies, so that an image kept for ANEMOS_TEST_REUSE_IMAGES stays as built.
    let dir = scratch("install-mail-boot");
    let (image, home) = (dir.join("mail.img"), dir.join("home.img"));
    sh(&format!("cp --sparse=always {} {} && cp --sparse=always {} {}", m.image.display(), image.display(), m.home.display(), home.display())).unwrap();
    let (imap, smtp) = (free_port(), free_port());
    let disks = vec![Disk { serial: Some("mail-system".into()), ..Disk::raw(&image) }, Disk { serial: Some("mail-home".into()), ..Disk::raw(&home) }];
    let mut vm = boot(disks, false, vec![(imap, 143), (smtp, 25)], &dir.join("boot.log"));
    let r = report(&mut vm);
    assert_eq!((r["host"].as_str(), r["dpkg-audit"].as_str(), r["fstab"].as_str()), ("mail", "clean", "valid"));
    assert_eq!(r["mounted"], "/,/home");
    // GRUB (BIOS) booted the btrfs subvolume @ as /, named by the file system's UUID (the
    // image was built on another machine's disk names).
    assert_eq!(r["root-fs"], "btrfs:/@", "{r:?}");
    assert_eq!(r["root-arg"], format!("UUID={}", r["root-uuid"]), "{r:?}");
    // The packages' scripts ran under PID 1's umask (022): nothing they made is world-writable.
    assert_eq!(r["world-writable"], "0", "files anyone may write: {r:?}");
    // The secret reached Dovecot's config: a login with it works (the password is read
    // from the age file here and never printed).
    let password = sh(&format!("age -d -i {} {}", m.identity.display(), m.project.join("secrets/mailpass.age").display())).unwrap();
    let session = format!("a LOGIN alice {password}\\r\\nb SELECT INBOX\\r\\nc LOGOUT\\r\\n");
    let reply = imap_session(imap, &session);
    assert!(reply.contains("a OK"), "IMAP login with the secret failed");
    assert!(reply.contains("* 1 EXISTS"), "the mailbox on the preserved disk is not there");
    let banner = sh(&format!("timeout 20 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{smtp}; head -1 <&3'")).unwrap();
    assert!(banner.starts_with("220 mail.example.test ESMTP Postfix"), "{banner}");
    assert!(!std::fs::read_to_string(m.dir.join("install.log")).unwrap().contains(password.trim()), "the secret reached the install log");
    passed(&dir);
}

/// An encrypted root and a volume group through the package path and the `anemos test`
/// CLI: the installer writes a LUKS2 header and makes ext4 inside it, writes the LVM
/// metadata and makes /srv and swap on its volumes; the new system opens / at boot with the
/// key file its initramfs carries (no one types anything) and activates the volume group,
/// and the report shows / on a crypt device, /srv mounted, the swap volume in use, and
/// root-only initramfs images. On the host, cryptsetup reads the root
/// partition's header and opens its keyslot with the secret, not with another passphrase.
#[test]
#[ignore = "over CI's budget beside the rest (~8 min under TCG): `make test-long`; make test boots an unattended LUKS2 root, LVM on LUKS with swap and root-only initramfs images in tests/raid.rs, and tests/crypt.rs and tests/lvm.rs judge the headers and metadata the engine writes"]
fn an_encrypted_root_and_a_volume_group_boot_unattended_and_cryptsetup_opens_the_header() {
    let _lock = vm_lock();
    let (project, dir) = project("install-encrypted", "examples/debian-minimal");
    std::fs::create_dir_all(project.join("secrets")).unwrap();
    let secret = "a passphrase for the encrypted test root";
    std::fs::write(project.join("secrets/disk_key"), format!("{secret}\n")).unwrap();
    let imgbuild = std::fs::read_to_string(project.join("IMGBUILD")).unwrap();
    // An encrypted root, and a volume group for /srv and swap on a partition of its own.
    let layout =
        "partitions=\"\n esp 256M esp\n root 2G root\n pv rest lvm\n\"\nencrypt=\"root disk_key unattended\"\nvolume_group=\"data pv\"\nvolumes=\"\n swap 128M swap\n srv rest ext4 /srv\n\"\n";
    std::fs::write(project.join("IMGBUILD"), format!("{imgbuild}\n{layout}")).unwrap();
    let out = dir.join("out");
    let log = dir.join("install.log");
    let mut args: Vec<String> = ["test", project.to_str().unwrap(), "-o", out.to_str().unwrap(), "--marker", "ANEMOS-REPORT", "--log", log.to_str().unwrap()].map(String::from).to_vec();
    args.extend(server::mirror_args().unwrap());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let printed = anemos(&refs).unwrap_or_else(|e| panic!("{e:#}"));
    let line = printed.lines().find(|l| l.trim_start().starts_with("ANEMOS-REPORT")).unwrap_or_else(|| panic!("no report line:\n{printed}"));
    let r: std::collections::BTreeMap<&str, &str> = line.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
    assert_eq!((r["dpkg-audit"], r["fstab"], sorted(r["mounted"]).as_str(), r["root-on"]), ("clean", "valid", "/,/boot/efi,/srv", "crypt"), "{line}");
    assert_eq!(r["swaps"], "1", "the swap volume is not in use: {line}");
    assert_eq!(r["initrd-mode"], "600", "the initramfs carries the key file and must be root-only: {line}");
    assert_eq!(r["world-writable"], "0", "{line}");
    let install_log = std::fs::read_to_string(&log).unwrap();
    assert!(install_log.contains("LUKS2 (aes-xts-plain64, Argon2id)") && install_log.contains("/etc/crypttab for 1 encrypted partition(s), key files root-only"), "{install_log}");
    assert!(install_log.contains("LVM: data/srv") && install_log.contains("LVM: data/swap 128 MiB"), "{install_log}");
    assert!(!install_log.contains(secret), "the passphrase reached the install log");

    // The independent judge: the root partition's first 16 MiB (header, keyslots) read by
    // cryptsetup, which must open the keyslot with the secret and with nothing else.
    let image = printed.lines().find_map(|l| l.strip_prefix("booting ")).and_then(|l| l.split(" (").next()).unwrap_or_else(|| panic!("no image path:\n{printed}"));
    let start: u64 = sh(&format!("partx -g -o START -n 2 {image}")).unwrap().trim().parse().unwrap();
    let header = dir.join("root-header.img");
    sh(&format!("dd if={image} of={} bs=512 skip={start} count=32768 status=none", header.display())).unwrap();
    let dump = sh(&format!("cryptsetup luksDump {}", header.display())).unwrap();
    assert!(dump.contains("Version:       \t2") && dump.contains("Label:         \troot") && dump.contains("argon2id"), "{dump}");
    std::fs::write(dir.join("key"), secret).unwrap();
    std::fs::write(dir.join("wrong"), "not the passphrase").unwrap();
    sh(&format!("cryptsetup open --test-passphrase --key-file {} {}", dir.join("key").display(), header.display())).unwrap();
    assert!(sh(&format!("cryptsetup open --test-passphrase --key-file {} {}", dir.join("wrong").display(), header.display())).is_err());
    // LVM's own tools read the volume group on the third partition (a loop device of the
    // test's image, scanned alone).
    let geometry = sh(&format!("partx -g -o START,SECTORS -n 3 {image}")).unwrap();
    let (start, sectors) = geometry.split_once(char::is_whitespace).map(|(a, b)| (a.trim().to_string(), b.trim().to_string())).unwrap();
    let dev = sh(&format!("losetup --find --show --read-only -o $(({start} * 512)) --sizelimit $(({sectors} * 512)) {image}")).unwrap();
    let pv = anemos_tests::Loop { dev: PathBuf::from(dev.trim()) };
    let lvs = sh(&format!("LVM_SUPPRESS_FD_WARNINGS=1 lvs --devices {} --noheadings -o vg_name,lv_name --separator , data", pv.dev.display())).unwrap();
    assert_eq!(lvs.lines().map(str::trim).collect::<Vec<_>>(), ["data,srv", "data,swap"], "{lvs}");
    sh(&format!("LVM_SUPPRESS_FD_WARNINGS=1 vgck --devices {} data", pv.dev.display())).unwrap();
}

/// A report's comma-separated list, sorted.
fn sorted(list: &str) -> String {
    let mut v: Vec<&str> = list.split(',').collect();
    v.sort();
    v.join(",")
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

fn start_server(name: &str) -> Server {
    server_build().start(name, 1024).unwrap_or_else(|e| panic!("{e:#}"))
}

fn variant(name: &str, lines: &str) -> PathBuf {
    server_build().variant(name, lines).unwrap()
}

fn ssh(server: &Server, cmd: &str) -> String {
    server.ssh(cmd).unwrap_or_else(|e| panic!("{e:#}"))
}

fn deploy(server: &Server, project: &Path, extra: &[&str]) -> (bool, String, String) {
    let d = server.deploy(project, extra).unwrap_or_else(|e| panic!("{e:#}"));
    (d.ok, d.stdout, d.stderr)
}

/// Partitions for GRUB on both firmwares: a BIOS boot partition beside the ESP.
const HYBRID_LAYOUT: &str = "partitions=\"
\tbios  1M    bios-boot
\tesp   256M  esp   vfat  /boot/efi
\tswap  256M  swap  swap
\troot  rest  root  ext4  /
\"
bootloader=grub
";

/// One server, two deploys (one boot of the old system saved): the first (the package path)
/// fails before the wipe and leaves it as it was, the second reinstalls it from an image
/// with GRUB for BIOS and UEFI, which then boots through both firmwares.
#[test]
fn deploy_fails_before_the_wipe_then_reinstalls_with_hybrid_grub_keeping_the_data_disk() {
    let _lock = vm_lock();
    let mut server = start_server("deploy-server");
    let before = ssh(&server, DATA_SUMS);
    assert_eq!(before, server_build().data_files);

    // A missing package, with DHCP in the installer: the indexes it fetched came over the
    // leased address, and the failure comes before anything is written.
    let missing = variant("deploy-missing", "\npackages=\"$packages no-such-package-anemos\"\non_failure=reboot\n");
    let (ok, stdout, stderr) = deploy(&server, &missing, &["--dhcp"]);
    assert!(!ok, "the deploy of a missing package succeeded:\n{stdout}");
    assert!(stderr.contains("connected to the installer"), "the events never reached the workstation:\n{stderr}");
    assert!(stderr.contains("no-such-package-anemos"), "the event stream did not say why:\n{stderr}");
    assert!(stdout.contains("FAILED: the install failed in phase indexes") && stdout.contains("the disk was not touched"), "{stdout}");
    assert!(server.vm.output_text().contains("10.0.2.15/24 (DHCP from 10.0.2.2)"), "the installer did not use DHCP");
    // The installer reboots; the firmware finds the old, untouched system.
    server.vm.expect("login:", BOOT).unwrap();
    assert_eq!(ssh(&server, "hostname; sudo test -f /boot/efi/loader/loader.conf && echo systemd-boot"), "server\nsystemd-boot\n");

    // Captured static network (the default): another host name, another package, and GRUB
    // for both firmwares in place of systemd-boot — from an image of that project, which
    // the server fetches itself from its URL.
    let old_identity = ssh(&server, "sudo cat /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub");
    let project = variant("deploy-server2", &format!("\nhostname=server2\npackages=\"$packages tree\"\n{HYBRID_LAYOUT}"));
    let images = scratch("deploy-images");
    let (image, sha) = build_image(&project, &images).unwrap_or_else(|e| panic!("{e:#}"));
    let url = format!("{}/{}", serve_for_guests(&images), image.file_name().unwrap().to_string_lossy());
    let (ok, stdout, stderr) = deploy(&server, &project, &["--image", &url, "--image-sha256", &sha]);
    assert!(ok, "deploy failed:\n{stdout}\n{stderr}");
    for want in ["connected to the installer", "installer ready", "image-check done in", "MiB streamed", "image done in", "install done in"] {
        assert!(stderr.contains(want), "no progress line {want:?} reached the workstation:\n{stderr}");
    }
    assert!(!stderr.contains("packages done in"), "the package path ran:\n{stderr}");
    assert!(stdout.contains("server: deployed"), "{stdout}");
    assert_ne!(ssh(&server, "sudo cat /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub"), old_identity, "the reinstalled host kept the old machine-id or host key");
    assert!(server.vm.output_text().contains("10.0.2.15/24 (static)"), "the installer did not use the captured static address");
    let installed = "hostname; dpkg-query -W -f='${Status}\\n' tree grub-efi-amd64 grub-pc-bin; test -d /sys/firmware/efi && echo UEFI || echo BIOS";
    assert_eq!(ssh(&server, installed), "server2\ninstall ok installed\ninstall ok installed\ninstall ok installed\nUEFI\n");
    assert_eq!(ssh(&server, DATA_SUMS), before, "/srv/data changed across the reinstall");

    // The same disks through SeaBIOS: GRUB's BIOS boot code in the BIOS boot partition.
    server.restart_with(Firmware::Bios, "bios").unwrap();
    let r = report(&mut server.vm);
    assert_eq!(r.get("mounted").map(String::as_str), Some("/,/boot/efi,/srv/data"), "{r:?}");
    assert_eq!(r.get("swaps").map(String::as_str), Some("1"), "{r:?}");
    assert_eq!(r.get("dpkg-audit").map(String::as_str), Some("clean"), "{r:?}");
    assert_eq!(r.get("fstab").map(String::as_str), Some("valid"), "{r:?}");
    // The installer's update-grub named / by UUID, not by this machine's name for the disk.
    assert_eq!(r.get("root-arg").cloned(), r.get("root-uuid").map(|u| format!("UUID={u}")), "{r:?}");
    wait_login(&mut server.vm);
    assert!(server.vm.output_text().contains("GRUB"), "no GRUB on the BIOS console");
    assert_eq!(ssh(&server, installed), "server2\ninstall ok installed\ninstall ok installed\ninstall ok installed\nBIOS\n");
    assert_eq!(ssh(&server, DATA_SUMS), before, "/srv/data changed across the BIOS boot");
    passed(&images);
}

#[test]
#[ignore = "a second full reinstall (~15 min under TCG), over CI's budget: `make test-long`; make test proves the installer's DHCP with the failing deploy"]
fn deploy_with_dhcp_in_the_installer_reinstalls_too() {
    let _lock = vm_lock();
    let server = start_server("deploy-server-dhcp");
    let before = ssh(&server, DATA_SUMS);
    let project = variant("deploy-server3", "\nhostname=server3\n");
    let (ok, stdout, stderr) = deploy(&server, &project, &["--dhcp"]);
    assert!(ok, "deploy with --dhcp failed:\n{stdout}\n{stderr}");
    assert!(server.vm.output_text().contains("10.0.2.15/24 (DHCP from 10.0.2.2)"), "the installer did not use DHCP");
    assert_eq!(ssh(&server, "hostname; sudo test -f /boot/efi/loader/loader.conf && echo systemd-boot"), "server3\nsystemd-boot\n");
    assert_eq!(ssh(&server, DATA_SUMS), before, "/srv/data changed across the reinstall");
}

#[test]
fn provision_failure_stops_in_rescue_showing_the_command_and_leaves_no_bootable_disk() {
    let _lock = vm_lock();
    let dir = scratch("install-provision-fails");
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let mirrors = guest_mirror_args().unwrap();
    let security = mirrors.iter().position(|a| a == "--security-mirror").map(|i| format!("security_mirror={}\n", mirrors[i + 1])).unwrap_or_default();
    std::fs::write(
        project.join("IMGBUILD"),
        format!(
            "imgname=provision-fails\ntarget=debian\ndebian_suite=bookworm\nmirror={}\n{security}format=\"raw 2G\"\ntable=msdos\npartitions=\"root rest root ext4 /\"\nbootloader=none\n\nprovision() {{\n\techo \"setting up the frobnicator with $(cat /etc/frob.conf)\"\n\tls /nonexistent-anemos-path\n\techo never reached\n}}\n",
            mirrors[1]
        ),
    )
    .unwrap();
    // A secret that provision() expands (traced by set -x and echoed): its value must
    // reach no console line, event or log.
    const SECRET: &str = "frob-s3cret-0451";
    sh(&format!(
        "mkdir -p {0}/secrets {0}/files/etc && printf '{SECRET}\\n' > {0}/secrets/frob_key && echo 'key={{{{ secret:frob_key }}}}' > {0}/files/etc/frob.conf.makeimg.template",
        project.display()
    ))
    .unwrap();
    let payload = dir.join("payload.cpio");
    anemos(&["pack", project.to_str().unwrap(), "-o", payload.to_str().unwrap()]).unwrap();
    let kernel = anemos_tests::test_kernel();
    let initrd = dir.join("initramfs.img");
    let modules = kernel.modules_dir.display().to_string();
    anemos(&["initramfs", "-o", initrd.to_str().unwrap(), "--kernel-release", &kernel.release, "--modules-dir", &modules, "--no-autodetect", "--payload", payload.to_str().unwrap()]).unwrap();
    // The disk holds an old system: a partition table and a filesystem.
    let disk = dir.join("disk.img");
    sh(&format!("truncate -s 2G {0} && echo 'start=2048, type=83' | sfdisk -q {0} && mke2fs -q -t ext4 -E offset=1048576 -L oldroot {0} 1G", disk.display())).unwrap();
    let mut config = Config::direct(&kernel.vmlinuz, &initrd);
    config.accel = anemos_qemu::choose_accel(&kernel.vmlinuz, &initrd);
    config.append = "anemos.target=serial:provision-disk".into();
    config.disks = vec![Disk { serial: Some("provision-disk".into()), ..Disk::raw(&disk) }];
    config.net = Some(Net::default());
    let mut vm = Vm::start(&config, Console::Capture(dir.join("console.log"))).unwrap();
    vm.expect_event(Duration::from_secs(1800), |e| matches!(e, installer::event::Event::Rescue)).unwrap();
    let screen = vm.output_text();
    let failure = &screen[screen.find("step provision failed").expect("the failure is on the console")..];
    assert!(failure.contains("the last command was: ls /nonexistent-anemos-path"), "{failure}");
    assert!(
        failure.contains("No such file or directory") && failure.contains("setting up the frobnicator with key=[secret frob_key]"),
        "the command's output is not shown, or not redacted: {failure}"
    );
    assert!(!screen.contains(SECRET), "the secret's value reached the console");
    assert!(!screen.contains("never reached"));
    assert!(screen.contains("safety step done: make the half-installed"), "the disk was not made unbootable");
    vm.send("poweroff\n").unwrap();
    assert!(vm.wait_exit(Duration::from_secs(120)).unwrap().success());
    // No partition table, no boot code: neither firmware nor a person takes it for a system.
    sh(&format!("cmp -n 1048576 {} /dev/zero", disk.display())).expect("the start of the disk is not zeroed");
    assert!(sh(&format!("sfdisk -d {}", disk.display())).is_err(), "a partition table survived");
    passed(&dir);
}
