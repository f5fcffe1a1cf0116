//! The anemos engine: everything that turns a declared system into an installed one, usable
//! from the PID-1 init (on real disks) and from the host tools (on image files).

pub mod disk;
pub mod event;
pub mod exec;
pub mod initramfs;
pub mod kmod;
pub mod net;
pub mod packages;
#[allow(unsafe_code)]
pub mod sys;
pub mod sysfs;
