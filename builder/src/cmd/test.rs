//! `anemos test DIR`: build the raw image, boot it in QEMU (UEFI or BIOS, as its boot loader
//! needs) with the disks it was built with (`--attach`, same serials, read-only: a test
//! then also proves the kept disks unchanged), wait until the new system is up — a login
//! prompt on the serial console, or the marker the IMGBUILD names in `test_marker=` —
//! print the phase timings, and exit 0 or not. A boot that can only fail (emergency mode,
//! a panic, nothing to boot) stops at once with the console lines that show it. With
//! `--console` the boot is shown as it happens and, once the marker is seen, the console
//! is handed to the terminal until the guest powers off or Ctrl-a x is typed.

use std::time::{Duration, Instant};

use anemos_qemu::{attach, Config, Console, Disk, Firmware, Net, Ovmf, Vm};
use anyhow::{bail, Context, Result};
use installer::imgbuild::validate::{parse_format, parse_size, ForBoot};
use installer::plan::Format;

use crate::cli::TestArgs;
use crate::image::{build, READY};

pub fn run(args: TestArgs) -> Result<()> {
    let mut req = crate::cmd::image::request(&args.image);
    req.project.options.for_boot = Some(for_boot(args.image.project.options.format.as_deref(), args.size.as_deref())?);
    let built = build(&req)?;
    let marker = args.marker.clone().or_else(|| built.plan.variables.get("test_marker").cloned()).unwrap_or_else(|| "login:".into());
    let uefi = args.uefi || (!args.bios && installer::bootloader::wants_uefi(built.plan.bootloader, &built.plan.layout));
    let firmware = if uefi { Firmware::Uefi(Ovmf::find()?) } else { Firmware::Bios };
    let mut config = Config::from_disk(Disk::raw(&built.path), firmware);
    // The disks the image was built with, as the new system's fstab expects them.
    config.disks.extend(req.attach.iter().map(|(file, serial)| Disk { serial: serial.clone(), read_only: true, ..Disk::raw(file) }));
    config.memory_mib = args.image.memory;
    config.net = Some(Net { forwards: args.forward.clone(), ..Net::default() });
    config.accel = anemos_qemu::Accel::Tcg;
    let log = args.image.output.join(format!("{}-boot.log", built.plan.imgname));
    println!("booting {} ({}); waiting up to {} s for {marker:?}", built.path.display(), if uefi { "UEFI" } else { "BIOS" }, args.timeout);
    let started = Instant::now();
    let mut vm = Vm::start(&config, Console::Capture(log.clone()))?;
    vm.set_tee(args.console);
    let seen = vm.expect_boot(&marker, Duration::from_secs(args.timeout));
    let boot = started.elapsed();
    // The rest of the marker's line (a report the guest prints), before the VM goes.
    let rest = seen.as_ref().ok().and_then(|_| vm.expect("\n", Duration::from_secs(5)).ok()).unwrap_or_default();
    vm.set_tee(false);
    if !args.console || seen.is_err() {
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
    if !rest.trim().is_empty() {
        println!("  {marker}{}", rest.trim_end());
    }
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

/// A test always boots a disk image: `--format` must be raw; else the IMGBUILD's raw
/// format is kept (its table and file system, and its size unless `--size`), and a `dir`
/// or `tar` project is built as the default raw image.
fn for_boot(format: Option<&str>, size: Option<&str>) -> Result<ForBoot> {
    if let Some(f) = format {
        if !matches!(parse_format(f).map_err(anyhow::Error::msg)?.0, Format::Raw { .. }) {
            bail!("--format {f:?}: anemos test boots a disk image; give a raw format (raw SIZE [msdos|gpt]) or none");
        }
    }
    let size = size.map(|s| parse_size(s, true).map_err(|e| anyhow::anyhow!("--size {s:?}: {e}"))).transpose()?;
    Ok(ForBoot { size })
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_and_sizes_for_a_boot() {
        assert_eq!(super::for_boot(None, None).unwrap().size, None, "the IMGBUILD's size is kept");
        assert_eq!(super::for_boot(None, Some("4G")).unwrap().size, Some(4 << 30));
        assert!(super::for_boot(Some("dir"), None).unwrap_err().to_string().contains("boots a disk image"));
        assert!(super::for_boot(Some("raw 2G gpt"), None).is_ok());
        assert!(super::for_boot(None, Some("lots")).is_err());
    }
}
