//! Clean shutdown: stop every other process, sync, unmount real filesystems in reverse order
//! of mounting, then reboot or power off.

use std::time::{Duration, Instant};

use installer::event::{emit, Event};
use installer::exec::other_processes;
use installer::sys::signal_all;
use rustix::mount::{mount_remount, unmount, MountFlags, UnmountFlags};
use rustix::process::Signal;
use rustix::system::{reboot, RebootCommand};

use super::console;
use crate::cmdline::Action;

/// Mount points the init made itself; they hold no data worth unmounting.
const PSEUDO: &[&str] = &["/", "/proc", "/sys", "/dev", "/dev/pts", "/run", "/tmp", "/sys/firmware/efi/efivars"];

/// An operator asked for it (at the console or over the endpoint): no wait for a deploy to
/// collect the last events.
pub fn asked(action: Action) -> ! {
    shut_down(action, false)
}

/// Shuts the machine down as `action` says (`Rescue` enters the rescue console instead),
/// once a deploy that follows this installer has collected how it ended.
pub fn shutdown(action: Action) -> ! {
    shut_down(action, true)
}

fn shut_down(action: Action, tell: bool) -> ! {
    let command = match action {
        Action::Rescue => console::run(),
        Action::Reboot => RebootCommand::Restart,
        Action::Poweroff => RebootCommand::PowerOff,
        Action::Kexec => RebootCommand::Kexec,
    };
    log::info!("shutting down: {}", action.name());
    emit(Event::Shutdown { action: action.name().into() });
    if tell {
        // A deploy that follows this installer learns how it ended before it goes away.
        super::endpoint::let_the_workstation_know();
    }
    stop_processes();
    rustix::fs::sync();
    unmount_targets();
    rustix::fs::sync();
    if let Err(e) = reboot(command) {
        log::error!("reboot({}) failed: {e}; halting here", action.name());
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn stop_processes() {
    if other_processes().is_empty() {
        return;
    }
    log::info!("terminating {} remaining processes", other_processes().len());
    if let Err(e) = signal_all(Signal::TERM) {
        log::warn!("sending SIGTERM to all processes: {e}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !other_processes().is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = other_processes();
    if !left.is_empty() {
        log::warn!("killing {} processes that ignored SIGTERM: {left:?}", left.len());
        let _ = signal_all(Signal::KILL);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Unmounts every non-pseudo mount, newest first; a busy one is remounted read-only.
pub fn unmount_targets() {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let targets: Vec<String> = text.lines().filter_map(|l| l.split(' ').nth(4)).map(installer::mount::unescape).collect();
    for target in targets.iter().rev() {
        if PSEUDO.contains(&target.as_str()) {
            continue;
        }
        match unmount(target.as_str(), UnmountFlags::empty()) {
            Ok(()) => log::info!("unmounted {target}"),
            Err(e) => {
                log::warn!("unmounting {target}: {e}; remounting it read-only");
                if let Err(e) = mount_remount(target.as_str(), MountFlags::RDONLY, c"") {
                    log::error!("remounting {target} read-only: {e}");
                }
            }
        }
    }
}
