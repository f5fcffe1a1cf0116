//! The QEMU boot harness: builds a QEMU command line from a typed VM profile, captures the
//! serial console into a log, waits for markers with timeouts, types into the serial line,
//! and always cleans up the QEMU process.
//!
//! Acceleration: TCG unless a probe boot proves KVM works (on some machines `/dev/kvm`
//! exists but guests hang). `ANEMOS_ACCEL=tcg|kvm` overrides the probe.

mod accel;
mod attach;
mod config;
mod kernel;
mod stuck;
mod vm;

pub use accel::{choose_accel, Accel};
pub use attach::{attach, Escape, Key, HELP as ATTACH_HELP};
pub use config::{Config, Disk, Firmware, Net, Ovmf};
pub use kernel::{cache_dir, Kernel};
pub use stuck::stuck;
pub use vm::{Console, Vm};
