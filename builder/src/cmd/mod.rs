//! One module per subcommand.

pub mod boot;
pub mod bootstrap;
pub mod initramfs;
