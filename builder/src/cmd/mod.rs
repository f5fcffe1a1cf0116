//! One module per subcommand.

pub mod boot;
pub mod disks;
pub mod initramfs;
