//! One module per subcommand.

pub mod boot;
pub mod bootstrap;
pub mod build;
pub mod check;
pub mod deploy;
pub mod disks;
pub mod image;
pub mod initramfs;
pub mod kexec;
pub mod pack;
pub mod pxe;
pub mod rescue;
pub mod test;
