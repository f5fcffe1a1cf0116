//! `anemos boot`: boot a kernel and initramfs in QEMU with the console on this terminal.

use anemos_qemu::{choose_accel, Config, Console, Disk, Firmware, Net, Ovmf, Vm};
use anyhow::{bail, Result};

use crate::cli::BootArgs;

pub fn run(args: BootArgs) -> Result<()> {
    let mut config = Config::direct(&args.kernel, &args.initrd);
    config.append = args.append.clone();
    config.memory_mib = args.memory;
    config.disks = args.disks.iter().map(Disk::raw).collect();
    if args.net {
        config.net = Some(Net::default());
    }
    if args.uefi {
        config.firmware = Firmware::Uefi(Ovmf::find()?);
    }
    config.accel = choose_accel(&args.kernel, &args.initrd);
    eprintln!("anemos: booting {} with {} under QEMU ({:?}); the guest's console follows", args.kernel.display(), args.initrd.display(), config.accel);
    let mut vm = Vm::start(&config, Console::Inherit)?;
    let status = vm.wait()?;
    if !status.success() {
        bail!("QEMU exited with {status}");
    }
    Ok(())
}
