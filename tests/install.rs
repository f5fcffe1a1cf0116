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

/// Waits for the login prompt, which may already have been printed before the report line
/// (getty and the report unit race).
fn wait_login(vm: &mut Vm) {
    if !vm.output_text().contains(" login: ") {
        vm.expect("login:", BOOT).unwrap();
    }
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
    wait_login(&mut vm);
    // The user key from files/ lets the demo user in; the install log is in the new system.
    let out = sh(&format!(
        "ssh -i {} -p {ssh_port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=20 demo@127.0.0.1 'hostname; sudo test -s /var/log/anemos/install.log && echo log-present; sudo ls /boot/efi/EFI/BOOT'",
        dir.join("id_ed25519").display()
    ))
    .unwrap();
    assert!(out.contains("debian-minimal") && out.contains("log-present") && out.contains("BOOTX64.EFI"), "{out}");
}

/// The mail-server example built once for this test binary (with a root key for the
/// deploy tests), its seeded /home disk, and that disk's checksum before the build.
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
        // The deploy tests log in as root with the test key.
        sh(&format!(
            "mkdir -p {0}/files/root/.ssh && cp {1}.pub {0}/files/root/.ssh/authorized_keys && chmod 700 {0}/files/root {0}/files/root/.ssh",
            project.display(),
            dir.join("id_ed25519").display()
        ))
        .unwrap();
        // The preserved disk: ext4 with a mailbox already in it.
        let seed = dir.join("home-seed");
        sh(&format!(
            "mkdir -p {0}/vmail/mail/Maildir/cur {0}/vmail/mail/Maildir/new {0}/vmail/mail/Maildir/tmp && printf 'From: a@example.test\\nSubject: kept\\n\\nkept across reinstalls\\n' > {0}/vmail/mail/Maildir/cur/1.seed:2,S && chown -R 5000:5000 {0}/vmail",
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

#[test]
#[ignore = "the seeded mailbox on /home is not seen by Dovecot over IMAP (login with the secret works): open; `make test-long`"]
fn mail_server_bios_grub_keeps_home_and_serves_mail() {
    let _lock = vm_lock();
    let m = mail_build();
    assert_eq!(sh(&format!("sha256sum < {}", m.home.display())).unwrap(), m.home_sum, "the install wrote to the preserved disk");
    // Boot copies, so that the deploy tests start from the built image whatever the order.
    let dir = scratch("install-mail-boot");
    let (image, home) = (dir.join("mail.img"), dir.join("home.img"));
    sh(&format!("cp --sparse=always {} {} && cp --sparse=always {} {}", m.image.display(), image.display(), m.home.display(), home.display())).unwrap();
    let (imap, smtp) = (free_port(), free_port());
    let disks = vec![Disk { serial: Some("mail-system".into()), ..Disk::raw(&image) }, Disk { serial: Some("mail-home".into()), ..Disk::raw(&home) }];
    let mut vm = boot(disks, false, vec![(imap, 143), (smtp, 25)], &dir.join("boot.log"));
    let r = report(&mut vm);
    assert_eq!((r["host"].as_str(), r["dpkg-audit"].as_str(), r["fstab"].as_str()), ("mail", "clean", "valid"));
    assert_eq!(r["mounted"], "/,/home");
    // The secret reached Dovecot's config: a login with it works (the password is read
    // from the age file here and never printed).
    let password = sh(&format!("age -d -i {} {}", m.identity.display(), m.project.join("secrets/mailpass.age").display())).unwrap();
    let session = format!("a LOGIN mail {password}\\r\\nb SELECT INBOX\\r\\nc LOGOUT\\r\\n");
    let reply = imap_session(imap, &session);
    assert!(reply.contains("a OK"), "IMAP login with the secret failed");
    assert!(reply.contains("* 1 EXISTS"), "the mailbox on the preserved disk is not there");
    let banner = sh(&format!("timeout 20 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{smtp}; head -1 <&3'")).unwrap();
    assert!(banner.starts_with("220 mail.example.test ESMTP Postfix"), "{banner}");
    assert!(!std::fs::read_to_string(m.dir.join("install.log")).unwrap().contains(password.trim()), "the secret reached the install log");
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

/// A running mail server, booted from copies of the built image and /home disk, with ssh
/// and the installer's event endpoint forwarded to loopback ports. Reboots reset it (a
/// real machine), they do not end QEMU.
struct Server {
    vm: Vm,
    dir: PathBuf,
    events_port: u16,
    ssh_config: PathBuf,
}

fn start_server(name: &str) -> Server {
    let m = mail_build();
    let dir = scratch(name);
    let (image, home) = (dir.join("mail.img"), dir.join("home.img"));
    sh(&format!("cp --sparse=always {} {} && cp --sparse=always {} {}", m.image.display(), image.display(), m.home.display(), home.display())).unwrap();
    let (ssh_port, events_port) = (free_port(), free_port());
    let mut config = Config::from_disk(Disk { serial: Some("mail-system".into()), ..Disk::raw(&image) }, Firmware::Bios);
    config.disks.push(Disk { serial: Some("mail-home".into()), ..Disk::raw(&home) });
    config.net = Some(Net { forwards: vec![(ssh_port, 22), (events_port, 7777)], ..Default::default() });
    config.allow_reboot = true;
    let mut vm = Vm::start(&config, Console::Capture(dir.join("console.log"))).unwrap();
    vm.expect("login:", BOOT).unwrap();
    let ssh_config = dir.join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!(
            "Host server\n  HostName 127.0.0.1\n  Port {ssh_port}\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  ConnectTimeout 20\n",
            m.dir.join("id_ed25519").display()
        ),
    )
    .unwrap();
    Server { vm, dir, events_port, ssh_config }
}

impl Server {
    /// Runs a command on the server over ssh, retrying while sshd is not up yet.
    fn ssh(&self, cmd: &str) -> String {
        let line = format!("ssh -F {} server {}", self.ssh_config.display(), anemos_tests::shell_quote(cmd));
        for _ in 0..20 {
            if let Ok(out) = sh(&line) {
                return out;
            }
            std::thread::sleep(Duration::from_secs(5));
        }
        sh(&line).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The checksums of every file under /home (the preserved disk's data).
    fn home_sums(&self) -> String {
        let sums = self.ssh("cd /home && find . -type f | sort | xargs -d '\\n' sha256sum");
        assert!(sums.contains("1.seed"), "the seeded mailbox is not in /home: {sums}");
        sums
    }

    /// `anemos deploy server` with a project variant; returns (success, stdout, stderr).
    fn deploy(&self, project: &Path, extra: &[&str]) -> (bool, String, String) {
        let mirrors: Vec<String> = mirror_args().iter().map(|a| a.replace("://127.0.0.1", "://10.0.2.2")).collect();
        let events = format!("127.0.0.1:{}", self.events_port);
        let identity = mail_build().identity.display().to_string();
        let ssh_config = self.ssh_config.display().to_string();
        let project = project.display().to_string();
        let mut args = vec!["deploy", "server", "-C", &project, "--identity", &identity, "--ssh-config", &ssh_config, "--events", &events, "--yes", "--timeout", "2400", "--ssh-timeout", "900"];
        args.extend(mirrors.iter().map(String::as_str));
        args.extend(extra);
        let out = std::process::Command::new(anemos_tests::anemos_bin()).args(&args).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        std::fs::write(self.dir.join(format!("deploy-{}.log", self.vm.elapsed().as_secs())), format!("{stdout}\n{stderr}")).unwrap();
        (out.status.success(), stdout, stderr)
    }
}

/// A copy of the built mail-server project with `lines` appended to its IMGBUILD (later
/// assignments win in the shell).
fn variant(name: &str, lines: &str) -> PathBuf {
    let dir = scratch(name);
    sh(&format!("cp -a {}/. {}/", mail_build().project.display(), dir.display())).unwrap();
    let imgbuild = dir.join("IMGBUILD");
    let mut text = std::fs::read_to_string(&imgbuild).unwrap();
    text.push_str(lines);
    std::fs::write(&imgbuild, text).unwrap();
    dir
}

#[test]
#[ignore = "two full reinstalls of the mail server under TCG (~40 min): `make test-long`"]
fn deploy_reinstalls_a_running_server_over_ssh_keeping_home() {
    let _lock = vm_lock();
    let server = start_server("deploy-server");
    let before = server.home_sums();
    // Captured static network (the default): another host name, another package, and
    // GRUB for BIOS on a GPT disk with a BIOS boot partition this time.
    let project = variant("deploy-mail2", "\nhostname=mail2\npackages=\"$packages tree\"\ntable=gpt\npartitions=\"\n\tbios 1M bios-boot\n\troot rest root ext4 /\n\"\n");
    let (ok, stdout, stderr) = server.deploy(&project, &[]);
    assert!(ok, "deploy failed:\n{stdout}\n{stderr}");
    for want in ["connected to the installer", "installer ready", "packages done in", "install done in"] {
        assert!(stderr.contains(want), "no progress line {want:?} reached the workstation:\n{stderr}");
    }
    assert!(stdout.contains("server: deployed"), "{stdout}");
    let console = server.vm.output_text();
    assert!(console.contains("10.0.2.15/24 (static)"), "the installer did not use the captured static address");
    assert_eq!(server.ssh("hostname; dpkg-query -W -f='${Status}\\n' tree"), "mail2\ninstall ok installed\n");
    let table = server.ssh("sfdisk -d /dev/disk/by-id/virtio-mail-system");
    assert!(table.contains("label: gpt") && table.contains("21686148-6449-6E6F-744E-656564454649"), "not GRUB on GPT with a BIOS boot partition: {table}");
    assert_eq!(server.home_sums(), before, "/home changed across the reinstall");
    // The same with DHCP in the installer.
    let project = variant("deploy-mail3", "\nhostname=mail3\n");
    let (ok, stdout, stderr) = server.deploy(&project, &["--dhcp"]);
    assert!(ok, "deploy with --dhcp failed:\n{stdout}\n{stderr}");
    let console = server.vm.output_text();
    assert!(console.contains("10.0.2.15/24 (DHCP from 10.0.2.2)"), "the second installer did not use DHCP");
    assert_eq!(server.ssh("hostname"), "mail3\n");
    assert_eq!(server.home_sums(), before, "/home changed across the second reinstall");
}

#[test]
#[ignore = "boots the mail server and deploys to it under TCG (~10 min after the build): `make test-long`"]
fn deploy_of_a_missing_package_fails_before_the_wipe_and_the_old_system_boots() {
    let _lock = vm_lock();
    let mut server = start_server("deploy-fails");
    let project = variant("deploy-missing", "\npackages=\"$packages no-such-package-anemos\"\non_failure=reboot\n");
    let (ok, stdout, stderr) = server.deploy(&project, &[]);
    assert!(!ok, "the deploy of a missing package succeeded:\n{stdout}");
    assert!(stderr.contains("connected to the installer"), "the events never reached the workstation:\n{stderr}");
    assert!(stderr.contains("no-such-package-anemos"), "the event stream did not say why:\n{stderr}");
    assert!(stderr.contains("the disk was not touched"), "{stderr}");
    // The installer reboots; the firmware finds the old, untouched system.
    server.vm.expect("login:", BOOT).unwrap();
    assert_eq!(server.ssh("hostname"), "mail\n");
}

#[test]
fn provision_failure_stops_in_rescue_showing_the_command_and_leaves_no_bootable_disk() {
    let _lock = vm_lock();
    let dir = scratch("install-provision-fails");
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let mirrors: Vec<String> = mirror_args().iter().map(|a| a.replace("://127.0.0.1", "://10.0.2.2")).collect();
    let security = mirrors.iter().position(|a| a == "--security-mirror").map(|i| format!("security_mirror={}\n", mirrors[i + 1])).unwrap_or_default();
    std::fs::write(
        project.join("IMGBUILD"),
        format!(
            "imgname=provision-fails\ntarget=debian\ndebian_suite=bookworm\nmirror={}\n{security}format=\"raw 2G\"\ntable=msdos\npartitions=\"root rest root ext4 /\"\nbootloader=none\n\nprovision() {{\n\techo \"setting up the frobnicator\"\n\tls /nonexistent-anemos-path\n\techo never reached\n}}\n",
            mirrors[1]
        ),
    )
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
    assert!(failure.contains("No such file or directory") && failure.contains("setting up the frobnicator"), "the command's output is not shown: {failure}");
    assert!(!screen.contains("never reached"));
    assert!(screen.contains("safety step done: make the half-installed"), "the disk was not made unbootable");
    vm.send("poweroff\n").unwrap();
    assert!(vm.wait_exit(Duration::from_secs(120)).unwrap().success());
    // No partition table, no boot code: neither firmware nor a person takes it for a system.
    sh(&format!("cmp -n 1048576 {} /dev/zero", disk.display())).expect("the start of the disk is not zeroed");
    assert!(sh(&format!("sfdisk -d {}", disk.display())).is_err(), "a partition table survived");
}
