//! Making the installed system bootable: systemd-boot (UEFI), put in place in-process from
//! the target's own files with the target's kernel-install doing the entries (so later kernel
//! upgrades keep working), or GRUB through the target's own grub-install and update-grub
//! (BIOS on msdos or GPT with a BIOS boot partition, UEFI, or both at once on a GPT disk
//! that has a BIOS boot partition and an ESP).

mod grub;
mod systemd_boot;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::plan::{Bootloader, Layout, PartKind};

pub use grub::install as install_grub;
pub use systemd_boot::install as install_systemd_boot;

/// Which boot loader, for which firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SystemdBoot,
    GrubBios,
    GrubEfi,
    /// GRUB for both firmwares: the BIOS boot code in the disk and its BIOS boot partition,
    /// and the EFI binary on the ESP; one grub.cfg. The disk boots on either kind of machine.
    GrubHybrid,
}

/// The boot loader for `bootloader=` on `layout`, installed from an installer that booted
/// with UEFI firmware (`uefi`) or not; `None` for `bootloader=none`.
///
/// GRUB installs for every firmware the layout is laid out for: a BIOS boot partition and
/// an ESP mean both (whatever the installer booted with), an ESP alone means UEFI when the
/// installer booted that way, and anything else means BIOS.
pub fn choose(bootloader: Bootloader, layout: &Layout, uefi: bool) -> Option<Kind> {
    Some(match bootloader {
        Bootloader::None => return None,
        Bootloader::SystemdBoot => Kind::SystemdBoot,
        Bootloader::Grub if layout.has(PartKind::Esp) && layout.has(PartKind::BiosBoot) => Kind::GrubHybrid,
        Bootloader::Grub if uefi && layout.has(PartKind::Esp) => Kind::GrubEfi,
        Bootloader::Grub => Kind::GrubBios,
    })
}

/// Whether a machine (a build or test VM) should boot this layout through UEFI: when the
/// boot loader needs it (systemd-boot; GRUB with an ESP and no BIOS boot partition; no
/// loader but an ESP), else BIOS.
pub fn wants_uefi(bootloader: Bootloader, layout: &Layout) -> bool {
    match bootloader {
        Bootloader::SystemdBoot => true,
        Bootloader::Grub => layout.has(PartKind::Esp) && !layout.has(PartKind::BiosBoot),
        Bootloader::None => layout.has(PartKind::Esp),
    }
}

/// Everything the boot loader step needs to know.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: Kind,
    /// The whole disks, the target first: GRUB's BIOS boot code goes into each (a layout
    /// over several disks has a bios-boot partition on every one, so either boots alone).
    pub disks: Vec<PathBuf>,
    /// The names the new system's grub-pc upgrades reinstall the BIOS boot code on
    /// (`/dev/disk/by-id/…` where the disk has one: the kernel's names can move).
    pub install_devices: Vec<String>,
    /// The ESP's mount point inside the new system (`/boot/efi`), if there is one.
    pub esp: Option<PathBuf>,
    /// The root file system, for `root=UUID=…` (and `rootflags=`).
    pub root: RootFs,
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
        // grub-pc conflicts with grub-efi-amd64; grub-pc-bin is its BIOS modules alone.
        Kind::GrubHybrid => &["grub-efi-amd64", "grub-pc-bin"],
    }
}

/// The packages an image needs for `bootloader=` on `layout` on either firmware (one
/// image, many machines): GRUB's EFI package and its BIOS modules where there is an ESP
/// (grub-pc conflicts with grub-efi-amd64), grub-pc where BIOS is all the layout allows.
pub fn image_packages(bootloader: Bootloader, layout: &Layout) -> &'static [&'static str] {
    match bootloader {
        Bootloader::None => &[],
        Bootloader::SystemdBoot => packages(Kind::SystemdBoot),
        Bootloader::Grub if layout.has(PartKind::Esp) => packages(Kind::GrubHybrid),
        Bootloader::Grub => packages(Kind::GrubBios),
    }
}

/// The packages whose tools install `kind` (what an image must hold for it): the
/// `-bin` packages that both GRUB flavours depend on, systemd-boot's EFI binary.
pub fn tools(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::SystemdBoot => &["systemd-boot-efi"],
        Kind::GrubBios => &["grub-pc-bin"],
        Kind::GrubEfi => &["grub-efi-amd64-bin"],
        Kind::GrubHybrid => &["grub-efi-amd64-bin", "grub-pc-bin"],
    }
}

/// The full kernel command line of the installed system.
pub fn kernel_cmdline(spec: &Spec) -> String {
    root_cmdline(&spec.root, &spec.cmdline)
}

/// The installed system's root file system, as its kernel command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFs {
    pub uuid: String,
    /// Mount options the initramfs needs to find `/` in the file system (`subvol=@`).
    pub flags: Option<String>,
    /// Its node in the installer (`/dev/vda2`, `/dev/md127`): where GRUB's scripts find
    /// it by UUID. Never on the command line (the next boot may name the disk otherwise).
    pub device: PathBuf,
}

/// `root=UUID=… [rootflags=…] ro` and the rest: the one place the installed system's root
/// is named.
pub fn root_cmdline(root: &RootFs, rest: &str) -> String {
    let flags = root.flags.as_ref().map(|f| format!(" rootflags={f}")).unwrap_or_default();
    format!("root=UUID={}{flags} ro {rest}", root.uuid).trim().to_string()
}

/// Installs the boot loader into the mounted system at `root`.
pub fn install(root: &Path, spec: &Spec) -> Result<()> {
    match spec.kind {
        Kind::SystemdBoot => {
            let Some(esp) = &spec.esp else { bail!("systemd-boot needs an EFI system partition (a partition of type esp mounted at /boot/efi)") };
            install_systemd_boot(root, esp, spec)
        }
        Kind::GrubBios | Kind::GrubEfi | Kind::GrubHybrid => install_grub(root, spec),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::layout::tests::part;
    use crate::plan::{LayoutOrigin, PartSize, TableType};

    fn layout(table: TableType, kinds: &[PartKind]) -> Layout {
        let partitions = kinds.iter().map(|k| part("p", PartSize::Bytes(1 << 20), k.clone())).collect();
        Layout { table, partitions, origin: LayoutOrigin::Partitions, encrypted: Vec::new(), volume_group: None, raid: Vec::new(), subvolumes: Vec::new() }
    }

    #[test]
    fn the_root_is_named_by_uuid_with_its_subvolume() {
        let root = RootFs { uuid: "u".into(), flags: None, device: "/dev/vda2".into() };
        assert_eq!(root_cmdline(&root, "quiet"), "root=UUID=u ro quiet");
        let root = RootFs { uuid: "u".into(), flags: Some("subvol=@".into()), device: "/dev/vda2".into() };
        assert_eq!(root_cmdline(&root, ""), "root=UUID=u rootflags=subvol=@ ro");
    }

    #[test]
    fn grub_installs_for_every_firmware_the_layout_is_laid_out_for() {
        use PartKind::*;
        let gpt_both = layout(TableType::Gpt, &[BiosBoot, Esp, Root]);
        let gpt_esp = layout(TableType::Gpt, &[Esp, Root]);
        let gpt_bios = layout(TableType::Gpt, &[BiosBoot, Root]);
        let msdos = layout(TableType::Msdos, &[Root]);
        for uefi in [true, false] {
            assert_eq!(choose(Bootloader::Grub, &gpt_both, uefi), Some(Kind::GrubHybrid));
            assert_eq!(choose(Bootloader::Grub, &gpt_bios, uefi), Some(Kind::GrubBios));
            assert_eq!(choose(Bootloader::Grub, &msdos, uefi), Some(Kind::GrubBios));
            assert_eq!(choose(Bootloader::SystemdBoot, &gpt_esp, uefi), Some(Kind::SystemdBoot));
            assert_eq!(choose(Bootloader::None, &gpt_both, uefi), None);
        }
        assert_eq!(choose(Bootloader::Grub, &gpt_esp, true), Some(Kind::GrubEfi));
        assert_eq!(choose(Bootloader::Grub, &gpt_esp, false), Some(Kind::GrubBios));
    }

    #[test]
    fn an_image_holds_the_loader_for_every_firmware_its_layout_allows() {
        use PartKind::*;
        let gpt_esp = layout(TableType::Gpt, &[Esp, Root]);
        let msdos = layout(TableType::Msdos, &[Root]);
        // Whatever the firmware, the tools the loader needs are in the image's packages
        // (grub-efi-amd64 brings grub-efi-amd64-bin, grub-pc brings grub-pc-bin).
        let brings = |p: &'static str| -> Vec<&'static str> {
            match p {
                "grub-efi-amd64" => vec!["grub-efi-amd64", "grub-efi-amd64-bin"],
                "grub-pc" => vec!["grub-pc", "grub-pc-bin"],
                other => vec![other],
            }
        };
        for (loader, l) in [(Bootloader::Grub, &gpt_esp), (Bootloader::Grub, &msdos), (Bootloader::SystemdBoot, &gpt_esp)] {
            let have: Vec<&str> = image_packages(loader, l).iter().flat_map(|p| brings(p)).collect();
            for uefi in [true, false] {
                let Some(kind) = choose(loader, l, uefi) else { continue };
                assert!(tools(kind).iter().all(|t| have.contains(t)), "{loader:?} {uefi}: {:?} not in {have:?}", tools(kind));
            }
        }
        assert!(!image_packages(Bootloader::Grub, &gpt_esp).contains(&"grub-pc"), "grub-pc conflicts with grub-efi-amd64");
    }

    #[test]
    fn hybrid_grub_takes_the_efi_package_and_the_bios_modules_not_grub_pc() {
        // grub-pc and grub-efi-amd64 conflict in Debian: a hybrid must not ask for both.
        let p = packages(Kind::GrubHybrid);
        assert!(p.contains(&"grub-efi-amd64") && p.contains(&"grub-pc-bin") && !p.contains(&"grub-pc"), "{p:?}");
    }
}
