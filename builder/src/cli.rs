//! The command line of `anemos`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "anemos", version, about = "Reinstall a Linux machine from a declarative description, in one step, from the inside.")]
pub struct Cli {
    /// Log more detail.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Write an initramfs: the static init, the skeleton, kernel modules and an optional payload.
    Initramfs(InitramfsArgs),
    /// Boot a kernel and initramfs in QEMU with the console on this terminal.
    Boot(BootArgs),
    /// List this host's disks: identity, size, partitions, signatures, mounts.
    Disks(DisksArgs),
}

#[derive(Args)]
pub struct DisksArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

#[derive(Args)]
pub struct InitramfsArgs {
    /// Where to write the initramfs.
    #[arg(short, long)]
    pub output: PathBuf,
    /// How to compress the base archive (the payload is appended as it is).
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: Compression,
    /// Kernel release whose modules to carry [default: the running kernel's, or the name of --modules-dir].
    #[arg(long)]
    pub kernel_release: Option<String>,
    /// Module tree to take modules from [default: /lib/modules/RELEASE].
    #[arg(long)]
    pub modules_dir: Option<PathBuf>,
    /// Also carry this module (or alias) and its dependencies; repeatable.
    #[arg(long = "module", value_name = "NAME")]
    pub modules: Vec<String>,
    /// Leave out the default set of storage, network and filesystem modules.
    #[arg(long)]
    pub no_default_modules: bool,
    /// Add the modules the running host's devices and filesystems use [default: on when building for the running kernel].
    #[arg(long, overrides_with = "no_autodetect")]
    pub autodetect: bool,
    /// Do not add the running host's modules.
    #[arg(long)]
    pub no_autodetect: bool,
    /// Carry no kernel modules at all.
    #[arg(long, conflicts_with_all = ["modules", "modules_dir", "autodetect"])]
    pub no_modules: bool,
    /// A payload archive (from `anemos pack`) to append as its own cpio member.
    #[arg(long)]
    pub payload: Option<PathBuf>,
}

#[derive(Args)]
pub struct BootArgs {
    /// The kernel image.
    #[arg(long)]
    pub kernel: PathBuf,
    /// The initramfs.
    #[arg(long)]
    pub initrd: PathBuf,
    /// Extra kernel command-line options (the serial console is always set).
    #[arg(long, default_value = "")]
    pub append: String,
    /// Attach a disk image (raw); repeatable.
    #[arg(long = "disk", value_name = "FILE")]
    pub disks: Vec<PathBuf>,
    /// Boot through UEFI (OVMF) instead of BIOS (SeaBIOS).
    #[arg(long)]
    pub uefi: bool,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Give the guest user-mode networking (the host is 10.0.2.2).
    #[arg(long)]
    pub net: bool,
}
