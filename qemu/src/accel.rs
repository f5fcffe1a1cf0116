//! Choosing the accelerator: KVM only when a probe boot succeeds with it.

use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::{Config, Console, Vm};

/// QEMU's accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

/// How long a KVM probe boot may take before KVM is declared unusable. A working KVM
/// guest reaches the init's ready event in a second or two.
const PROBE_TIMEOUT: Duration = Duration::from_secs(25);

fn cache_file() -> PathBuf {
    crate::cache_dir().join("accel")
}

/// Picks the accelerator: `ANEMOS_ACCEL` if set; TCG if /dev/kvm cannot be opened; else the
/// cached result of an earlier probe; else a probe boot of `kernel` + `initrd` (which must be
/// an anemos initramfs) under KVM, cached for next time.
pub fn choose_accel(kernel: &Path, initrd: &Path) -> Accel {
    match std::env::var("ANEMOS_ACCEL").as_deref() {
        Ok("tcg") => return Accel::Tcg,
        Ok("kvm") => return Accel::Kvm,
        _ => {}
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return Accel::Tcg;
    }
    let cache = cache_file();
    match std::fs::read_to_string(&cache).as_deref().map(str::trim) {
        Ok("kvm") => return Accel::Kvm,
        Ok("tcg") => return Accel::Tcg,
        _ => {}
    }
    let accel = if probe_kvm(kernel, initrd) { Accel::Kvm } else { Accel::Tcg };
    log::info!("KVM probe boot: {}", if accel == Accel::Kvm { "works, using KVM" } else { "failed, using TCG" });
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&cache, if accel == Accel::Kvm { "kvm\n" } else { "tcg\n" });
    accel
}

fn probe_kvm(kernel: &Path, initrd: &Path) -> bool {
    let mut config = Config::direct(kernel, initrd);
    config.accel = Accel::Kvm;
    config.memory_mib = 512;
    config.append = "anemos.mode=probe anemos.done=poweroff".into();
    let log = std::env::temp_dir().join(format!("anemos-kvm-probe-{}.log", std::process::id()));
    let Ok(mut vm) = Vm::start(&config, Console::Capture(log.clone())) else { return false };
    let ok = vm.expect_event(PROBE_TIMEOUT, |e| matches!(e, installer::event::Event::Ready { .. })).is_ok();
    drop(vm);
    let _ = std::fs::remove_file(log);
    ok
}
