//! QEMU boots of the Debian kernel with our initramfs, judged by what the guest printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anemos_qemu::{choose_accel, Config, Console, Disk, Vm};
use anemos_tests::{anemos, scratch, sh, test_kernel, vm_lock, workspace};
use installer::event::Event;

const BOOT: Duration = Duration::from_secs(120);

/// An initramfs whose modules come from the fixture tree, where virtio_blk is .ko.xz and
/// ext4 and virtio_net are .ko.zst, so the boot proves all three formats load.
fn initramfs(dir: &Path) -> PathBuf {
    let kernel = test_kernel();
    let script = workspace().join("tests/fixtures/module-tree.sh");
    let tree = sh(&format!("{} {} {}", script.display(), kernel.modules_dir.display(), dir.join("tree").display())).unwrap();
    let out = dir.join("initramfs.img");
    anemos(&["initramfs", "-o", out.to_str().unwrap(), "--modules-dir", tree.trim(), "--no-autodetect"]).unwrap();
    out
}

fn vm(dir: &Path, append: &str) -> Vm {
    let kernel = test_kernel();
    let initrd = initramfs(dir);
    let disk = dir.join("disk.img");
    sh(&format!("truncate -s 1G {}", disk.display())).unwrap();
    let mut config = Config::direct(&kernel.vmlinuz, &initrd);
    config.accel = choose_accel(&kernel.vmlinuz, &initrd);
    config.append = append.to_string();
    config.disks = vec![Disk::raw(&disk)];
    config.net = Some(Default::default());
    Vm::start(&config, Console::Capture(dir.join("console.log"))).unwrap()
}

#[test]
fn smoke_boot_loads_modules_sees_disk_and_powers_off() {
    let _lock = vm_lock();
    let dir = scratch("boot-smoke");
    let mut vm = vm(&dir, "anemos.mode=probe anemos.wait=vda anemos.modules=ext4,vfat");
    let ready = vm.expect_event(BOOT, |e| matches!(e, Event::Ready { .. })).unwrap();
    let Event::Ready { block_devices, modules_loaded, .. } = ready else { unreachable!() };
    assert!(block_devices.contains(&"vda".to_string()), "{block_devices:?}");
    let out = vm.output_text();
    let loaded = out.lines().find(|l| l.contains("INFO  loaded ")).expect("module report");
    for m in ["virtio_pci", "virtio_blk", "virtio_net", "ext4", "jbd2", "crc32c_generic", "vfat"] {
        assert!(loaded.split_whitespace().any(|w| w == m), "{m} not loaded: {loaded}");
    }
    assert!(modules_loaded >= 10);
    vm.expect_event(BOOT, |e| matches!(e, Event::Shutdown { action } if action == "poweroff")).unwrap();
    vm.expect("reboot: Power down", BOOT).unwrap();
    assert!(vm.wait_exit(Duration::from_secs(30)).unwrap().success());
    assert!(!out.contains("Kernel panic"), "kernel panic:\n{out}");
}

#[test]
fn failure_enters_rescue_console_which_answers_and_powers_off() {
    let _lock = vm_lock();
    let dir = scratch("boot-rescue");
    let mut vm = vm(&dir, "anemos.wait=vda anemos.fail=devices");
    let failed = vm.expect_event(BOOT, |e| matches!(e, Event::Failed { .. })).unwrap();
    assert!(matches!(&failed, Event::Failed { phase, action, .. } if phase == "devices" && action == "rescue"), "{failed:?}");
    vm.expect_event(BOOT, |e| matches!(e, Event::Rescue)).unwrap();
    vm.expect("anemos-rescue> ", BOOT).unwrap();
    vm.send("help\n").unwrap();
    let help = vm.expect("anemos-rescue> ", BOOT).unwrap();
    for cmd in ["log", "dmesg", "ls", "cat", "mounts", "disks", "net", "reboot", "poweroff"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(cmd)), "help lacks {cmd}:\n{help}");
    }
    vm.send("disks\n").unwrap();
    let disks = vm.expect("anemos-rescue> ", BOOT).unwrap();
    assert!(disks.contains("/dev/vda 1 GiB"), "{disks}");
    vm.send("status\n").unwrap();
    let status = vm.expect("anemos-rescue> ", BOOT).unwrap();
    assert!(status.contains("step devices failed") && status.contains("anemos.fail=devices"), "{status}");
    vm.send("cat /proc/cmdline\n").unwrap();
    assert!(vm.expect("anemos-rescue> ", BOOT).unwrap().contains("anemos.fail=devices"));
    vm.send("nonsense\n").unwrap();
    assert!(vm.expect("anemos-rescue> ", BOOT).unwrap().contains("unknown command"));
    vm.send("poweroff\n").unwrap();
    vm.expect_event(BOOT, |e| matches!(e, Event::Shutdown { .. })).unwrap();
    assert!(vm.wait_exit(Duration::from_secs(60)).unwrap().success());
}

#[test]
fn missing_disk_fails_listing_what_was_seen() {
    let _lock = vm_lock();
    let dir = scratch("boot-missing-disk");
    let mut vm = vm(&dir, "anemos.wait=vdz anemos.wait_timeout=3 anemos.on_failure=poweroff");
    let failed = vm.expect_event(BOOT, |e| matches!(e, Event::Failed { .. })).unwrap();
    let Event::Failed { error, action, .. } = failed else { unreachable!() };
    assert!(error.contains("vdz") && error.contains("vda"), "{error}");
    assert_eq!(action, "poweroff");
    assert!(vm.wait_exit(Duration::from_secs(60)).unwrap().success());
}

#[test]
fn dhcp_in_the_initramfs_configures_address_route_and_dns() {
    let _lock = vm_lock();
    let dir = scratch("boot-dhcp");
    let mut vm = vm(&dir, "anemos.mode=rescue anemos.net=dhcp");
    let ready = vm.expect_event(BOOT, |e| matches!(e, Event::Ready { .. })).unwrap();
    let Event::Ready { network, .. } = ready else { unreachable!() };
    assert!(network.iter().any(|a| a.contains("10.0.2.15/24") && a.contains("DHCP from 10.0.2.2")), "{network:?}");
    vm.expect("anemos-rescue> ", BOOT).unwrap();
    vm.send("net\n").unwrap();
    let net = vm.expect("anemos-rescue> ", BOOT).unwrap();
    for want in ["inet 10.0.2.15/24", "route default via 10.0.2.2", "nameserver 10.0.2.3", "inet 127.0.0.1/8"] {
        assert!(net.contains(want), "{want} missing:\n{net}");
    }
    vm.send("poweroff\n").unwrap();
    assert!(vm.wait_exit(Duration::from_secs(60)).unwrap().success());
}

#[test]
fn static_address_from_the_command_line() {
    let _lock = vm_lock();
    let dir = scratch("boot-static-net");
    let mut vm = vm(&dir, "anemos.mode=probe anemos.ip=10.0.2.99/24 anemos.gw=10.0.2.2 anemos.dns=10.0.2.3");
    let ready = vm.expect_event(BOOT, |e| matches!(e, Event::Ready { .. })).unwrap();
    let Event::Ready { network, .. } = ready else { unreachable!() };
    assert!(network.iter().any(|a| a.ends_with("10.0.2.99/24 (static)")), "{network:?}");
    assert!(!vm.output_text().contains("DHCP"), "DHCP was used although a static address was given");
    assert!(vm.wait_exit(Duration::from_secs(60)).unwrap().success());
}

/// A payload archive that holds only a deploy token (made by GNU cpio, the reference).
fn token_payload(dir: &Path, token: &str) -> PathBuf {
    sh(&format!(
        "cd {} && mkdir -p tp/anemos/payload && printf '{token}\\n' > tp/anemos/payload/token && cd tp && printf 'anemos\\nanemos/payload\\nanemos/payload/token\\n' | cpio -o -H newc --quiet > ../token.cpio",
        dir.display()
    ))
    .unwrap();
    dir.join("token.cpio")
}

#[test]
fn event_endpoint_needs_the_token_streams_events_and_takes_control() {
    let _lock = vm_lock();
    let dir = scratch("boot-status");
    let kernel = test_kernel();
    let base = initramfs(&dir);
    let initrd = dir.join("with-token.img");
    let payload = token_payload(&dir, "s3cret-token");
    let mut bytes = std::fs::read(&base).unwrap();
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
    bytes.extend(std::fs::read(&payload).unwrap());
    std::fs::write(&initrd, bytes).unwrap();
    let port = anemos_tests::free_port();
    let mut config = Config::direct(&kernel.vmlinuz, &initrd);
    config.accel = choose_accel(&kernel.vmlinuz, &initrd);
    config.append = "anemos.net=dhcp anemos.fail=payload".into();
    config.net = Some(anemos_qemu::Net { forwards: vec![(port, 7777)], ..Default::default() });
    let mut vm = Vm::start(&config, Console::Capture(dir.join("console.log"))).unwrap();
    vm.expect_event(BOOT, |e| matches!(e, Event::Rescue)).unwrap();
    let wait = Duration::from_secs(30);
    assert_eq!(anemos_tests::http(port, "GET", "/events", None, wait).unwrap().0, 401);
    assert_eq!(anemos_tests::http(port, "GET", "/events", Some("wrong"), wait).unwrap().0, 401);
    let (code, body) = anemos_tests::http(port, "GET", "/events?after=0", Some("s3cret-token"), wait).unwrap();
    assert_eq!(code, 200);
    assert!(body.lines().any(|l| l.contains("\"event\":\"phase_started\"") && l.contains("\"modules\"")), "{body}");
    assert!(body.lines().any(|l| l.contains("\"event\":\"failed\"") && l.contains("anemos.fail=payload")), "{body}");
    assert!(body.lines().any(|l| l.contains("\"event\":\"log\"")), "log lines are not events: {body}");
    let (_, log) = anemos_tests::http(port, "GET", "/log", Some("s3cret-token"), wait).unwrap();
    assert!(log.contains("step payload failed"), "{log}");
    assert!(!vm.output_text().contains("s3cret-token"), "the token leaked onto the console");
    // Retry re-executes the init, which fails the same way again and comes back, with the
    // network (brought up for the rescue, since the failure came before it) up again.
    let before = vm.events().iter().filter(|e| matches!(e, Event::Rescue)).count();
    assert_eq!(anemos_tests::http(port, "POST", "/control/retry", Some("s3cret-token"), wait).unwrap().0, 202);
    vm.expect_event(BOOT, |e| matches!(e, Event::Failed { .. })).unwrap();
    vm.expect_event(BOOT, |e| matches!(e, Event::Rescue)).unwrap();
    assert_eq!(vm.events().iter().filter(|e| matches!(e, Event::Rescue)).count(), before + 1);
    // `anemos rescue` shows the failure and the log, and powers the machine off.
    let events = format!("127.0.0.1:{port}");
    let refused = anemos_tests::anemos(&["rescue", "guest", "--token", "wrong", "--events", &events, "--reboot"]).unwrap_err();
    assert!(format!("{refused:#}").contains("answered 401"), "{refused:#}");
    let out = anemos_tests::anemos(&["rescue", "guest", "--token", "s3cret-token", "--events", &events, "--log", "--poweroff"]).unwrap();
    assert!(out.contains("guest: failed in phase payload: failure injected by anemos.fail=payload"), "{out}");
    assert!(out.contains("waits in its rescue console"), "{out}");
    assert!(out.contains("step payload failed"), "the log is missing: {out}");
    assert!(out.contains("guest: poweroff accepted"), "{out}");
    assert!(vm.wait_exit(Duration::from_secs(60)).unwrap().success());
}
