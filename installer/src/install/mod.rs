//! The install pipeline: a plan goes in, an installed system comes out. Each phase is a
//! named step; the caller (the init on a machine, `anemos image` on the host for directory
//! builds) runs them in order with its own logging, timing and failure handling:
//!
//! ```text
//! check       the plan against the real hardware: target disk, layout, preserved disks
//! indexes     package indexes fetched, verified and resolved; download URLs probed
//! ─────────── nothing above writes to a disk; a failure leaves the machine as it was
//! disks       old signatures wiped, partitioned, filesystems made, mounted under the root
//! packages    downloaded, verified, unpacked, configured by the target's own tools
//! files       files/, *.makeimg.patch, *.makeimg.template
//! system      fstab, crypttab, hostname, a fresh machine-id
//! provision   the IMGBUILD's provision() in the target's chroot
//! initramfs   the new system's initramfs, built once by its own tools
//! bootloader  systemd-boot or GRUB
//! log         the whole install log copied to /var/log/anemos/
//! unmount     everything unmounted, in reverse
//! ```
//! Directory builds (`format dir`/`tar`) skip check, disks, bootloader and unmount.
//!
//! Image builds (`anemos build`, [`Where::Image`]) are directory builds made generic: the
//! boot loader packages for every firmware, templates without secrets, an initramfs for
//! any machine, and a last `generalize` phase (no machine-id, no ssh host keys, no logs).
//! Installs from an image (`image=`) replace `indexes` and `packages` with `image-check`
//! (before the wipe) and `image`, render the templates and make the system's identity on
//! each host, and skip provision() and the initramfs, which the image holds — unless the
//! layout has arrays, encrypted partitions or a volume group: then the host's initramfs is
//! made again by the image's own tools, with this host's mdadm.conf, crypttab and keys.

mod bootloader;
mod check;
mod disks;
mod generic;
mod image;
mod kexec;
mod log_file;
mod packages;
mod provision;
mod raid;
mod storage_ready;
mod system;
mod unlock;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::disk::layout::PlannedLayout;
use crate::fs::FsInfo;
use crate::mount::Mounted;
use crate::payload::Payload;
use crate::plan::{DiskSelector, Plan};

pub use check::{resolve, Located, Preserved, Resolved};
pub use generic::secrets_in_image;

/// Where the install happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// On a machine's disks (the init): partitions, filesystems, boot loader.
    Disk {
        /// Replaces the plan's `disk=` (image builds name the image disk).
        target: Option<DiskSelector>,
        /// Whether the firmware is UEFI (decides between systemd-boot/GRUB EFI and GRUB BIOS).
        uefi: bool,
        /// The disks the operator confirmed (`anemos kexec`): the install requires exactly
        /// these before it writes anything.
        confirmed: Option<Box<crate::disk::Confirmed>>,
    },
    /// Into a directory on the host (`format dir` and `tar`).
    Directory,
    /// Into a directory on the host, as an image for many machines (`anemos build`).
    Image,
}

/// A partition after the disks phase: where it is, what was made on it.
#[derive(Debug, Clone)]
pub struct Made {
    /// The partition's number (0 for a logical volume).
    pub number: u32,
    pub device: PathBuf,
    pub fs: Option<FsInfo>,
    pub mountpoint: Option<String>,
    pub options: String,
    /// The partition's LUKS2 container, open, when it is encrypted (`device` is then the
    /// opened device).
    pub encrypted: Option<crate::crypt::Opened>,
    /// A btrfs subvolume of the file system on `device`, mounted by `subvol=` (`fs` is
    /// the file system's).
    pub subvol: Option<String>,
}

impl Made {
    /// The mount options that say what is mounted (`subvol=NAME`), without the plan's.
    pub fn subvol_option(&self) -> Option<String> {
        self.subvol.as_ref().map(|s| format!("subvol={s}"))
    }
}

/// Everything the phases share.
pub struct Install {
    /// The payload: the plan (`payload.plan`, the only copy) and the inputs and secrets.
    pub payload: Payload,
    /// The new system's root (`/target` in the init, the output directory on the host).
    pub root: PathBuf,
    pub place: Where,
    /// Returns the install log so far (copied into the new system).
    pub log: Box<dyn Fn() -> String + Send>,
    /// The disks the check phase chose, the target first, each with its planned layout.
    disks: Vec<(PathBuf, PlannedLayout)>,
    /// The md arrays of `raid=`, running until unmount.
    arrays: Vec<crate::md::Array>,
    /// The esp's copies on the other disks of a layout over several disks.
    esp_copies: Vec<PathBuf>,
    preserved: Vec<Preserved>,
    made: Vec<Made>,
    mounts: Option<Mounted>,
    /// The logical volumes' device-mapper names, active until unmount.
    volumes: Vec<String>,
    packages: Option<packages::Prepared>,
    /// Whether the indexes phase may correct the system clock from the mirror's `Date`
    /// ([`crate::clock`]): only the init sets this; host builds leave their host's clock alone.
    pub set_clock: bool,
}

/// The install's phases: the one list of their names (logs, events, `anemos.fail=`, the
/// deploy's summary, the bench and the tests all go by them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Check,
    Indexes,
    ImageCheck,
    Disks,
    Packages,
    Image,
    Files,
    System,
    Provision,
    Initramfs,
    Generalize,
    Bootloader,
    Log,
    Kexec,
    Unmount,
}

impl Phase {
    /// Every phase, in the order they run (no install runs all of them).
    pub const ALL: [Phase; 15] = [
        Phase::Check,
        Phase::Indexes,
        Phase::ImageCheck,
        Phase::Disks,
        Phase::Packages,
        Phase::Image,
        Phase::Files,
        Phase::System,
        Phase::Provision,
        Phase::Initramfs,
        Phase::Generalize,
        Phase::Bootloader,
        Phase::Log,
        Phase::Kexec,
        Phase::Unmount,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Check => "check",
            Phase::Indexes => "indexes",
            Phase::ImageCheck => "image-check",
            Phase::Disks => "disks",
            Phase::Packages => "packages",
            Phase::Image => "image",
            Phase::Files => "files",
            Phase::System => "system",
            Phase::Provision => "provision",
            Phase::Initramfs => "initramfs",
            Phase::Generalize => "generalize",
            Phase::Bootloader => "bootloader",
            Phase::Log => "log",
            Phase::Kexec => "kexec",
            Phase::Unmount => "unmount",
        }
    }

    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether a failure in this phase (on a machine) comes after the disk was written:
    /// `disks` and everything after it. Before, the machine is as it was.
    pub fn writes_disk(self) -> bool {
        !matches!(self, Phase::Check | Phase::Indexes | Phase::ImageCheck)
    }
}

/// One phase of an install, and what it does.
pub type Step = (Phase, fn(&mut Install) -> Result<()>);

impl Install {
    pub fn new(payload: Payload, root: &Path, place: Where, log: Box<dyn Fn() -> String + Send>) -> Install {
        Install {
            payload,
            root: root.to_path_buf(),
            place,
            log,
            disks: Vec::new(),
            arrays: Vec::new(),
            esp_copies: Vec::new(),
            preserved: Vec::new(),
            made: Vec::new(),
            mounts: None,
            volumes: Vec::new(),
            packages: None,
            set_clock: false,
        }
    }

    /// Whether this install lays down an image instead of running the package manager.
    pub fn from_image(&self) -> bool {
        matches!(self.place, Where::Disk { .. }) && self.plan().image.is_some()
    }

    /// The phases for this install, in order.
    pub fn phases(&self) -> Vec<Step> {
        let on_disk = matches!(self.place, Where::Disk { .. });
        let from_image = self.from_image();
        let wanted = |p: Phase| match p {
            Phase::Check | Phase::Disks | Phase::Bootloader | Phase::Unmount => on_disk,
            Phase::Indexes | Phase::Packages => !from_image,
            // An image's initramfs opens any machine's plain partitions; arrays, encrypted
            // partitions and volume groups need this host's mdadm.conf and crypttab in it.
            Phase::Initramfs => !from_image || self.plan().layout.opened_at_boot(),
            Phase::ImageCheck | Phase::Image => from_image,
            Phase::Provision => self.plan().functions.provision && !from_image,
            Phase::Generalize => self.place == Where::Image,
            // An image's own build log stays with the build, not in every host.
            Phase::Log => self.place != Where::Image,
            Phase::Kexec => on_disk && self.plan().on_success == crate::plan::OnSuccess::Kexec,
            Phase::Files | Phase::System => true,
        };
        Phase::ALL.into_iter().filter(|p| wanted(*p)).map(|p| (p, step(p))).collect()
    }

    /// The file system made for `/` (after the disks phase): its UUID, and the subvolume
    /// when `/` is one.
    pub fn root_fs(&self) -> Result<crate::bootloader::RootFs> {
        let (made, fs) = self.made.iter().find(|m| m.mountpoint.as_deref() == Some("/")).and_then(|m| Some((m, m.fs.as_ref()?))).context("no file system is mounted at / in the layout")?;
        Ok(crate::bootloader::RootFs { uuid: fs.uuid.clone(), flags: made.subvol_option(), device: made.device.clone() })
    }

    /// The disks the check phase chose (the target first) and the layout planned for
    /// each, once it ran.
    pub fn target_disks(&self) -> impl Iterator<Item = (&Path, &PlannedLayout)> {
        self.disks.iter().map(|(p, l)| (p.as_path(), l))
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.payload.plan
    }

    /// The variables templates and provision() see: the IMGBUILD's, with the effective
    /// format (after `--format`).
    pub fn variables(&self) -> BTreeMap<String, String> {
        let mut v = self.plan().variables.clone();
        v.insert("format".into(), self.plan().format.to_string());
        v
    }

    /// The kernel command line of the installed system (boot loader entries), without root=.
    pub fn cmdline(&self) -> String {
        let mut args = self.plan().kernel_cmdline.args.clone();
        if self.plan().kernel_cmdline.inherit_console {
            let ours = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            for c in ours.split_whitespace().filter(|w| w.starts_with("console=")) {
                args.push(' ');
                args.push_str(c);
            }
        }
        args.trim().to_string()
    }
}

/// Files, patches and templates. An image holds the files and patches and the templates
/// that use no secret (all of them with `image_secrets=yes`); each host installed from it
/// renders the templates again, with its variables and secrets.
/// What each phase does.
fn step(p: Phase) -> fn(&mut Install) -> Result<()> {
    match p {
        Phase::Check => check::run,
        Phase::Indexes => packages::prepare,
        Phase::ImageCheck => image::check,
        Phase::Disks => disks::run,
        Phase::Packages => packages::install,
        Phase::Image => image::run,
        Phase::Files => files_phase,
        Phase::System => system::run,
        Phase::Provision => provision::run,
        Phase::Initramfs => packages::initramfs,
        Phase::Generalize => generic::run,
        Phase::Bootloader => bootloader::run,
        Phase::Log => log_file::run,
        Phase::Kexec => kexec::run,
        Phase::Unmount => unmount,
    }
}

fn files_phase(inst: &mut Install) -> Result<()> {
    let secrets = inst.payload.secrets()?;
    let (inputs, vars) = (inst.payload.inputs(), inst.variables());
    let applied = if inst.from_image() {
        crate::files::render_templates(&inst.root, &inputs, &vars, &secrets, crate::files::Templates::All)?
    } else if inst.place == Where::Image && !generic::secrets_in_image(inst.plan()) {
        crate::files::apply_all(&inst.root, &inputs, &vars, &secrets, crate::files::Templates::WithoutSecrets)?
    } else {
        crate::files::apply_all(&inst.root, &inputs, &vars, &secrets, crate::files::Templates::All)?
    };
    log::info!("files: {} files, {} symlinks, {} patches, {} templates", applied.files, applied.symlinks, applied.patches, applied.templates);
    Ok(())
}

fn unmount(inst: &mut Install) -> Result<()> {
    rustix::fs::sync();
    if let Some(m) = inst.mounts.take() {
        m.unmount()?;
    }
    // Volumes first: they sit on partitions, which may be encrypted.
    for name in inst.volumes.drain(..) {
        crate::crypt::dm::remove(&name)?;
    }
    for opened in inst.made.iter().filter_map(|m| m.encrypted.as_ref()) {
        crate::crypt::close(opened)?;
    }
    // Arrays last: everything above them is closed; stopping writes their last state.
    for array in inst.arrays.drain(..) {
        crate::md::stop(&array.device)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phases(place: Where, image: bool) -> Vec<&'static str> {
        phases_with(place, image, |_| {})
    }

    fn phases_with(place: Where, image: bool, change: impl Fn(&mut Plan)) -> Vec<&'static str> {
        let dir = std::env::temp_dir();
        let mut plan = crate::plan::tests::sample();
        change(&mut plan);
        plan.functions.provision = true;
        if image {
            plan.image = Some(crate::plan::ImageSource { location: "http://i.test/x".into(), sha256: Some("0".repeat(64)) });
        }
        let payload = Payload { dir: dir.clone(), plan };
        Install::new(payload, &dir, place, Box::new(String::new)).phases().iter().map(|(p, _)| p.name()).collect()
    }

    #[test]
    fn the_phases_of_each_kind_of_install() {
        let disk = || Where::Disk { target: None, uefi: true, confirmed: None };
        assert_eq!(phases(disk(), false), ["check", "indexes", "disks", "packages", "files", "system", "provision", "initramfs", "bootloader", "log", "unmount"]);
        assert_eq!(phases(disk(), true), ["check", "image-check", "disks", "image", "files", "system", "bootloader", "log", "unmount"]);
        let raid = |p: &mut Plan| p.layout.raid = vec![crate::plan::Raid { partition: "root".into(), level: crate::plan::RaidLevel::Raid1 }];
        assert_eq!(phases_with(disk(), true, raid), ["check", "image-check", "disks", "image", "files", "system", "initramfs", "bootloader", "log", "unmount"]);
        assert_eq!(phases(Where::Directory, false), ["indexes", "packages", "files", "system", "provision", "initramfs", "log"]);
        assert_eq!(phases(Where::Image, false), ["indexes", "packages", "files", "system", "provision", "initramfs", "generalize"]);
        // Nothing before the wipe writes; everything from it does (kexec included).
        let writes: Vec<&str> = Phase::ALL.into_iter().filter(|p| p.writes_disk()).map(Phase::name).collect();
        assert!(!writes.contains(&"indexes") && !writes.contains(&"image-check") && writes.contains(&"disks") && writes.contains(&"kexec") && writes.contains(&"image"));
        assert_eq!(Phase::from_name("image-check"), Some(Phase::ImageCheck));
    }
}
