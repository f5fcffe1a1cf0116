//! Making the installed system bootable: systemd-boot (UEFI), put in place in-process from
//! the target's own files with the target's kernel-install doing the entries (so later kernel
//! upgrades keep working), or GRUB through the target's own grub-install and update-grub
//! (BIOS on msdos or GPT with a BIOS boot partition, or UEFI).

mod grub;
mod systemd_boot;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub use grub::install as install_grub;
pub use systemd_boot::install as install_systemd_boot;

/// Which boot loader, for which firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SystemdBoot,
    GrubBios,
    GrubEfi,
}

/// Everything the boot loader step needs to know.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: Kind,
    /// The whole disk (GRUB's BIOS boot code goes into its first sectors).
    pub disk: PathBuf,
    /// The ESP's mount point inside the new system (`/boot/efi`), if there is one.
    pub esp: Option<PathBuf>,
    /// The root filesystem's UUID, for `root=UUID=…`.
    pub root_uuid: String,
    /// The rest of the kernel command line.
    pub cmdline: String,
    /// Seconds the menu waits.
    pub timeout: u32,
}

/// The packages the target needs for `kind` (installed with the others).
pub fn packages(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::SystemdBoot => &["systemd-boot", "systemd-boot-efi"],
        Kind::GrubBios => &["grub-pc"],
        Kind::GrubEfi => &["grub-efi-amd64"],
    }
}

/// The full kernel command line of the installed system.
pub fn kernel_cmdline(spec: &Spec) -> String {
    format!("root=UUID={} ro {}", spec.root_uuid, spec.cmdline).trim().to_string()
}

/// Installs the boot loader into the mounted system at `root`.
pub fn install(root: &Path, spec: &Spec) -> Result<()> {
    match spec.kind {
        Kind::SystemdBoot => {
            let Some(esp) = &spec.esp else { bail!("systemd-boot needs an EFI system partition (a partition of type esp mounted at /boot/efi)") };
            install_systemd_boot(root, esp, spec)
        }
        Kind::GrubBios | Kind::GrubEfi => install_grub(root, spec),
    }
}

/// The kernel releases installed in the target (`/lib/modules/*` that have a
/// `/boot/vmlinuz-*`), newest last.
pub fn installed_kernels(root: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let boot = root.join("boot");
    for entry in std::fs::read_dir(&boot).map_err(|e| anyhow::anyhow!("listing {}: {e}", boot.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            found.push(release.to_string());
        }
    }
    // Kernel releases order like Debian versions (6.1.0-9 < 6.1.0-10).
    let key = |r: &str| crate::packages::debian::version::Version::parse(r).ok();
    found.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    });
    if found.is_empty() {
        bail!("no kernel in {} (/boot/vmlinuz-*): add a kernel package (linux-image-amd64) to packages=", root.display());
    }
    Ok(found)
}
