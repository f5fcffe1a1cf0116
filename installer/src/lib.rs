//! The anemos engine: everything that turns a declared system into an installed one, usable
//! from the PID-1 init (on real disks) and from the host tools (on image files).
//!
//! The `host` feature (on by default) adds what only the workstation needs: sourcing and
//! validating an IMGBUILD, revealing secrets with age, packing a payload. The init builds
//! this crate without it, so none of that is linked into PID 1.

pub mod bootloader;
pub mod clock;
pub mod crypt;
pub mod disk;
pub mod endpoint;
pub mod event;
pub mod exec;
pub mod files;
pub mod fs;
pub mod fstab;
pub mod image;
#[cfg(feature = "host")]
pub mod imgbuild;
pub mod initramfs;
pub mod install;
pub mod kmod;
pub mod lvm;
pub mod md;
pub mod mount;
pub mod net;
pub mod packages;
pub mod payload;
pub mod plan;
pub mod redact;
#[cfg(feature = "host")]
pub mod secrets;
#[allow(unsafe_code)]
pub mod sys;
pub mod sysfs;
pub mod units;
