//! `anemos test DIR`: build the raw image, boot it in QEMU (UEFI or BIOS, as its boot loader
//! needs), wait until the new system is up — a login prompt on the serial console, or the
//! marker the IMGBUILD names in `test_marker=` — print the phase timings, and exit 0 or not.
//! With `--console` the boot is shown as it happens and, once the marker is seen, the
//! console is handed to the terminal until the guest powers off or Ctrl-a x is typed.

use std::time::{Duration, Instant};

use anemos_qemu::{attach, Config, Console, Disk, Firmware, Net, Ovmf, Vm};
use anyhow::{Context, Result};

use crate::cli::TestArgs;
use crate::image::{build, wants_uefi, READY};

pub fn run(args: TestArgs) -> Result<()> {
    let mut req = crate::cmd::image::request(&args.image);
    if req.project.format.is_none() {
        // A test always boots a disk image: keep the IMGBUILD's raw size if it has one.
        req.project.format = Some(args.size.as_ref().map(|s| format!("raw {s}")).unwrap_or_else(|| "raw".into()));
    }
    let built = build(&req)?;
    let marker = args.marker.clone().or_else(|| built.plan.variables.get("test_marker").cloned()).unwrap_or_else(|| "login:".into());
    let uefi = args.uefi || (!args.bios && wants_uefi(&built.plan));
    let firmware = if uefi { Firmware::Uefi(Ovmf::find()?) } else { Firmware::Bios };
    let mut config = Config::from_disk(Disk::raw(&built.path), firmware);
    config.memory_mib = args.image.memory;
    config.net = Some(Net { forwards: args.forward.clone(), ..Net::default() });
    config.accel = anemos_qemu::Accel::Tcg;
    let log = args.image.output.join(format!("{}-boot.log", built.plan.imgname));
    println!("booting {} ({}); waiting up to {} s for {marker:?}", built.path.display(), if uefi { "UEFI" } else { "BIOS" }, args.timeout);
    let started = Instant::now();
    let mut vm = Vm::start(&config, Console::Capture(log.clone()))?;
    vm.set_tee(args.console);
    let seen = vm.expect(&marker, Duration::from_secs(args.timeout));
    let boot = started.elapsed();
    vm.set_tee(false);
    if !args.console {
        let _ = vm.kill();
    }
    println!("\nphase timings:");
    for (phase, ms) in &built.phases {
        let label = if phase == READY { "installer ready (kernel uptime)" } else { phase.as_str() };
        println!("  {label:<12} {:>7.1} s", *ms as f64 / 1000.0);
    }
    println!("  {:<12} {:>7.1} s", "boot", boot.as_secs_f64());
    seen.with_context(|| format!("{} did not come up (console log: {})", built.plan.imgname, log.display()))?;
    println!("{} is up: {marker:?} seen after {:.0} s of boot", built.plan.imgname, boot.as_secs_f64());
    for (host, guest) in &args.forward {
        println!("  guest port {guest} is 127.0.0.1:{host} here");
    }
    if args.console {
        println!("the console is yours (press Enter for a fresh prompt); Ctrl-a x switches the VM off, Ctrl-a h helps");
        let status = attach(&mut vm)?;
        println!("\r\n{}", if status.success() { "the guest powered off" } else { "the VM was switched off" });
    }
    Ok(())
}
