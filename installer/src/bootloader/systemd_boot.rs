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
