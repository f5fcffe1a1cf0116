//! One module per subcommand.

pub mod boot;
pub mod bootstrap;
pub mod check;
pub mod disks;
pub mod initramfs;
pub mod pack;
