//! The kexec phase (`on_success=kexec`): the installed kernel loaded to be booted directly.

use anyhow::{Context, Result};

use super::Install;
use crate::bootloader;

/// Loads the installed kernel for a direct kexec into it (`on_success=kexec`), with the
/// same command line its boot loader entry has.
pub fn run(inst: &mut Install) -> Result<()> {
    let release = bootloader::installed_kernels(&inst.root)?.pop().context("no kernel installed")?;
    let kernel = std::fs::File::open(inst.root.join(format!("boot/vmlinuz-{release}"))).context("opening the installed kernel")?;
    let initrd = std::fs::File::open(inst.root.join(format!("boot/initrd.img-{release}"))).ok();
    let cmdline = bootloader::root_cmdline(&inst.root_fs()?, &inst.cmdline());
    crate::sys::kexec_file_load(Some(&kernel), initrd.as_ref(), &cmdline, 0).with_context(|| format!("loading Linux {release} for kexec"))?;
    log::info!("Linux {release} loaded for kexec: {cmdline}");
    Ok(())
}
