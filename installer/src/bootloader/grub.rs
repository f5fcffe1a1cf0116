//! GRUB through the target's own tools: `grub-install` (BIOS boot code into the disk, the
//! EFI binary on the ESP at the removable-media path, or both) and `update-grub` for grub.cfg,
//! with the serial console and command line in /etc/default/grub.d/, and debconf told
//! where GRUB lives so the package's own upgrades reinstall it there.

use std::path::Path;

use anyhow::{Context, Result};

use super::{kernel_cmdline, Kind, Spec};
use crate::packages::chroot;

pub fn install(root: &Path, spec: &Spec) -> Result<()> {
    write_defaults(root, spec)?;
    let disk = spec.disk.to_string_lossy().into_owned();
    if matches!(spec.kind, Kind::GrubBios | Kind::GrubHybrid) {
        chroot::run(root, "grub-install", &["--target=i386-pc", &disk]).with_context(|| format!("installing GRUB's BIOS boot code on {disk}"))?;
    }
    if spec.kind == Kind::GrubBios {
        debconf(root, &format!("grub-pc grub-pc/install_devices multiselect {disk}"))?;
    }
    if matches!(spec.kind, Kind::GrubEfi | Kind::GrubHybrid) {
        let esp = spec.esp.as_ref().context("GRUB for UEFI needs an EFI system partition mounted at /boot/efi")?;
        let esp = esp.to_string_lossy().into_owned();
        chroot::run(root, "grub-install", &["--target=x86_64-efi", &format!("--efi-directory={esp}"), "--removable", "--no-nvram"])
            .with_context(|| format!("installing GRUB's EFI binary on the ESP at {esp}"))?;
        debconf(root, "grub-efi-amd64 grub2/force_efi_extra_removable boolean true")?;
    }
    chroot::run(root, "update-grub", &[]).context("writing grub.cfg with update-grub")?;
    log::info!("GRUB installed ({:?})", spec.kind);
    Ok(())
}

fn write_defaults(root: &Path, spec: &Spec) -> Result<()> {
    let cmdline = kernel_cmdline(spec);
    // update-grub adds root= itself; keep the rest.
    let rest: Vec<&str> = cmdline.split_whitespace().filter(|w| !w.starts_with("root=") && *w != "ro").collect();
    let serial = rest.iter().find_map(|w| w.strip_prefix("console=ttyS"));
    let mut text = format!("# Written by anemos.\nGRUB_TIMEOUT={}\nGRUB_CMDLINE_LINUX_DEFAULT=\"\"\nGRUB_CMDLINE_LINUX=\"{}\"\nGRUB_DISABLE_OS_PROBER=true\n", spec.timeout, rest.join(" "));
    if let Some(serial) = serial {
        let (unit, speed) = serial.split_once(',').unwrap_or((serial, "115200"));
        let speed: String = speed.chars().take_while(|c| c.is_ascii_digit()).collect();
        text += &format!("GRUB_TERMINAL=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --unit={unit} --speed={speed}\"\n");
    }
    let dir = root.join("etc/default/grub.d");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("anemos.cfg"), text).context("writing /etc/default/grub.d/anemos.cfg")
}

fn debconf(root: &Path, selection: &str) -> Result<()> {
    let mut cmd = chroot::command(root, "debconf-set-selections", &[])?;
    let (status, _, stderr) = crate::exec::output_with_input(&mut cmd, format!("{selection}\n").as_bytes())?;
    anyhow::ensure!(status.success(), "debconf-set-selections failed ({status}): {}", String::from_utf8_lossy(&stderr).trim());
    Ok(())
}
