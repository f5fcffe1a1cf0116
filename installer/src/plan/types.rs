//! The plan's types. They serialise to `plan.json` with serde; enum values use the spelling
//! of the IMGBUILD (`systemd-boot`, `bios-boot`, `gz`), so the JSON reads like the input.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A validated IMGBUILD project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Schema version, [`crate::plan::PLAN_VERSION`] when written.
    pub version: u32,
    pub imgname: String,
    /// The new system's host name (`hostname=`, default `imgname`).
    pub hostname: String,
    pub target: Target,
    /// Packages to install, in IMGBUILD order, duplicates removed.
    pub packages: Vec<String>,
    /// The output format for `anemos image` (after any `--format` override).
    pub format: Format,
    /// Where `format` came from.
    pub format_origin: FormatOrigin,
    /// The disk an install on real hardware wipes; `None` means "the only non-removable
    /// disk", which the install must check at run time (and fail if there are several).
    pub disk: Option<DiskSelector>,
    /// The other disks of a layout over several disks (`disk=` lists them after the first;
    /// `raid=`): each gets the same partition table, the arrays span them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_disks: Vec<DiskSelector>,
    /// The partition table written to that disk (or into a raw image).
    pub layout: Layout,
    /// Disks and partitions that are never written.
    pub preserve: Vec<Preserve>,
    /// Extra fstab lines, verbatim.
    pub mounts: Vec<FstabEntry>,
    pub bootloader: Bootloader,
    pub kernel_cmdline: KernelCmdline,
    pub mirror: Mirror,
    /// Install from a prebuilt image (`image=`, `--image`) instead of the packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSource>,
    pub proxy: Option<String>,
    /// The initramfs's network during an install.
    pub network: Network,
    pub on_success: OnSuccess,
    pub on_failure: OnFailure,
    /// The init's HTTP event endpoint port.
    pub status_port: u16,
    /// Items copied from the building host (`hostconf`).
    pub hostconf: Vec<HostConf>,
    /// Which IMGBUILD functions exist. Only `provision` is ever run.
    pub functions: Functions,
    /// The input trees, in order (later ones win).
    pub inputs: Vec<InputTree>,
    /// Secrets the templates use, names only, with where each comes from.
    pub secrets: Vec<SecretRef>,
    /// Project files beside the IMGBUILD the install uses (`pacman.conf`, `repositories`,
    /// `keys/…`), as paths relative to the project and to the payload's `project/`.
    pub project_files: Vec<String>,
    /// Every variable the IMGBUILD set, as strings: templates may use any of them.
    pub variables: BTreeMap<String, String>,
}

/// Where an install's prebuilt image comes from, and the SHA-256 of its bytes (the
/// compressed stream, as `anemos build` wrote it), which the installer verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSource {
    /// An `http://` or `https://` URL; in a checked project also a local file (relative to
    /// the project), which the commands that install serve themselves.
    pub location: String,
    /// Lowercase hex; required for a URL, computed for a file.
    pub sha256: Option<String>,
}

impl ImageSource {
    pub fn is_url(&self) -> bool {
        self.location.starts_with("http://") || self.location.starts_with("https://")
    }
}

/// The distribution to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "distro", rename_all = "lowercase")]
pub enum Target {
    Debian { suite: String },
    Arch,
    Alpine,
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Debian { .. } => "debian",
            Target::Arch => "arch",
            Target::Alpine => "alpine",
        }
    }
}

/// makeimg's `format`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Format {
    /// A disk image file of `size` bytes holding `layout`.
    Raw { size: u64 },
    /// A tar archive of the root file system.
    Tar { compression: TarCompression },
    /// A plain directory.
    Dir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TarCompression {
    Gz,
    Xz,
    Zst,
}

impl TarCompression {
    /// The file name suffix, as makeimg writes it: `IMGNAME.tar.gz`.
    pub fn suffix(self) -> &'static str {
        match self {
            TarCompression::Gz => "gz",
            TarCompression::Xz => "xz",
            TarCompression::Zst => "zst",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub enum FormatOrigin {
    /// `format=` on this IMGBUILD line.
    Imgbuild { line: Option<usize> },
    /// `--format` on the command line.
    CommandLine,
    /// Not set: makeimg's default, `raw 8G msdos ext4`.
    Default,
}

/// How a disk is chosen on the machine being installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by", content = "value")]
pub enum DiskSelector {
    /// A device path such as `/dev/vda` (as the installer's kernel names it).
    Path(String),
    /// A name under `/dev/disk/by-id/`.
    ById(String),
    Serial(String),
    /// A World Wide Name, lower case, with its `0x` prefix.
    Wwn(String),
    /// Any disk whose size is within 1 % of this many bytes.
    Size(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableType {
    Gpt,
    Msdos,
}

/// The partition table to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub table: TableType,
    /// In disk order.
    pub partitions: Vec<Partition>,
    /// Whether it came from `partitions=` or from makeimg's `format raw …` arguments.
    pub origin: LayoutOrigin,
    /// The partitions encrypted with LUKS2 (`encrypt=`), in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encrypted: Vec<Encrypted>,
    /// An LVM2 volume group over `lvm` partitions, and its logical volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group: Option<VolumeGroup>,
    /// Partitions made md arrays over every disk (`raid=`), in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raid: Vec<Raid>,
    /// btrfs subvolumes (`subvolumes=`), in the order they are made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subvolumes: Vec<super::Subvolume>,
}

/// A partition that is, on every disk, a member of one md array (`/dev/md/NAME`); the
/// encryption, volume group or file system of the partition goes on the array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raid {
    pub partition: String,
    pub level: RaidLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaidLevel {
    /// Striped: the members' sizes add up, no redundancy.
    Raid0,
    /// Mirrored: every member holds everything.
    Raid1,
    /// Two copies of each chunk, striped ("near 2").
    Raid10,
}

impl RaidLevel {
    pub fn name(self) -> &'static str {
        match self {
            RaidLevel::Raid0 => "raid0",
            RaidLevel::Raid1 => "raid1",
            RaidLevel::Raid10 => "raid10",
        }
    }
}

/// An LVM2 volume group (`volume_group=`) and its logical volumes (`volumes=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeGroup {
    pub name: String,
    /// The partitions (by name) that are its physical volumes, in order.
    pub members: Vec<String>,
    /// In the order they are allocated.
    pub volumes: Vec<Volume>,
}

/// A logical volume: like a partition, without a type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    /// Bytes, percent of the volume group, or the rest of it.
    pub size: PartSize,
    pub fs: Filesystem,
    pub mountpoint: Option<String>,
    pub options: String,
}

/// A partition encrypted with LUKS2: its file system is made inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encrypted {
    /// The partition's name in `partitions=`; also the opened device's name
    /// (`/dev/mapper/NAME`) and its crypttab name.
    pub partition: String,
    /// The secret whose value (without one trailing newline) is the passphrase.
    pub secret: String,
    pub unlock: Unlock,
}

/// How the installed system opens an encrypted partition at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unlock {
    /// It asks for the passphrase on the console.
    Prompt,
    /// The passphrase is a key file in the new system (and, for `/`, in its initramfs).
    Unattended,
}

impl Layout {
    /// Whether a partition of `kind` is in the layout.
    pub fn has(&self, kind: PartKind) -> bool {
        self.partitions.iter().any(|p| p.kind == kind)
    }

    /// The encryption of the partition `name`, if it is encrypted.
    pub fn encryption(&self, name: &str) -> Option<&Encrypted> {
        self.encrypted.iter().find(|e| e.partition == name)
    }

    /// The array of the partition `name`, if it is in `raid=`.
    pub fn raid_of(&self, name: &str) -> Option<&Raid> {
        self.raid.iter().find(|r| r.partition == name)
    }

    /// Whether `/` lives on the partition `name`: its file system (or a subvolume of it) is
    /// mounted there, or it is a physical volume of the volume group that holds the volume
    /// that is.
    pub fn holds_root(&self, name: &str) -> bool {
        self.holds("/", name)
    }

    /// Whether the file system mounted at `mountpoint` lives on the partition `name`
    /// (as [`Layout::holds_root`] for `/`).
    pub fn holds(&self, mountpoint: &str, name: &str) -> bool {
        match self.holder_of(mountpoint) {
            Some(super::Holder::Partition(p)) => p == name,
            Some(super::Holder::Volume(_)) => self.volume_group.iter().any(|g| g.members.iter().any(|m| m == name)),
            None => false,
        }
    }

    /// Whether `/` lives on an encrypted partition (directly, or through the volume group).
    pub fn root_encrypted(&self) -> bool {
        self.encrypted.iter().any(|e| self.holds_root(&e.partition))
    }

    /// Whether the kernels a boot loader reads from the disk are encrypted: they are in
    /// `/boot`, its own file system where one is mounted there, else in `/`.
    pub fn boot_encrypted(&self) -> bool {
        match self.holder_of("/boot") {
            Some(_) => self.encrypted.iter().any(|e| self.holds("/boot", &e.partition)),
            None => self.root_encrypted(),
        }
    }

    /// Whether the new system's initramfs must know this host's layout to open it at boot:
    /// its arrays (`mdadm.conf`), encrypted partitions (`crypttab`, key files) or volume
    /// group. An image's initramfs, made for any machine, is then made again on each host.
    pub fn opened_at_boot(&self) -> bool {
        !self.encrypted.is_empty() || !self.raid.is_empty() || self.volume_group.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayoutOrigin {
    /// `partitions=` (and `table=`).
    Partitions,
    /// makeimg's `format raw SIZE TABLE FS`: one root partition spanning the disk.
    Format,
    /// Nothing said: makeimg's default `raw 8G msdos ext4`, one root partition.
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// GPT partition name (PARTLABEL) and file system label.
    pub name: String,
    pub size: PartSize,
    pub kind: PartKind,
    /// The GPT type GUID (upper case, hyphenated); for msdos tables, derived from `mbr_type`.
    pub type_guid: String,
    /// The MBR partition type byte used on msdos tables.
    pub mbr_type: u8,
    /// The MBR active flag (msdos tables: set on the root partition).
    pub bootable: bool,
    pub fs: Filesystem,
    /// Absolute mount point, or `None` (not mounted; swap is activated, not mounted).
    pub mountpoint: Option<String>,
    /// fstab options.
    pub options: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "unit", content = "value")]
pub enum PartSize {
    Bytes(u64),
    /// Percent of the whole disk, 1..=100.
    Percent(u8),
    /// What is left after every other partition (at most one per layout).
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    Esp,
    BiosBoot,
    /// Linux root (x86-64), per the Discoverable Partitions Specification.
    Root,
    Swap,
    /// Generic Linux data.
    Linux,
    Home,
    Srv,
    /// An LVM physical volume (`volume_group=`).
    Lvm,
    /// An explicit GPT type GUID.
    Guid(String),
}

/// Type GUIDs: the UEFI specification (ESP), GRUB's `bios_grub`, and the UAPI Discoverable
/// Partitions Specification for the rest (root is the x86-64 root type). A test checks them
/// against the list util-linux's sfdisk knows.
pub mod type_guid {
    pub const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    pub const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
    pub const ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
    pub const SWAP: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";
    pub const LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    pub const HOME: &str = "933AC7E1-2EB4-4F13-B844-0E14E2AEF915";
    pub const SRV: &str = "3B8F8425-20E0-4F3B-907F-1A25A76F98E8";
    pub const LVM: &str = "E6D6D379-F507-44C2-A23C-238F2A3DF928";
    /// A member of an md array ("Linux RAID"; MBR type 0xfd).
    pub const RAID: &str = "A19D880F-05FC-4D3B-A006-743F0F84911E";
}

impl PartKind {
    /// The GPT type GUID and the MBR type byte (0: not possible on an msdos table).
    pub fn type_ids(&self) -> (&str, u8) {
        match self {
            PartKind::Esp => (type_guid::ESP, 0xef),
            PartKind::BiosBoot => (type_guid::BIOS_BOOT, 0),
            PartKind::Root => (type_guid::ROOT_X86_64, 0x83),
            PartKind::Swap => (type_guid::SWAP, 0x82),
            PartKind::Linux => (type_guid::LINUX_DATA, 0x83),
            PartKind::Home => (type_guid::HOME, 0x83),
            PartKind::Srv => (type_guid::SRV, 0x83),
            PartKind::Lvm => (type_guid::LVM, 0x8e),
            PartKind::Guid(g) => (g.as_str(), 0x83),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    Ext4,
    Btrfs,
    Vfat,
    Swap,
    None,
}

impl Filesystem {
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::Btrfs => "btrfs",
            Filesystem::Vfat => "vfat",
            Filesystem::Swap => "swap",
            Filesystem::None => "none",
        }
    }
}

/// Something never written by the install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preserve {
    pub what: PreserveTarget,
    /// Mounted there in the new system's fstab, when given.
    pub mountpoint: Option<String>,
    /// fstab file system type (default `auto`).
    pub fstype: String,
    /// fstab options (default `defaults`).
    pub options: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum PreserveTarget {
    /// A whole disk.
    Disk {
        disk: DiskSelector,
    },
    /// Partition `number` (1-based) of a disk.
    Partition {
        disk: DiskSelector,
        number: u32,
    },
    PartLabel {
        label: String,
    },
    Uuid {
        uuid: String,
    },
}

/// One fstab line (fs_spec fs_file fs_vfstype fs_mntops [fs_freq [fs_passno]]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FstabEntry {
    pub spec: String,
    pub file: String,
    pub vfstype: String,
    pub options: String,
    pub freq: u32,
    pub passno: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bootloader {
    SystemdBoot,
    Grub,
    None,
}

impl Bootloader {
    pub fn name(self) -> &'static str {
        match self {
            Bootloader::SystemdBoot => "systemd-boot",
            Bootloader::Grub => "grub",
            Bootloader::None => "none",
        }
    }
}

/// The installed kernel's command line (the bootloader step adds `root=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelCmdline {
    /// The arguments (`kernel_cmdline=`, default `quiet`).
    pub args: String,
    /// Append the `console=` options the installer itself was booted with, so a serial
    /// console that showed the install also shows the new system. True unless `args` names
    /// a `console=` itself.
    pub inherit_console: bool,
}

/// The package mirror for the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    /// Debian: the archive root (`…/debian`); Arch: a `Server =` URL with `$repo`/`$arch`;
    /// Alpine: the root that holds `vX.Y/main` (`…/alpine`).
    pub url: String,
    /// Debian's security archive, when known.
    pub security_url: Option<String>,
    pub origin: MirrorOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub enum MirrorOrigin {
    /// `mirror=` on this IMGBUILD line.
    Imgbuild { line: Option<usize> },
    /// The building host's package-manager configuration, in this file.
    Host { file: String },
    /// `--mirror` on the command line.
    CommandLine,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Network {
    Dhcp,
    /// The static configuration `anemos kexec` captured from the running server.
    Captured,
    Static {
        interfaces: Vec<StaticInterface>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticInterface {
    pub iface: IfaceSelector,
    pub address: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by", content = "value")]
pub enum IfaceSelector {
    Name(String),
    /// Lower case, colon separated.
    Mac(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSuccess {
    Reboot,
    Kexec,
    Poweroff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Rescue,
    Reboot,
    Poweroff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostConf {
    /// The host's pacman keyring (arch) or apk keys (alpine).
    Keyring,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Functions {
    pub provision: bool,
}

/// One input directory of the project, as carried in the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTree {
    /// The directory relative to the project (`files`).
    pub source: String,
    /// The directory inside the payload (`inputs/0`).
    pub payload_dir: String,
    pub files: usize,
    pub symlinks: usize,
    /// Paths (relative to the tree) of `*.makeimg.patch` files.
    pub patches: Vec<String>,
    pub templates: Vec<TemplateRef>,
}

/// A template and the names it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    /// Path relative to the tree, with its `.makeimg.template` suffix.
    pub path: String,
    pub variables: Vec<String>,
    pub secrets: Vec<String>,
}

/// A secret by name and origin; never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    pub name: String,
    pub source: SecretSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretSource {
    /// `secrets/NAME.age`, decrypted with the user's age identity.
    Age,
    /// `secrets/NAME`, a plain file git ignores.
    Plain,
    /// The output of `secrets_command`.
    Command,
}

impl Plan {
    /// Every mount point the new system's fstab will have, in order.
    pub fn mountpoints(&self) -> impl Iterator<Item = &str> {
        let parts = self.layout.partitions.iter().filter_map(|p| p.mountpoint.as_deref());
        let kept = self.preserve.iter().filter_map(|p| p.mountpoint.as_deref());
        parts.chain(kept).chain(self.mounts.iter().map(|m| m.file.as_str()))
    }

    /// The payload directories of the input trees, in order.
    pub fn input_dirs(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| i.payload_dir.as_str())
    }
}
