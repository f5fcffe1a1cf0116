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
//! system      fstab, hostname, a fresh machine-id
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
//! each host, and skip provision() and the initramfs, which the image holds.

mod check;
mod disks;
mod generic;
mod image;
mod packages;
mod provision;
mod system;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

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
        confirmed: Option<crate::disk::Confirmed>,
    },
    /// Into a directory on the host (`format dir` and `tar`).
    Directory,
    /// Into a directory on the host, as an image for many machines (`anemos build`).
    Image,
}

/// A partition after the disks phase: where it is, what was made on it.
#[derive(Debug, Clone)]
pub struct Made {
    pub number: u32,
    pub device: PathBuf,
    pub fs: Option<FsInfo>,
    pub mountpoint: Option<String>,
    pub options: String,
}

/// Everything the phases share.
pub struct Install {
    pub payload: Payload,
    pub plan: Plan,
    /// The new system's root (`/target` in the init, the output directory on the host).
    pub root: PathBuf,
    pub place: Where,
    /// The effective `format`, for provision() (image builds override the IMGBUILD's).
    pub format: String,
    /// Returns the install log so far (copied into the new system).
    pub log: Box<dyn Fn() -> String + Send>,
    disk: Option<(PathBuf, PlannedLayout)>,
    preserved: Vec<Preserved>,
    made: Vec<Made>,
    mounts: Option<Mounted>,
    packages: Option<packages::Prepared>,
    /// Set when the disk was written: a failure from then on must not leave it bootable.
    pub disk_written: Option<PathBuf>,
    /// Whether the indexes phase may correct the system clock from the mirror's `Date`
    /// ([`crate::clock`]): only the init sets this; host builds leave their host's clock alone.
    pub set_clock: bool,
}

/// One phase: its name (for logs, events and `anemos.fail`) and what it does.
pub type Phase = (&'static str, fn(&mut Install) -> Result<()>);

impl Install {
    pub fn new(payload: Payload, root: &Path, place: Where, format: String, log: Box<dyn Fn() -> String + Send>) -> Install {
        Install {
            plan: payload.plan.clone(),
            payload,
            root: root.to_path_buf(),
            place,
            format,
            log,
            disk: None,
            preserved: Vec::new(),
            made: Vec::new(),
            mounts: None,
            packages: None,
            disk_written: None,
            set_clock: false,
        }
    }

    /// Whether this install lays down an image instead of running the package manager.
    pub fn from_image(&self) -> bool {
        matches!(self.place, Where::Disk { .. }) && self.plan.image.is_some()
    }

    /// The phases for this install, in order.
    pub fn phases(&self) -> Vec<Phase> {
        let mut p: Vec<Phase> = Vec::new();
        let on_disk = matches!(self.place, Where::Disk { .. });
        let from_image = self.from_image();
        if on_disk {
            p.push(("check", check::run));
        }
        p.push(if from_image { ("image-check", image::check) } else { ("indexes", packages::prepare) });
        if on_disk {
            p.push(("disks", disks::run));
        }
        p.push(if from_image { ("image", image::run) } else { ("packages", packages::install) });
        p.push(("files", files_phase));
        p.push(("system", system::run));
        if self.plan.functions.provision && !from_image {
            p.push(("provision", provision::run));
        }
        if !from_image {
            p.push(("initramfs", packages::initramfs));
        }
        if self.place == Where::Image {
            p.push(("generalize", generic::run));
        }
        if on_disk {
            p.push(("bootloader", system::bootloader));
        }
        if self.place != Where::Image {
            // An image's own build log stays with the build, not in every host.
            p.push(("log", system::save_log));
        }
        if on_disk && self.plan.on_success == crate::plan::OnSuccess::Kexec {
            p.push(("kexec", system::load_new_kernel));
        }
        if on_disk {
            p.push(("unmount", unmount));
        }
        p
    }

    /// The disk the check phase chose and the layout planned for it, once it ran.
    pub fn target_disk(&self) -> Option<(&Path, &PlannedLayout)> {
        self.disk.as_ref().map(|(p, l)| (p.as_path(), l))
    }

    /// The variables templates and provision() see: the IMGBUILD's, with the effective format.
    pub fn variables(&self) -> BTreeMap<String, String> {
        let mut v = self.plan.variables.clone();
        v.insert("format".into(), self.format.clone());
        v
    }

    /// The kernel command line of the installed system (boot loader entries), without root=.
    pub fn cmdline(&self) -> String {
        let mut args = self.plan.kernel_cmdline.args.clone();
        if self.plan.kernel_cmdline.inherit_console {
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
fn files_phase(inst: &mut Install) -> Result<()> {
    let secrets = inst.payload.secrets()?;
    let (inputs, vars) = (inst.payload.inputs(), inst.variables());
    let applied = if inst.from_image() {
        crate::files::render_templates(&inst.root, &inputs, &vars, &secrets, crate::files::Templates::All)?
    } else if inst.place == Where::Image && !generic::secrets_in_image(&inst.plan) {
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
    Ok(())
}
