//! IMGBUILD projects end to end: `anemos check` and `anemos pack` on the example corpus in
//! tests/imgbuild/ (through the binary and the library), every bad-input case with its
//! message, the payload judged by zstd and GNU cpio, the files/patches/templates steps
//! applied from an unpacked payload into a target root with planted links, and the init
//! loading the plan in QEMU.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anemos_qemu::{choose_accel, Config, Console, Vm};
use anemos_tests::{anemos, anemos_bin, scratch, sh, test_kernel, vm_lock, workspace};
use installer::event::Event;
use installer::files::{apply_all, apply_patches, InputDir};
use installer::imgbuild::{check, CheckOptions};
use installer::payload::Payload;
use installer::plan::{Bootloader, DiskSelector, LayoutOrigin, PartKind, Plan, PreserveTarget, SecretSource, TableType, Target};

fn corpus(name: &str) -> PathBuf {
    workspace().join("tests/imgbuild").join(name)
}

/// Runs anemos; (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(anemos_bin()).args(args).output().expect("running anemos");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A scratch copy of the arch-mail example with its secrets made by the real age tools.
fn arch_mail(name: &str, wrong_key: bool) -> PathBuf {
    let dir = scratch(name).join("arch-mail");
    sh(&format!("cp -a {} {}", corpus("arch-mail").display(), dir.display())).unwrap();
    let script = workspace().join("tests/fixtures/imgbuild-secrets.sh");
    sh(&format!("{} {} {}", script.display(), dir.display(), if wrong_key { "wrong-key" } else { "" })).unwrap();
    dir
}

#[test]
fn examples_check_clean_and_print_the_plan() {
    let out = anemos(&["check", corpus("debian-minimal").to_str().unwrap()]).unwrap();
    assert!(out.contains("plan for debian-minimal (target debian bookworm"), "{out}");
    assert!(out.contains("a new msdos table with:") && out.contains("root            rest  root      ext4  / (bootable)"), "{out}");
    assert!(out.contains("bootloader    grub; kernel command line: quiet + the installer's console="), "{out}");

    let (ok, out, err) = run(&["check", corpus("preserved-home").to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("WIPED         /dev/disk/by-id/ata-QEMU_HARDDISK_QM00001"), "{out}");
    assert!(out.contains("preserved     disk /dev/disk/by-id/ata-QEMU_HARDDISK_QM00002: never written, mounted at /home (ext4 defaults,noatime)"), "{out}");
    // Its partitions are larger than makeimg's default 8G image: a warning, not an error.
    assert!(err.contains("IMGBUILD:8: warning: partitions: 20.0 GiB of fixed sizes"), "{err}");

    let dir = arch_mail("imgbuild-check-arch", false);
    let key = dir.join("age.key");
    let out = anemos(&["check", dir.to_str().unwrap(), "--identity", key.to_str().unwrap()]).unwrap();
    assert!(out.contains("secrets       dkim_key (age), relay_password (plain file)"), "{out}");
    assert!(out.contains("files/: files 2, symlinks 1, patches 1, templates 3"), "{out}");
    assert!(!out.contains("relay-s3cret") && !out.contains("TEST-DKIM"), "a secret value was printed:\n{out}");
}

#[test]
fn json_carries_the_typed_plan() {
    let dir = arch_mail("imgbuild-json", false);
    let key = dir.join("age.key");
    let out = anemos(&["check", "--json", dir.to_str().unwrap(), "--identity", key.to_str().unwrap(), "--format", "raw 16G gpt"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    let plan: Plan = serde_json::from_value(v["plan"].clone()).unwrap();
    assert_eq!(plan.target, Target::Arch);
    assert_eq!(plan.format, installer::plan::Format::Raw { size: 16 << 30 });
    assert_eq!(plan.format_origin, installer::plan::FormatOrigin::CommandLine);
    assert_eq!(plan.disk, Some(DiskSelector::Serial("QM00001".into())));
    assert_eq!(plan.layout.table, TableType::Gpt);
    let kinds: Vec<&PartKind> = plan.layout.partitions.iter().map(|p| &p.kind).collect();
    assert_eq!(kinds, [&PartKind::Esp, &PartKind::Swap, &PartKind::Root]);
    assert_eq!(plan.bootloader, Bootloader::SystemdBoot);
    assert!(matches!(&plan.preserve[0].what, PreserveTarget::Disk { disk: DiskSelector::Serial(s) } if s == "QM00002"));
    assert_eq!(plan.mirror.url, "https://mirror.example.org/archlinux/$repo/os/$arch");
    assert_eq!(plan.secrets.iter().map(|s| (s.name.as_str(), s.source)).collect::<Vec<_>>(), [("dkim_key", SecretSource::Age), ("relay_password", SecretSource::Plain)]);
    assert_eq!(plan.project_files, ["pacman.conf"]);
    assert!(!out.contains("relay-s3cret"));
}

#[test]
fn the_library_gives_the_same_plan_and_legacy_formats_map_onto_the_layout() {
    let opts = CheckOptions { host_root: scratch("imgbuild-no-host"), ..CheckOptions::default() };
    let checked = check(&corpus("preserved-home"), &opts);
    let plan = checked.plan.unwrap_or_else(|| panic!("{}", checked.diagnostics.render()));
    assert_eq!(plan.layout.origin, LayoutOrigin::Partitions);
    assert!(matches!(&plan.preserve[1].what, PreserveTarget::PartLabel { label } if label == "backup"));
    let checked = check(&corpus("debian-minimal"), &opts);
    // No apt sources under the empty host root and no mirror= in the IMGBUILD.
    assert!(checked.plan.is_none());
    assert!(checked.diagnostics.render().contains("IMGBUILD: no package mirror for debian: this host has no apt sources"), "{}", checked.diagnostics.render());
}

/// (directory under tests/imgbuild/bad, a line stderr must contain)
const BAD: &[(&str, &str)] = &[
    ("syntax-error", "IMGBUILD:5: shell: Syntax error: Unterminated quoted string"),
    ("missing-target", "IMGBUILD: target is not set; say which distribution to install (allowed: debian, arch, alpine)"),
    ("misspelt-target", "IMGBUILD:3: target=\"debain\": not a target; did you mean \"debian\"? (allowed: debian, arch, alpine)"),
    ("bad-format", "IMGBUILD:4: format=\"raw 8G gtp ext4\": \"gtp\" is not a partition table type; did you mean \"gpt\"? (allowed: msdos, gpt)"),
    ("custom-format", "IMGBUILD:4: format=\"custom\": format custom is not supported"),
    ("unknown-template-variable", "files/etc/hosts.makeimg.template:2:11: {{ hostnmae }}: the IMGBUILD sets no variable \"hostnmae\"; did you mean \"hostname\"?"),
    ("unknown-secret", "files/etc/app.conf.makeimg.template:1:10: {{ secret:db_password }}: no secret \"db_password\""),
    ("path-escape", "files/etc/shadow.makeimg.template: is a symlink; a patch or template must be a regular file"),
    ("symlink-loop", "files/etc/app/a: symlink loop (/etc/app/a -> ../app/b -> /etc/app/a)"),
    ("raid-disks", "IMGBUILD:11: raid= makes arrays across the disks of disk=, which names 1: list two or more"),
    ("encrypt-secret", "IMGBUILD:11: encrypt: secret \"disk_key\": no secret \"disk_key\": there is no secrets/disk_key.age or secrets/disk_key, and no secrets_command"),
];

#[test]
fn every_bad_input_has_a_clear_message_and_pack_writes_nothing() {
    let out_dir = scratch("imgbuild-bad");
    for (name, expected) in BAD {
        let dir = corpus(&format!("bad/{name}"));
        let (ok, _, err) = run(&["check", dir.to_str().unwrap()]);
        assert!(!ok, "{name}: check passed");
        assert!(err.contains(expected), "{name}: expected\n  {expected}\ngot:\n{err}");
        let payload = out_dir.join(format!("{name}.payload"));
        let (ok, _, err) = run(&["pack", dir.to_str().unwrap(), "-o", payload.to_str().unwrap()]);
        assert!(!ok && err.contains(expected), "{name}: pack: {err}");
        assert!(!payload.exists(), "{name}: pack left {}", payload.display());
    }
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// `encrypt=`: the plan shows each encrypted partition and how it unlocks, the install adds
/// the target's unlocking package, and the passphrases are secrets like the templates'.
/// Every problem is found by check, on its line.
#[test]
fn encrypted_partitions_are_planned_and_checked_line_by_line() {
    let out = anemos(&["check", corpus("encrypted").to_str().unwrap()]).unwrap();
    assert!(out.contains("root           3 GiB  root      ext4  / (LUKS2, secret disk_key, unlocked at boot by a key file)"), "{out}");
    assert!(out.contains("srv             rest  srv       ext4  /srv (LUKS2, secret srv_key, passphrase asked at boot)"), "{out}");
    assert!(out.contains("cryptsetup-initramfs (unlocks the encrypted partitions at boot)"), "{out}");
    assert!(out.contains("secrets       disk_key (secrets_command), srv_key (secrets_command)"), "{out}");
    let json = anemos(&["check", corpus("encrypted").to_str().unwrap(), "--json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let plan: Plan = serde_json::from_value(v["plan"].clone()).unwrap();
    assert_eq!(plan.layout.encrypted.len(), 2);
    assert!(plan.layout.root_encrypted());

    let (ok, _, err) = run(&["check", corpus("bad/encrypt").to_str().unwrap()]);
    assert!(!ok);
    for line in [
        "IMGBUILD:14: encrypt: partition \"esp\" holds vfat: only ext4, btrfs and lvm partitions can be encrypted",
        "IMGBUILD:15: encrypt: partition \"tiny\" is too small to encrypt",
        "IMGBUILD:16: encrypt: there is no partition \"data\" to encrypt (partitions: esp, root, tiny)",
        "IMGBUILD:17: encrypt: \"srv   other_key  sometimes\": \"sometimes\" is not a way to unlock (allowed: prompt, unattended)",
        "has 4 errors",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
    let (ok, _, err) = run(&["check", corpus("bad/encrypt-plan").to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("an encrypted / without a /boot of its own needs bootloader=systemd-boot") && err.contains("has 1 error"), "{err}");
}

/// btrfs and `subvolumes=`: the plan shows each subvolume and where it is mounted, the
/// install adds btrfs-progs, and every problem is found by check, on its line.
#[test]
fn btrfs_subvolumes_are_planned_and_checked_line_by_line() {
    let out = anemos(&["check", corpus("btrfs").to_str().unwrap()]).unwrap();
    assert!(out.contains("root           4 GiB  root      btrfs -"), "{out}");
    assert!(out.contains("btrfs         subvolume @ on root, mounted at /\n"), "{out}");
    assert!(out.contains("btrfs         subvolume @home on root, mounted at /home (noatime)"), "{out}");
    assert!(out.contains("btrfs         subvolume @snapshots on root, mounted at - (not mounted)"), "{out}");
    assert!(out.contains("btrfs         subvolume @/.snapshots on root, mounted at /.snapshots\n"), "{out}");
    assert!(out.contains("btrfs         subvolume @data on srv, mounted at /srv/data"), "{out}");
    assert!(out.contains("btrfs-progs (mounts and checks the btrfs file systems)"), "{out}");
    let json = anemos(&["check", corpus("btrfs").to_str().unwrap(), "--json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let plan: Plan = serde_json::from_value(v["plan"].clone()).unwrap();
    assert_eq!(plan.layout.subvolumes.len(), 5);
    assert!(plan.layout.holds_root("root") && plan.layout.root_subvolume().is_some_and(|s| s.name == "@"));

    let (ok, _, err) = run(&["check", corpus("bad/btrfs").to_str().unwrap()]);
    assert!(!ok);
    for line in [
        "IMGBUILD:9: partitions: partition \"root\" is too small for btrfs: give it at least 128M",
        "IMGBUILD:14: subvolumes: subvolume \"@\" is named twice on \"root\"",
        "IMGBUILD:15: subvolumes: \"data\" holds ext4: subvolumes need btrfs",
        "IMGBUILD:16: subvolumes: there is no partition or volume \"nope\" to make subvolume \"@x\" on",
        "IMGBUILD:17: subvolumes: subvolume \"a/b\" is inside \"a\", which is not a subvolume listed before it on \"root\"",
        "IMGBUILD:18: subvolumes: subvolume name \"@/..\": not . or ..",
        "IMGBUILD:19: subvolumes: \"root  @v     /var  subvol=@w\": options \"subvol=@w\": subvol= is the subvolume's own",
        "has 7 errors",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
    // GRUB reads a btrfs /; from an image, the image must carry btrfs-progs.
    let out = anemos(&["check", corpus("btrfs-image").to_str().unwrap()]).unwrap();
    assert!(out.contains("\n                the image must hold btrfs-progs (checked before the wipe)\n"), "{out}");
}

/// `volume_group=` and `volumes=`: the plan shows the group and its volumes, the install
/// adds lvm2, and every problem is found by check, on its line.
#[test]
fn volume_groups_are_planned_and_checked_line_by_line() {
    let out = anemos(&["check", corpus("lvm").to_str().unwrap()]).unwrap();
    assert!(out.contains("LVM           volume group vg0 over pv, with:"), "{out}");
    assert!(out.contains("root           4 GiB  volume    ext4  /") && out.contains("srv             rest  volume    ext4  /srv"), "{out}");
    assert!(out.contains("lvm2 (activates the volume group at boot)"), "{out}");
    let (ok, _, err) = run(&["check", corpus("bad/lvm").to_str().unwrap()]);
    assert!(!ok);
    for line in [
        "IMGBUILD:20: volumes: \"tmp        1G    vfat\": file system \"vfat\" cannot go on a logical volume (allowed: ext4, btrfs, swap)",
        "IMGBUILD:13: volume_group: partition \"data\" must be of type lvm with file system none",
        "IMGBUILD:13: volume_group: partition \"pv2\" is of type lvm but not in volume group \"vg0\"",
        "IMGBUILD:16: volumes: the volume name \"root\" is used twice",
        "IMGBUILD:18: volumes: only one volume can take the rest of the volume group",
        "IMGBUILD:19: volumes: volume name \"a-very-long-volume-name\" is longer than an ext4 label",
        "has 6 errors",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
}

/// `raid=` over the disks of `disk=`: the plan shows each array, the esp copies and what the
/// install adds; every problem is found by check, on its line; the JSON plan carries it.
#[test]
fn arrays_are_planned_and_checked_line_by_line() {
    let out = anemos(&["check", corpus("raid").to_str().unwrap()]).unwrap();
    assert!(out.contains("WIPED         serial:DISK-A and serial:DISK-B: every byte may be lost; a new gpt table on each with:"), "{out}");
    assert!(out.contains("/boot/efi (a copy on each disk)") && out.contains("/ (raid1 array /dev/md/root across the disks) (LUKS2"), "{out}");
    assert!(out.contains("(raid0 array /dev/md/pv across the disks)") && out.contains("mdadm (assembles the RAID arrays at boot)"), "{out}");
    let json = anemos(&["check", corpus("raid").to_str().unwrap(), "--json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let plan: Plan = serde_json::from_value(v["plan"].clone()).unwrap();
    assert_eq!(plan.other_disks, [installer::plan::DiskSelector::Serial("DISK-B".into())]);
    assert_eq!(plan.layout.raid.iter().map(|r| (r.partition.as_str(), r.level)).collect::<Vec<_>>(), [("root", installer::plan::RaidLevel::Raid1), ("pv", installer::plan::RaidLevel::Raid0)]);
    let (ok, _, err) = run(&["check", corpus("bad/raid").to_str().unwrap()]);
    assert!(!ok);
    for line in [
        "IMGBUILD:16: raid: \"srv   raid5\": \"raid5\" is not a RAID level anemos makes (allowed: raid1, raid0, raid10)",
        "IMGBUILD:14: raid: partition \"esp\" is the esp: it is never an array member",
        "IMGBUILD:15: raid: there is no partition \"data\" to make an array of",
        "IMGBUILD:17: raid: partition \"root\" is named twice",
        "IMGBUILD:6: partitions: partition \"tmp\" is on every disk but in no array: add \"tmp raid1\"",
        "has 6 errors",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
    let (ok, _, err) = run(&["check", corpus("bad/raid-disks").to_str().unwrap()]);
    assert!(!ok && err.contains("has 1 error") && !err.contains("bootloader"), "GRUB boots arrays: {err}");
    // GRUB for BIOS over two disks: its boot code on each, /boot on a mirror, / a btrfs
    // subvolume on a logical volume of an encrypted mirrored volume group.
    let out = anemos(&["check", corpus("raid-grub").to_str().unwrap()]).unwrap();
    assert!(out.contains("bootloader    grub, on every disk (either boots alone)"), "{out}");
    assert!(out.contains("(raid1 array /dev/md/pv across the disks)") && out.contains("(raid1 array /dev/md/boot across the disks)"), "{out}");
    assert!(out.contains("subvolume @ on root, mounted at /") && out.contains("cryptsetup-initramfs"), "{out}");
    // One disk image cannot hold it: anemos image says so before it builds anything.
    let out_dir = scratch("imgbuild-raid-image");
    let (ok, _, err) =
        run(&["image", workspace().join("examples/raid-luks").to_str().unwrap(), "-o", out_dir.to_str().unwrap(), "--identity", workspace().join("examples/raid-luks/demo-age.key").to_str().unwrap()]);
    assert!(!ok && err.contains("lays its layout over 2 disks") && err.contains("anemos deploy, kexec or pxe"), "{err}");
    assert_eq!(std::fs::read_dir(&out_dir).map(|d| d.count()).unwrap_or(0), 0, "anemos image left files");
    // The example checks as it is, without a warning.
    let example = workspace().join("examples/raid-luks");
    let (ok, out, err) = run(&["check", example.to_str().unwrap(), "--identity", example.join("demo-age.key").to_str().unwrap()]);
    assert!(ok && !err.contains("warning") && out.contains("raid1 array /dev/md/pv"), "{out}\n{err}");
}

#[test]
fn all_problems_are_reported_in_one_run() {
    let (ok, _, err) = run(&["check", corpus("bad/many-errors").to_str().unwrap()]);
    assert!(!ok);
    for line in [
        "IMGBUILD:8: partitions: \"esp   512M  esp   ext4  /boot\": an esp must be vfat, not ext4",
        "IMGBUILD:10: partitions: only one partition can take the rest of the disk",
        "IMGBUILD:6: bootloader=\"lilo\": not a bootloader (allowed: systemd-boot, grub, none)",
        "IMGBUILD:12: status_port=\"99999\": not a TCP port (1 to 65535)",
        "IMGBUILD:13: network: \"eth0 192.0.2.7\": \"192.0.2.7\" needs a /PREFIX",
        "IMGBUILD:4: warning: unknown variable \"pakages\"; did you mean \"packages\"?",
        "has 6 errors",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
}

#[test]
fn undecryptable_secret_and_escaping_input_dirs() {
    let dir = arch_mail("imgbuild-wrong-key", true);
    let key = dir.join("age.key");
    let (ok, _, err) = run(&["check", dir.to_str().unwrap(), "--identity", key.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("secrets/dkim_key.age: secret \"dkim_key\": cannot decrypt"), "{err}");
    assert!(!err.contains("TEST-DKIM"), "{err}");
    let (ok, _, err) = run(&["check", corpus("debian-minimal").to_str().unwrap(), "--input", "../arch-mail/files"]);
    assert!(!ok && err.contains("../arch-mail/files: an input directory must be a path inside the project"), "{err}");
}

/// Unpacks a payload with the judges: zstd, then GNU cpio. Returns the listing.
fn unpack(payload: &Path, into: &Path) -> String {
    std::fs::create_dir_all(into).unwrap();
    let p = payload.display();
    let listing = sh(&format!("zstd -dc {p} | cpio -itv --quiet")).unwrap();
    sh(&format!("cd {} && zstd -dc {p} | cpio -idm --quiet --no-absolute-filenames", into.display())).unwrap();
    listing
}

#[test]
fn pack_writes_a_payload_that_zstd_and_cpio_read_back() {
    let dir = arch_mail("imgbuild-pack", false);
    let out = dir.parent().unwrap().join("mx.payload");
    let key = dir.join("age.key");
    let said = anemos(&["pack", dir.to_str().unwrap(), "-o", out.to_str().unwrap(), "--identity", key.to_str().unwrap()]).unwrap();
    assert!(said.contains("for mx (1 input trees, 2 secrets; built "), "{said}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let root = dir.parent().unwrap().join("unpacked");
    let listing = unpack(&out, &root);
    let line = |name: &str| listing.lines().find(|l| l.ends_with(name) || l.contains(&format!("{name} -> "))).unwrap_or_else(|| panic!("{name} not in:\n{listing}")).to_string();
    assert!(line("anemos/payload/secrets/relay_password").starts_with("-rw-------   1 root     root"), "{listing}");
    assert!(line("anemos/payload/secrets").starts_with("drwx------"), "{listing}");
    assert!(line("anemos/payload/plan.json").starts_with("-rw-r--r--"));
    assert!(line("anemos/payload/inputs/0/etc/localtime").contains("-> /usr/share/zoneinfo/UTC"));
    line("anemos/payload/inputs/0/etc/postfix/main.cf.makeimg.template");
    line("anemos/payload/project/pacman.conf");
    assert!(!listing.contains("tls_key"), "an unused secret was packed:\n{listing}");
    let payload = Payload::load(&root).unwrap().expect("plan.json");
    assert_eq!(payload.plan.imgname, "mx");
    assert_eq!(payload.secrets().unwrap()["relay_password"], b"relay-s3cret\n");
    let plan_text = std::fs::read_to_string(root.join("anemos/payload/plan.json")).unwrap();
    assert!(!plan_text.contains("relay-s3cret") && !plan_text.contains("TEST-DKIM"));
}

#[test]
fn pack_is_byte_identical_for_identical_inputs() {
    let dir = arch_mail("imgbuild-repro", false);
    let key = dir.join("age.key");
    let out = |name: &str| dir.parent().unwrap().join(name);
    let pack = |to: &Path, epoch: Option<&str>| {
        let mut cmd = Command::new(anemos_bin());
        cmd.args(["pack", dir.to_str().unwrap(), "-o", to.to_str().unwrap(), "--identity", key.to_str().unwrap()]);
        match epoch {
            Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(to).unwrap()
    };
    let member = |payload: &Path, name: &str| sh(&format!("zstd -dc {} | cpio -i --quiet --to-stdout anemos/payload/{name}", payload.display())).unwrap();
    // With SOURCE_DATE_EPOCH, the same inputs give the same bytes.
    let epoch = "1700000000";
    let a = pack(&out("a.payload"), Some(epoch));
    assert_eq!((member(&out("a.payload"), "build-time"), member(&out("a.payload"), "packed-at")), (format!("{epoch}\n"), format!("{epoch}\n")));
    // A directory's new mtime, and the age files re-encrypted (different ciphertext, same
    // secret): neither is an input of the payload.
    sh(&format!("touch {0}/files/etc/motd-new && rm {0}/files/etc/motd-new", dir.display())).unwrap();
    sh(&format!("cd {} && age -d -i age.key secrets/dkim_key.age | age -r $(age-keygen -y age.key) -o secrets/dkim_key.age.new && mv secrets/dkim_key.age.new secrets/dkim_key.age", dir.display()))
        .unwrap();
    assert!(pack(&out("b.payload"), Some(epoch)) == a, "the payload changed");
    // Without it: the build time is the newest input (a touched IMGBUILD), and the payload
    // records this workstation's clock when it packed (the installer clock's floor).
    sh(&format!("touch {}/IMGBUILD", dir.display())).unwrap();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    pack(&out("c.payload"), None);
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let touched = sh(&format!("stat -c %Y {}/IMGBUILD", dir.display())).unwrap();
    assert_eq!(member(&out("c.payload"), "build-time"), touched);
    let packed: u64 = member(&out("c.payload"), "packed-at").trim().parse().unwrap();
    assert!((before..=after).contains(&packed), "packed-at {packed} is not the packing time ({before}..{after})");
}

/// A target root as packages would leave it, with links planted to lead writes astray.
fn target_root(base: &Path) -> (PathBuf, PathBuf) {
    let root = base.join("target");
    let outside = base.join("outside");
    std::fs::create_dir_all(root.join("etc/dovecot")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/zoneinfo")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(root.join("etc/dovecot/dovecot.conf"), "# Dovecot configuration\n#protocols = imap pop3 lmtp submission\n!include conf.d/*.conf\n").unwrap();
    // An absolute link to a host directory: inside the target it means ROOT/…/outside.
    std::os::unix::fs::symlink(&outside, root.join("etc/postfix")).unwrap();
    std::fs::create_dir_all(root.join(outside.strip_prefix("/").unwrap())).unwrap();
    (root, outside)
}

#[test]
fn files_patches_and_templates_from_the_payload_land_inside_the_root() {
    let dir = arch_mail("imgbuild-apply", false);
    let base = dir.parent().unwrap().to_path_buf();
    let out = base.join("mx.payload");
    let key = dir.join("age.key");
    anemos(&["pack", dir.to_str().unwrap(), "-o", out.to_str().unwrap(), "--identity", key.to_str().unwrap()]).unwrap();
    let initramfs = base.join("initramfs-root");
    unpack(&out, &initramfs);
    let payload = Payload::load(&initramfs).unwrap().unwrap();
    let (root, outside) = target_root(&base);
    let done = apply_all(&root, &payload.inputs(), &payload.plan.variables, &payload.secrets().unwrap(), installer::files::Templates::All).unwrap();
    assert_eq!((done.files, done.symlinks, done.patches, done.templates), (2, 1, 1, 3));
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "something was written outside the root");
    let inside = root.join(outside.strip_prefix("/").unwrap());
    let main_cf = std::fs::read_to_string(inside.join("main.cf")).unwrap();
    assert!(main_cf.contains("myhostname = mx.example.org\nmydomain = example.org\n"), "{main_cf}");
    assert!(main_cf.contains("myorigin = $mydomain"));
    let sasl = inside.join("sasl_passwd");
    assert_eq!(std::fs::read_to_string(&sasl).unwrap(), "[smtp.example.net]:587 mx@example.org:relay-s3cret\n");
    assert_eq!(std::fs::metadata(&sasl).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::metadata(&sasl).unwrap().uid(), 0);
    let dkim = std::fs::read_to_string(root.join("etc/opendkim/keys/mail.private")).unwrap();
    assert_eq!(dkim, "-----BEGIN PRIVATE KEY-----\nTEST-DKIM-KEY-NOT-A-REAL-KEY\n-----END PRIVATE KEY-----\n");
    assert_eq!(std::fs::read_link(root.join("etc/localtime")).unwrap(), Path::new("/usr/share/zoneinfo/UTC"));
    let dovecot = std::fs::read_to_string(root.join("etc/dovecot/dovecot.conf")).unwrap();
    assert_eq!(dovecot, "# Dovecot configuration\nprotocols = imap lmtp\n!include conf.d/*.conf\n");
    assert!(!root.join("etc/postfix/main.cf.makeimg.template").exists() && !inside.join("main.cf.makeimg.template").exists());
}

#[test]
fn a_patch_that_does_not_apply_names_file_and_hunk_and_changes_nothing() {
    let base = scratch("imgbuild-patch");
    let root = base.join("target");
    std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
    let original = "Include /etc/ssh/sshd_config.d/*.conf\n#PermitRootLogin prohibit-password\n#PubkeyAuthentication yes\n#PasswordAuthentication no\n";
    std::fs::write(root.join("etc/ssh/sshd_config"), original).unwrap();
    let inputs = [InputDir { path: corpus("bad/patch-does-not-apply/files"), label: "files".into() }];
    let err = format!("{:#}", apply_patches(&root, &inputs).unwrap_err());
    assert!(err.contains("files/etc/ssh/sshd_config.makeimg.patch: hunk 2 (@@ -10,2 +10,2 @@) does not apply: its context or removed lines are not in the file /etc/ssh/sshd_config"), "{err}");
    assert_eq!(std::fs::read_to_string(root.join("etc/ssh/sshd_config")).unwrap(), original);
}

#[test]
fn the_init_loads_the_plan_in_qemu() {
    let _lock = vm_lock();
    let base = scratch("imgbuild-boot");
    let payload = base.join("payload");
    anemos(&["pack", corpus("preserved-home").to_str().unwrap(), "-o", payload.to_str().unwrap()]).unwrap();
    let initrd = base.join("initramfs.img");
    anemos(&["initramfs", "-o", initrd.to_str().unwrap(), "--no-modules", "--payload", payload.to_str().unwrap()]).unwrap();
    let kernel = test_kernel();
    let mut config = Config::direct(&kernel.vmlinuz, &initrd);
    config.accel = choose_accel(&kernel.vmlinuz, &initrd);
    // No network card and no disk here: after the plan the install fails at the network
    // step, and on_failure=poweroff ends the VM.
    config.append = "anemos.done=poweroff anemos.on_failure=poweroff".into();
    let mut vm = Vm::start(&config, Console::Capture(base.join("console.log"))).unwrap();
    let ev = vm.expect_event(Duration::from_secs(120), |e| matches!(e, Event::PlanLoaded { .. })).unwrap();
    assert_eq!(ev, Event::PlanLoaded { imgname: "files".into(), target: "debian".into(), packages: 3, partitions: 3 });
    vm.expect_event(Duration::from_secs(60), |e| matches!(e, Event::Shutdown { action } if action == "poweroff")).unwrap();
    let out = vm.output_text();
    assert!(out.contains("WIPED         /dev/disk/by-id/ata-QEMU_HARDDISK_QM00001"), "{out}");
    assert!(vm.wait_exit(Duration::from_secs(30)).unwrap().success());
}

#[test]
fn tracked_plain_secrets_warn_and_secrets_command_reveals() {
    let dir = arch_mail("imgbuild-git", false);
    let key = dir.join("age.key");
    sh(&format!("cd {} && git init -q && git add -f IMGBUILD secrets/relay_password", dir.display())).unwrap();
    let (ok, _, err) = run(&["check", dir.to_str().unwrap(), "--identity", key.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("secrets/relay_password: warning: this plaintext secret is tracked by git"), "{err}");

    // A secret from secrets_command, run in the project directory.
    let base = scratch("imgbuild-command");
    let dir = base.join("p");
    sh(&format!("cp -a {} {}", corpus("bad/unknown-secret").display(), dir.display())).unwrap();
    sh(&format!("printf 'secrets_command=\"printf from-%%s\"\\n' >> {}/IMGBUILD", dir.display())).unwrap();
    let out = anemos(&["check", dir.to_str().unwrap()]).unwrap();
    assert!(out.contains("secrets       db_password (secrets_command)"), "{out}");
    let payload = base.join("p.payload");
    anemos(&["pack", dir.to_str().unwrap(), "-o", payload.to_str().unwrap()]).unwrap();
    let root = base.join("unpacked");
    unpack(&payload, &root);
    assert_eq!(std::fs::read(root.join("anemos/payload/secrets/db_password")).unwrap(), b"from-db_password");

    // A failing command: pack stops, names the secret, writes nothing.
    sh(&format!("printf 'secrets_command=\"exit 4; %%s\"\\n' >> {}/IMGBUILD", dir.display())).unwrap();
    let failed = base.join("failed.payload");
    let (ok, _, err) = run(&["pack", dir.to_str().unwrap(), "-o", failed.to_str().unwrap()]);
    assert!(!ok && err.contains("failed for secret \"db_password\""), "{err}");
    assert!(!failed.exists());
}

/// The examples' boot report (the ANEMOS-REPORT line the QEMU tests read) is one script:
/// each project carries its own copy, as a project is self-contained, and the copies stay
/// the same.
#[test]
fn the_examples_carry_one_report_script() {
    for file in ["files/usr/local/sbin/anemos-report", "files/etc/systemd/system/anemos-report.service"] {
        let first = std::fs::read(workspace().join("examples/debian-minimal").join(file)).unwrap();
        for example in ["mail-server", "raid-luks"] {
            let copy = std::fs::read(workspace().join("examples").join(example).join(file)).unwrap();
            assert!(copy == first, "examples/{example}/{file} differs from examples/debian-minimal/{file}: copy that one over");
        }
    }
}
