//! Install mode: the payload's plan, phase by phase, then the end state the plan (or
//! `anemos.done`) asks for. Once the disk has been written, a failure first makes it
//! unbootable, so a half-installed system is never started by accident.

use std::path::{Path, PathBuf};
use std::time::Instant;

use installer::event::{emit, Event};
use installer::install::{Install, Phase, Where};
use installer::payload::Payload;
use installer::plan::OnSuccess;

use crate::cmdline::{Action, Options};
use crate::{ending, logger, step};

/// Where the new system is assembled.
const TARGET: &str = "/target";

pub fn run(opts: &Options, payload: Payload) -> ! {
    let started = Instant::now();
    let confirmed = confirmed_disks().unwrap_or_else(|e| ending::fail("check", &e));
    let uefi = Path::new("/sys/firmware/efi").exists();
    let on_success = payload.plan.on_success;
    // Maintainer scripts ask the kernel for the host name (postfix's postinst derives
    // myhostname from it): give them the new system's, not "(none)".
    if let Err(e) = rustix::system::sethostname(payload.plan.hostname.as_bytes()) {
        log::warn!("setting the installer's host name to {}: {e}", payload.plan.hostname);
    }
    let place = Where::Disk { target: opts.target.clone(), uefi, confirmed: confirmed.map(Box::new) };
    let mut inst = Install::new(payload, Path::new(TARGET), place, Box::new(logger::memory));
    // PID 1 owns this machine's clock: the indexes phase may correct it from the mirror.
    inst.set_clock = true;
    for (phase, run) in inst.phases() {
        if phase == Phase::Disks {
            guard_disk(&inst);
        }
        step::run(opts, phase.name(), || run(&mut inst));
    }
    let ms = started.elapsed().as_millis() as u64;
    log::info!("installation finished in {:.0} s", ms as f64 / 1000.0);
    emit(Event::Done { ms });
    let action = opts.done.unwrap_or(match on_success {
        OnSuccess::Reboot => Action::Reboot,
        OnSuccess::Kexec => Action::Kexec,
        OnSuccess::Poweroff => Action::Poweroff,
    });
    ending::shutdown(action)
}

/// The disks `anemos kexec` recorded as confirmed by the operator, if it did: a record that
/// is there but unreadable stops the install (it is the disk-safety check).
fn confirmed_disks() -> anyhow::Result<Option<installer::disk::Confirmed>> {
    use anyhow::Context;
    let path = Path::new("/").join(installer::disk::identity::CONFIRMED_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let c: installer::disk::Confirmed = serde_json::from_slice(text.as_bytes()).with_context(|| format!("{} is damaged; nothing was written", path.display()))?;
    log::info!("confirmed by the operator: wipe {}", c.target.describe());
    for other in &c.others {
        log::info!("confirmed by the operator: wipe {} too", other.describe());
    }
    for kept in &c.preserved {
        log::info!("confirmed by the operator: keep {}", kept.describe());
    }
    Ok(Some(c))
}

/// From the disks phase on, a failure wipes the new partition table (the filesystems stay
/// mounted for the rescue console): the firmware then finds nothing to boot.
fn guard_disk(inst: &Install) {
    for (disk, layout) in inst.target_disks() {
        let (disk, table, sector) = (PathBuf::from(disk), layout.table, layout.sector_size);
        ending::add_safety_hook(&format!("make the half-installed {} unbootable", disk.display()), move || installer::disk::partition::invalidate(&disk, table, sector));
    }
}
