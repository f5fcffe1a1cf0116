//! What differs between the distributions anemos installs, in one place: what an install
//! adds to the plan's packages, which project files and host keyrings it uses, which
//! suites have no updates. The package code of each distribution (`debian/`, `arch/`,
//! `alpine/`) implements the formats; this says how an install uses them.

use crate::bootloader::{self, Kind};
use crate::plan::{Plan, Target};

/// One distribution's facts.
#[derive(Debug)]
pub struct Profile {
    pub name: &'static str,
    /// What is installed when the plan names no package at all (Debian: its minbase,
    /// which the resolver always takes).
    pub base: &'static [&'static str],
    /// The kernel package added when the plan names none (`None`: the plan names its
    /// kernel itself).
    pub kernel: Option<&'static str>,
    /// Whether the install adds the boot loader's packages (`bootloader::packages`, in
    /// this distribution's names); otherwise the plan names them.
    pub adds_loader: bool,
    /// Files beside the IMGBUILD the install uses (not copied into the system); a name
    /// ending in `/` is a directory whose files count.
    pub project_files: &'static [&'static str],
    /// The building host's keyring the payload carries for `hostconf=keyring`: (path on
    /// the host, its name in the payload's `keyrings/`).
    pub host_keyring: Option<(&'static str, &'static str)>,
    /// The keyring the payload always carries (path on the host, its name).
    pub archive_keyring: Option<(&'static str, &'static str)>,
    /// Suites without `-updates` and `-security`.
    pub rolling: &'static [&'static str],
    /// The package that makes the initramfs unlock encrypted partitions (`encrypt=`);
    /// `None`: not supported for this target yet.
    pub unlock: Option<&'static str>,
    /// The package that activates LVM volume groups at boot (`volume_group=`).
    pub lvm: Option<&'static str>,
    /// The package that assembles md arrays at boot, in the initramfs too (`raid=`).
    pub raid: Option<&'static str>,
    /// The btrfs tools (device scan in the initramfs, fsck, subvolumes).
    pub btrfs: Option<&'static str>,
}

const DEBIAN: Profile = Profile {
    name: "debian",
    base: &[],
    kernel: Some("linux-image-amd64"),
    adds_loader: true,
    project_files: &[],
    host_keyring: None,
    archive_keyring: Some(("/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring.gpg")),
    rolling: &["unstable", "sid", "experimental", "rc-buggy"],
    unlock: Some("cryptsetup-initramfs"),
    lvm: Some("lvm2"),
    raid: Some("mdadm"),
    btrfs: Some("btrfs-progs"),
};

const ARCH: Profile = Profile {
    name: "arch",
    base: &["base"],
    kernel: None,
    adds_loader: false,
    project_files: &["pacman.conf"],
    host_keyring: Some(("/usr/share/pacman/keyrings", "pacman")),
    archive_keyring: None,
    rolling: &[],
    unlock: None,
    lvm: None,
    raid: None,
    btrfs: None,
};

const ALPINE: Profile = Profile {
    name: "alpine",
    base: &["alpine-base"],
    kernel: None,
    adds_loader: false,
    project_files: &["repositories", "keys/"],
    host_keyring: Some(("/etc/apk/keys", "apk")),
    archive_keyring: None,
    rolling: &[],
    unlock: None,
    lvm: None,
    raid: None,
    btrfs: None,
};

/// The profile of `target`.
pub fn of(target: &Target) -> &'static Profile {
    match target {
        Target::Debian { .. } => &DEBIAN,
        Target::Arch => &ARCH,
        Target::Alpine => &ALPINE,
    }
}

impl Profile {
    /// The packages an install of `plan` asks for: the plan's (else the base), a kernel if
    /// the plan names none, and the boot loader's for `loader` (the kind this machine's
    /// firmware gets, or for an image every kind its layout allows).
    pub fn wanted(&self, plan: &Plan, loader: &[&str], bootable: bool) -> Vec<String> {
        let mut want: Vec<String> = if plan.packages.is_empty() { self.base.iter().map(|s| s.to_string()).collect() } else { plan.packages.clone() };
        if !bootable {
            return want;
        }
        if let Some(k) = self.kernel.filter(|k| !want.iter().any(|w| w.starts_with(k.trim_end_matches("-amd64")))) {
            want.push(k.to_string());
        }
        if self.adds_loader {
            for p in loader {
                if !want.iter().any(|w| w == p) {
                    want.push(p.to_string());
                }
            }
        }
        for p in self.storage_packages(plan).into_iter().map(|(p, _)| p) {
            if !want.iter().any(|w| w == p) {
                want.push(p.to_string());
            }
        }
        want
    }

    /// What `anemos check` shows the install adds to the plan's packages, for each firmware.
    pub fn added(&self, plan: &Plan) -> Vec<String> {
        let named = |p: &str| plan.packages.iter().any(|w| w == p);
        let mut out = Vec::new();
        if let Some(k) = self.kernel.filter(|k| !plan.packages.iter().any(|w| w.starts_with(k.trim_end_matches("-amd64")))) {
            out.push(format!("{k} (a kernel)"));
        }
        if self.adds_loader {
            let for_firmware = |uefi: bool| bootloader::choose(plan.bootloader, &plan.layout, uefi).map(bootloader::packages).unwrap_or(&[]);
            let (efi, bios): (Vec<&str>, Vec<&str>) = (for_firmware(true).to_vec(), for_firmware(false).to_vec());
            let show = |v: &[&str]| v.iter().filter(|p| !named(p)).copied().collect::<Vec<_>>().join(" ");
            if efi == bios && !efi.is_empty() {
                out.push(format!("{} (the boot loader)", show(&efi)));
            } else if !efi.is_empty() || !bios.is_empty() {
                out.push(format!("{} (the boot loader on UEFI) or {} (on BIOS)", show(&efi), show(&bios)));
            }
        }
        out.retain(|s| !s.starts_with(' '));
        for (p, why) in self.storage_packages(plan).into_iter().filter(|(p, _)| !named(p)) {
            out.push(format!("{p} ({why})"));
        }
        out
    }

    /// The packages the new system needs to open its layout at boot, and why.
    pub fn storage_packages(&self, plan: &Plan) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if let Some(u) = self.unlock.filter(|_| !plan.layout.encrypted.is_empty()) {
            out.push((u, "unlocks the encrypted partitions at boot"));
        }
        if let Some(r) = self.raid.filter(|_| !plan.layout.raid.is_empty()) {
            out.push((r, "assembles the RAID arrays at boot"));
        }
        if let Some(l) = self.lvm.filter(|_| plan.layout.volume_group.is_some()) {
            out.push((l, "activates the volume group at boot"));
        }
        if let Some(b) = self.btrfs.filter(|_| plan.layout.uses_btrfs()) {
            out.push((b, "mounts and checks the btrfs file systems"));
        }
        out
    }
}

/// The boot loader packages for `kind` in `target`'s names, if its install adds them.
pub fn loader_packages(target: &Target, kind: Option<Kind>) -> &'static [&'static str] {
    match kind {
        Some(k) if of(target).adds_loader => bootloader::packages(k),
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Bootloader;

    #[test]
    fn debian_adds_a_kernel_and_the_loader_the_others_do_not() {
        let mut plan = crate::plan::tests::sample();
        plan.packages = vec!["openssh-server".into()];
        plan.bootloader = Bootloader::SystemdBoot;
        let d = of(&plan.target);
        assert_eq!(d.wanted(&plan, bootloader::packages(Kind::SystemdBoot), true), ["openssh-server", "linux-image-amd64", "systemd-boot", "systemd-boot-efi"]);
        assert_eq!(d.wanted(&plan, &[], false), ["openssh-server"], "a directory build adds nothing");
        assert_eq!(d.added(&plan), ["linux-image-amd64 (a kernel)", "systemd-boot systemd-boot-efi (the boot loader)"]);
        plan.packages.push("linux-image-cloud-amd64".into());
        assert_eq!(d.added(&plan).len(), 1, "a named kernel is not added again");
        plan.target = Target::Arch;
        plan.packages.clear();
        assert_eq!(of(&plan.target).wanted(&plan, bootloader::packages(Kind::GrubEfi), true), ["base"]);
        assert!(of(&plan.target).added(&plan).is_empty());
        assert!(of(&Target::Alpine).project_files.contains(&"keys/"));
    }
}
