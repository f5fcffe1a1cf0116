use super::*;
use crate::payload::parse_plan;

pub(crate) fn sample() -> Plan {
    Plan {
        version: PLAN_VERSION,
        imgname: "mx".into(),
        hostname: "mx".into(),
        target: Target::Debian { suite: "stable".into() },
        packages: vec!["openssh-server".into()],
        format: Format::Raw { size: 8 << 30 },
        format_origin: FormatOrigin::Default,
        disk: Some(DiskSelector::Serial("ABC".into())),
        other_disks: vec![],
        layout: Layout {
            table: TableType::Gpt,
            partitions: vec![Partition {
                name: "root".into(),
                size: PartSize::Rest,
                kind: PartKind::Root,
                type_guid: "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709".into(),
                mbr_type: 0x83,
                bootable: false,
                fs: Filesystem::Ext4,
                mountpoint: Some("/".into()),
                options: "defaults".into(),
            }],
            origin: LayoutOrigin::Partitions,
            encrypted: vec![],
            volume_group: None,
            raid: vec![],
            subvolumes: vec![],
        },
        preserve: vec![Preserve { what: PreserveTarget::Disk { disk: DiskSelector::Size(1 << 40) }, mountpoint: Some("/home".into()), fstype: "ext4".into(), options: "defaults".into() }],
        mounts: vec![],
        bootloader: Bootloader::Grub,
        kernel_cmdline: KernelCmdline { args: "quiet".into(), inherit_console: true },
        mirror: Mirror { url: "http://mirror.test/debian".into(), security_url: None, origin: MirrorOrigin::Host { file: "/etc/apt/sources.list".into() } },
        image: None,
        proxy: None,
        network: Network::Static { interfaces: vec![StaticInterface { iface: IfaceSelector::Name("eth0".into()), address: "192.0.2.2".parse().unwrap(), prefix: 24, gateway: None, dns: vec![] }] },
        on_success: OnSuccess::Reboot,
        on_failure: OnFailure::Rescue,
        status_port: 7777,
        hostconf: vec![],
        functions: Functions { provision: true },
        inputs: vec![],
        secrets: vec![SecretRef { name: "db".into(), source: SecretSource::Age }],
        project_files: vec![],
        variables: [("imgname".to_string(), "mx".to_string())].into(),
    }
}

#[test]
fn json_round_trip_reads_like_the_imgbuild() {
    let p = sample();
    let json = serde_json::to_string_pretty(&p).unwrap();
    assert!(json.contains("\"distro\": \"debian\""), "{json}");
    assert!(json.contains("\"bootloader\": \"grub\""));
    assert!(json.contains("\"by\": \"serial\""));
    assert_eq!(parse_plan(&json).unwrap(), p);
}

#[test]
fn unknown_versions_are_refused() {
    let json = serde_json::to_string(&sample()).unwrap();
    let e = parse_plan(&json.replace("\"version\":3", "\"version\":99")).unwrap_err().to_string();
    assert!(e.contains("version 99") && e.contains("reads version 3"), "{e}");
    // Version 1 (no arrays, one disk) is a subset: still read.
    assert_eq!(parse_plan(&json.replace("\"version\":3", "\"version\":1")).unwrap().layout, sample().layout);
    assert!(parse_plan("{}").unwrap_err().to_string().contains("no version"));
}

#[test]
fn human_plan_names_the_destruction_first() {
    let text = render_human(&sample());
    let wiped = text.find("WIPED").unwrap();
    assert!(wiped < text.find("packages").unwrap());
    assert!(text.contains("serial:ABC"), "{text}");
    assert!(text.contains("preserved     disk size:1 TiB (±1 %): never written, mounted at /home"), "{text}");
    assert!(text.contains("db (age)"));
}

#[test]
fn human_plan_says_when_grub_is_for_both_firmwares() {
    let mut p = sample();
    assert!(render_human(&p).contains("  bootloader    grub; "));
    let part = |name: &str, kind: PartKind| {
        let mut x = p.layout.partitions[0].clone();
        (x.name, x.kind, x.mountpoint) = (name.into(), kind, None);
        x
    };
    let (bios, esp) = (part("bios", PartKind::BiosBoot), part("esp", PartKind::Esp));
    p.layout.partitions.splice(0..0, [bios, esp]);
    let text = render_human(&p);
    assert!(text.contains("  bootloader    grub, for BIOS and UEFI (bios-boot and esp); "), "{text}");
}

#[test]
fn human_plan_says_what_an_image_must_hold_and_each_host_makes_again() {
    let mut p = sample();
    p.image = Some(ImageSource { location: "http://i.test/x.tar.zst".into(), sha256: None });
    assert!(!render_human(&p).contains("the image must hold"));
    p.layout.raid = vec![Raid { partition: "root".into(), level: RaidLevel::Raid1 }];
    p.layout.encrypted = vec![Encrypted { partition: "root".into(), secret: "k".into(), unlock: Unlock::Unattended }];
    let text = render_human(&p);
    assert!(text.contains("ssh host keys, the initramfs (with mdadm.conf, crypttab and key files) and the boot loader made on each host"), "{text}");
    assert!(text.contains("\n                the image must hold cryptsetup-initramfs mdadm (checked before the wipe)\n"), "{text}");
}

#[test]
fn root_is_held_by_its_partition_or_by_the_volume_groups_members() {
    let mut l = sample().layout;
    assert!(l.holds_root("root") && !l.root_encrypted());
    l.encrypted = vec![Encrypted { partition: "root".into(), secret: "k".into(), unlock: Unlock::Unattended }];
    assert!(l.root_encrypted());
    // / on a volume of a group over an encrypted lvm partition.
    l.partitions[0].mountpoint = None;
    l.encrypted[0].partition = "pv".into();
    l.volume_group = Some(VolumeGroup {
        name: "vg".into(),
        members: vec!["pv".into()],
        volumes: vec![Volume { name: "r".into(), size: PartSize::Rest, fs: Filesystem::Ext4, mountpoint: Some("/".into()), options: "defaults".into() }],
    });
    assert!(l.holds_root("pv") && !l.holds_root("root") && l.root_encrypted());
    // The kernels are in / unless /boot is a file system of its own; then its own
    // encryption is what a boot loader meets.
    assert!(l.boot_encrypted());
    let mut boot = l.partitions[0].clone();
    (boot.name, boot.mountpoint) = ("boot".into(), Some("/boot".into()));
    l.partitions.push(boot);
    assert!(l.holds("/boot", "boot") && !l.boot_encrypted() && l.root_encrypted());
    l.encrypted.push(Encrypted { partition: "boot".into(), secret: "k".into(), unlock: Unlock::Prompt });
    assert!(l.boot_encrypted());
}

#[test]
fn subvolumes_hold_root_and_follow_their_rules() {
    let mut l = sample().layout;
    l.partitions[0].fs = Filesystem::Btrfs;
    l.partitions[0].mountpoint = None;
    let sub = |fs: &str, name: &str, mp: Option<&str>| Subvolume { filesystem: fs.into(), name: name.into(), mountpoint: mp.map(str::to_string), options: "defaults".into() };
    l.subvolumes = vec![sub("root", "@", Some("/")), sub("root", "@home", Some("/home")), sub("root", "@snapshots", None), sub("root", "@/.snapshots", Some("/.snapshots"))];
    assert_eq!(l.problems(), vec![]);
    l.subvolumes.pop();
    assert!(l.holds_root("root") && l.uses_btrfs());
    assert_eq!(l.root_subvolume().map(|s| s.name.as_str()), Some("@"));
    assert_eq!(l.mountpoints().collect::<Vec<_>>(), ["/", "/home"]);
    // Every rule at once, each on its line.
    l.partitions[0].size = PartSize::Bytes(64 << 20);
    l.subvolumes.extend([sub("nope", "@x", None), sub("root", "@home", None), sub("root", "a/b", None)]);
    let messages: Vec<(At, String)> = l.problems().into_iter().map(|p| (p.at, p.message)).collect();
    let has = |at: At, text: &str| messages.iter().any(|(a, m)| *a == at && m.contains(text));
    assert!(has(At::Partition(0), "too small for btrfs: give it at least 128M"), "{messages:?}");
    assert!(has(At::Subvolume(3), "no partition or volume \"nope\""), "{messages:?}");
    assert!(has(At::Subvolume(4), "named twice"), "{messages:?}");
    assert!(has(At::Subvolume(5), "inside \"a\", which is not a subvolume listed before it"), "{messages:?}");
    // A subvolume on ext4, and two things at /.
    let mut l = sample().layout;
    l.subvolumes = vec![sub("root", "@", Some("/"))];
    let messages: Vec<String> = l.problems().into_iter().map(|p| p.message).collect();
    assert!(messages.iter().any(|m| m.contains("holds ext4: subvolumes need btrfs")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("more than one partition, volume or subvolume is mounted at /")), "{messages:?}");
}
