//! systemd-boot, copied in-process from the target's own `systemd-boot-efi` files:
//! `EFI/systemd/systemd-bootx64.efi` plus the removable-media fallback path
//! `EFI/BOOT/BOOTX64.EFI` (firmware finds it without boot variables), `loader/loader.conf`,
//! and boot entries made by the target's `kernel-install`, the same tool its kernel
//! packages call on every upgrade, configured through `/etc/kernel/cmdline` and
//! `/etc/kernel/entry-token`.

use std::path::Path;

use anyhow::{Context, Result};

use super::{installed_kernels, kernel_cmdline, Spec};
use crate::packages::chroot;

const EFI_BINARY: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

pub fn install(root: &Path, esp: &Path, spec: &Spec) -> Result<()> {
    let esp_dir = crate::mount::inside(root, esp)?;
    let binary = root.join(EFI_BINARY);
    let code = std::fs::read(&binary).with_context(|| format!("reading {} (is systemd-boot-efi installed?)", binary.display()))?;
    for rel in ["EFI/systemd/systemd-bootx64.efi", "EFI/BOOT/BOOTX64.EFI"] {
        let dest = esp_dir.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&dest, &code).with_context(|| format!("writing {}", dest.display()))?;
    }
    let machine_id = std::fs::read_to_string(root.join("etc/machine-id")).context("reading the new system's /etc/machine-id")?;
    let token = machine_id.trim();
    std::fs::create_dir_all(esp_dir.join("loader/entries"))?;
    remove_foreign_entries(&esp_dir, token)?;
    std::fs::create_dir_all(esp_dir.join(token))?;
    std::fs::write(esp_dir.join("loader/loader.conf"), format!("# Written by anemos.\ndefault {token}-*\ntimeout {}\neditor no\n", spec.timeout))?;
    std::fs::create_dir_all(root.join("etc/kernel"))?;
    std::fs::write(root.join("etc/kernel/cmdline"), format!("{}\n", kernel_cmdline(spec)))?;
    std::fs::write(root.join("etc/kernel/entry-token"), format!("{token}\n"))?;
    std::fs::write(root.join("etc/kernel/install.conf"), "# Written by anemos: boot loader spec entries on the ESP.\nlayout=bls\n")?;
    for release in installed_kernels(root)? {
        let kernel = format!("/boot/vmlinuz-{release}");
        let initrd = format!("/boot/initrd.img-{release}");
        let mut args = vec!["add", release.as_str(), kernel.as_str()];
        if root.join(initrd.trim_start_matches('/')).exists() {
            args.push(&initrd);
        }
        chroot::run(root, "kernel-install", &args).with_context(|| format!("adding a boot entry for Linux {release} with kernel-install"))?;
    }
    let entries = std::fs::read_dir(esp_dir.join("loader/entries"))?.count();
    anyhow::ensure!(entries > 0, "kernel-install wrote no boot entry into {}/loader/entries", esp_dir.display());
    log::info!("systemd-boot installed on the ESP with {entries} boot entries");
    Ok(())
}

/// Removes the boot entries (and their kernel directories) of every entry token but this
/// system's. The disks phase made this ESP, so anything else on it was written during the
/// install: Debian's systemd-boot and kernel package scripts run `bootctl install` and
/// `kernel-install` while the packages are unpacked, under the machine-id of that moment
/// and with the installer's own kernel command line. Left there, such an entry boots the
/// new kernel without `root=` and doubles the kernels on the ESP.
fn remove_foreign_entries(esp_dir: &Path, token: &str) -> Result<()> {
    let entries = esp_dir.join("loader/entries");
    for entry in std::fs::read_dir(&entries).with_context(|| format!("listing {}", entries.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.starts_with(&format!("{token}-")) {
            std::fs::remove_file(&path).with_context(|| format!("removing the stale boot entry {}", path.display()))?;
            log::info!("bootloader: removed {name}, a boot entry the package scripts wrote under another machine-id");
        }
    }
    for entry in std::fs::read_dir(esp_dir).with_context(|| format!("listing {}", esp_dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let other_token = name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()) && name != token;
        if other_token && path.is_dir() {
            std::fs::remove_dir_all(&path).with_context(|| format!("removing the stale kernel directory {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn entries_of_other_tokens_go_ours_and_the_rest_of_the_esp_stay() {
        let dir = tempfile::tempdir().unwrap();
        let esp = dir.path();
        let (ours, stale) = ("7a6f018b355b4a4bb9d1f712b26f7952", "ab8123246a2046baa046deeaf30a1b29");
        for d in ["loader/entries", &format!("{ours}/6.1.0"), &format!("{stale}/6.1.0"), "EFI/systemd"] {
            std::fs::create_dir_all(esp.join(d)).unwrap();
        }
        for f in [
            format!("loader/entries/{ours}-6.1.0.conf"),
            format!("loader/entries/{stale}-6.1.0.conf"),
            format!("{stale}/6.1.0/linux"),
            "EFI/systemd/systemd-bootx64.efi".into(),
            "loader/loader.conf".into(),
        ] {
            std::fs::write(esp.join(f), "x").unwrap();
        }
        super::remove_foreign_entries(esp, ours).unwrap();
        assert!(esp.join(format!("loader/entries/{ours}-6.1.0.conf")).exists() && esp.join(ours).is_dir());
        assert!(!esp.join(format!("loader/entries/{stale}-6.1.0.conf")).exists() && !esp.join(stale).exists());
        assert!(esp.join("EFI/systemd/systemd-bootx64.efi").exists() && esp.join("loader/loader.conf").exists());
    }
}
