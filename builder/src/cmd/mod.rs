//! One module per subcommand.

pub mod boot;
pub mod initramfs;
