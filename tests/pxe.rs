//! `anemos pxe`: the files it writes, judged by GNU cpio and zstd, and a network boot of
//! them in QEMU (iPXE from the NIC's option ROM, TFTP from QEMU's user network) that checks
//! the installer's clock handling on the way: an RTC in 2001 is raised to the payload's
//! build time, then corrected from the mirror's `Date`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anemos_qemu::{choose_accel, Config, Console, Disk, Vm};
use anemos_tests::{anemos, free_port, http, scratch, sh, test_kernel, vm_lock, workspace};
use installer::event::Event;

/// 2024-01-01 00:00:00 UTC: the mtime of every project file, hence the build time.
const BUILT: u64 = 1_704_067_200;
const TOKEN: &str = "pxe-test-token-0123456789";

/// A copy of an example whose files all carry the mtime [`BUILT`], with `extra` appended
/// to its IMGBUILD.
fn project(dir: &Path, example: &str, extra: &str) -> PathBuf {
    let p = dir.join("project");
    sh(&format!("cp -a {}/. {}", workspace().join(example).display(), p.display())).unwrap();
    if !extra.is_empty() {
        let mut f = std::fs::OpenOptions::new().append(true).open(p.join("IMGBUILD")).unwrap();
        writeln!(f, "{extra}").unwrap();
    }
    sh(&format!("find {} -exec touch -h -d @{BUILT} {{}} +", p.display())).unwrap();
    p
}

/// `anemos pxe PROJECT -o OUT` for the test kernel, with more arguments.
fn pxe(project: &Path, out: &Path, extra: &[&str]) -> String {
    // Reproducible: the payload's packing time is this, not the clock's.
    std::env::set_var("SOURCE_DATE_EPOCH", BUILT.to_string());
    let k = test_kernel();
    let mut args = vec!["pxe", project.to_str().unwrap(), "-o", out.to_str().unwrap(), "--kernel", k.vmlinuz.to_str().unwrap(), "--modules-dir", k.modules_dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    anemos(&args).unwrap_or_else(|e| panic!("{e:#}"))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The payload archive appended to `initramfs.img` after the plain `anemos initramfs`
/// image `base`, padded to 4 bytes; returns its listing (`cpio -itv`).
fn payload_listing(initrd: &Path, base: &[u8]) -> String {
    let bytes = std::fs::read(initrd).unwrap();
    assert_eq!(&bytes[..base.len()], base, "the initramfs does not start with the standard image");
    let start = base.len().next_multiple_of(4);
    assert!(bytes[base.len()..start].iter().all(|&b| b == 0));
    sh(&format!("tail -c +{} {} | zstd -dc | cpio -itv --quiet", start + 1, initrd.display())).unwrap()
}

/// One member of that payload.
fn payload_member(initrd: &Path, base_len: usize, member: &str) -> String {
    let start = base_len.next_multiple_of(4);
    sh(&format!("tail -c +{} {} | zstd -dc | cpio -i --quiet --to-stdout {member}", start + 1, initrd.display())).unwrap()
}

#[test]
fn pxe_writes_kernel_initramfs_with_payload_script_and_token() {
    let dir = scratch("pxe-files");
    let project = project(&dir, "examples/debian-minimal", "");
    let (out, again) = (dir.join("out"), dir.join("again"));
    let summary = pxe(&project, &out, &["--token", TOKEN, "--console", "ttyS0,115200", "--append", "anemos.log=debug"]);
    assert!(summary.contains("boot.ipxe") && summary.contains("tftp=") && summary.contains("payload.token"), "{summary}");
    let k = test_kernel();
    assert_eq!(std::fs::read(out.join("vmlinuz")).unwrap(), std::fs::read(&k.vmlinuz).unwrap());
    assert_eq!(
        std::fs::read_to_string(out.join("boot.ipxe")).unwrap(),
        "#!ipxe\n\
         # The anemos installer for debian-minimal, written by `anemos pxe`. It WIPES the disk its plan names.\n\
         echo anemos: loading the installer for debian-minimal\n\
         kernel vmlinuz initrd=initramfs.img anemos.mode=install console=ttyS0,115200 anemos.log=debug\n\
         initrd initramfs.img\n\
         boot\n"
    );
    assert_eq!(std::fs::read_to_string(out.join("payload.token")).unwrap(), format!("{TOKEN}\n"));
    let modes: Vec<u32> = ["vmlinuz", "initramfs.img", "payload.token", "boot.ipxe"].iter().map(|f| mode(&out.join(f))).collect();
    assert_eq!(modes, [0o644, 0o600, 0o600, 0o644]);
    assert!(std::fs::read_dir(&out).unwrap().count() == 4, "temporary files were left behind");
    // The initramfs is the standard image for this kernel plus the payload.
    let base_path = dir.join("base.img");
    anemos(&["initramfs", "-o", base_path.to_str().unwrap(), "--modules-dir", k.modules_dir.to_str().unwrap(), "--no-autodetect"]).unwrap();
    let base = std::fs::read(&base_path).unwrap();
    let initrd = out.join("initramfs.img");
    let listing = payload_listing(&initrd, &base);
    for member in ["anemos/payload/plan.json", "anemos/payload/IMGBUILD", "anemos/payload/build-time", "anemos/payload/inputs/0/home/demo/.ssh/authorized_keys"] {
        assert!(listing.lines().any(|l| l.ends_with(member)), "{member} missing:\n{listing}");
    }
    assert!(listing.lines().any(|l| l.starts_with("-rw-------") && l.ends_with("anemos/payload/token")), "{listing}");
    assert_eq!(payload_member(&initrd, base.len(), "anemos/payload/token"), format!("{TOKEN}\n"));
    assert_eq!(payload_member(&initrd, base.len(), "anemos/payload/build-time"), format!("{BUILT}\n"));
    assert!(payload_member(&initrd, base.len(), "anemos/payload/plan.json").contains("\"imgname\": \"debian-minimal\""));
    // The same inputs and token give the same bytes.
    pxe(&project, &again, &["--token", TOKEN, "--console", "ttyS0,115200", "--append", "anemos.log=debug"]);
    for f in ["vmlinuz", "initramfs.img", "payload.token", "boot.ipxe"] {
        assert!(std::fs::read(out.join(f)).unwrap() == std::fs::read(again.join(f)).unwrap(), "{f} differs between two runs");
    }
}

#[test]
fn pxe_with_secrets_and_a_random_token() {
    let dir = scratch("pxe-secrets");
    let project = project(&dir, "examples/mail-server", "");
    let identity = project.join("demo-age.key");
    let out = dir.join("out");
    pxe(&project, &out, &["--identity", identity.to_str().unwrap()]);
    let token = std::fs::read_to_string(out.join("payload.token")).unwrap();
    assert!(token.trim().len() == 64 && token.trim().bytes().all(|b| b.is_ascii_hexdigit()), "{token:?}");
    let script = std::fs::read_to_string(out.join("boot.ipxe")).unwrap();
    assert!(script.contains("kernel vmlinuz initrd=initramfs.img anemos.mode=install console=tty0 console=ttyS0,115200\n"), "{script}");
    // The revealed secret is in the payload, mode 0600, and the file holding it is 0600.
    let k = test_kernel();
    let base_path = dir.join("base.img");
    // The mail server's / is btrfs: its initramfs carries the btrfs module beyond the defaults.
    anemos(&["initramfs", "-o", base_path.to_str().unwrap(), "--modules-dir", k.modules_dir.to_str().unwrap(), "--no-autodetect", "--module", "btrfs"]).unwrap();
    let base = std::fs::read(&base_path).unwrap();
    let listing = payload_listing(&out.join("initramfs.img"), &base);
    assert!(listing.lines().any(|l| l.starts_with("-rw-------") && l.ends_with("anemos/payload/secrets/mailpass")), "{listing}");
    assert_eq!(payload_member(&out.join("initramfs.img"), base.len(), "anemos/payload/token"), token);
    assert_eq!(mode(&out.join("initramfs.img")), 0o600);
    let password = sh(&format!("age -d -i {} {}", identity.display(), project.join("secrets/mailpass.age").display())).unwrap();
    assert_eq!(payload_member(&out.join("initramfs.img"), base.len(), "anemos/payload/secrets/mailpass"), password);
}

#[test]
fn pxe_refuses_a_kernel_that_does_not_match_its_modules() {
    let dir = scratch("pxe-mismatch");
    let project = project(&dir, "examples/debian-minimal", "");
    let k = test_kernel();
    let out = dir.join("out");
    let err = anemos(&["pxe", project.to_str().unwrap(), "-o", out.to_str().unwrap(), "--kernel", k.vmlinuz.to_str().unwrap(), "--kernel-release", "9.9.9-other"]).unwrap_err().to_string();
    assert!(err.contains(&format!("is Linux {}", k.release)) && err.contains("for 9.9.9-other"), "{err}");
    let err = anemos(&["pxe", project.to_str().unwrap(), "-o", out.to_str().unwrap(), "--kernel", k.vmlinuz.to_str().unwrap(), "--append", "a\nchain x"]).unwrap_err().to_string();
    assert!(err.contains("--append"), "{err}");
    assert!(!out.exists(), "a refused run wrote {}", out.display());
}

/// A "mirror" that answers every request 404 with this `Date`. Returns its port.
fn dated_server(date: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && !line.ends_with("\r\n\r\n") {}
            let _ = write!(conn, "HTTP/1.1 404 Not Found\r\nDate: {date}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    port
}

#[test]
fn netboot_sets_the_clock_and_serves_events_to_the_token() {
    let dir = scratch("pxe-netboot");
    let mirror = dated_server("Wed, 02 Jan 2030 03:04:05 GMT");
    let project = project(&dir, "examples/debian-minimal", &format!("mirror=http://10.0.2.2:{mirror}/debian"));
    let out = dir.join("tftp");
    pxe(&project, &out, &[]);
    let token = std::fs::read_to_string(out.join("payload.token")).unwrap();
    let disk = dir.join("disk.img");
    sh(&format!("truncate -s 4G {}", disk.display())).unwrap();
    let _lock = vm_lock();
    let port = free_port();
    let mut config = Config::netboot(&out, "boot.ipxe");
    config.accel = choose_accel(&out.join("vmlinuz"), &out.join("initramfs.img"));
    config.disks = vec![Disk::raw(&disk)];
    config.net.as_mut().unwrap().forwards = vec![(port, 7777)];
    config.extra = vec!["-rtc".into(), "base=2001-01-01T00:00:00".into()];
    let mut vm = Vm::start(&config, Console::Capture(dir.join("console.log"))).unwrap();
    let boot = Duration::from_secs(240);
    let loaded = vm.expect_event(boot, |e| matches!(e, Event::PlanLoaded { .. })).unwrap();
    assert!(matches!(&loaded, Event::PlanLoaded { imgname, .. } if imgname == "debian-minimal"), "{loaded:?}");
    let ready = vm.expect_event(boot, |e| matches!(e, Event::Ready { .. })).unwrap();
    let Event::Ready { network, mode, .. } = ready else { unreachable!() };
    assert_eq!(mode, "install");
    assert!(network.iter().any(|a| a.contains("10.0.2.15/24")), "{network:?}");
    let failed = vm.expect_event(boot, |e| matches!(e, Event::Failed { .. })).unwrap();
    let Event::Failed { phase, error, .. } = failed else { unreachable!() };
    assert_eq!(phase, "indexes", "{error}");
    vm.expect_event(boot, |e| matches!(e, Event::Rescue)).unwrap();
    eprintln!("netboot: QEMU start to the failed indexes phase in {:.1} s ({:?})", vm.elapsed().as_secs_f64(), config.accel);
    let console = vm.output_text();
    assert!(console.contains("command line: initrd=initramfs.img anemos.mode=install console=tty0 console=ttyS0,115200"), "iPXE did not run the script");
    assert!(console.contains("clock: 2001-01-01 00:00:"), "the RTC's time was not logged:\n{console}");
    assert!(console.contains("is before the payload was packed; set to 2024-01-01 00:00:00 UTC"), "no floor:\n{console}");
    assert!(console.contains(&format!("→ 2030-01-02 03:04:05 UTC (the Date of http://10.0.2.2:{mirror}/)")), "no correction:\n{console}");
    // The event endpoint of the netbooted installer answers the token from payload.token only.
    let wait = Duration::from_secs(30);
    assert_eq!(http(port, "GET", "/events", Some("wrong-token-0123456789"), wait).unwrap().0, 401);
    let (code, body) = http(port, "GET", "/events?after=0", Some(token.trim()), wait).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"event\":\"plan_loaded\"") && body.contains("\"event\":\"failed\""), "{body}");
    assert_eq!(http(port, "POST", "/control/poweroff", Some(token.trim()), wait).unwrap().0, 202);
    assert!(vm.wait_exit(Duration::from_secs(60)).unwrap().success());
    // Sparse it was made, sparse it stays: nothing was written before the disks phase.
    assert_eq!(sh(&format!("du --block-size=1 {} | cut -f1", disk.display())).unwrap().trim(), "0", "the disk was written");
}
