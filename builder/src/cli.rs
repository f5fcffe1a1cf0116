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
    /// Check an IMGBUILD project and print the plan it describes.
    Check(CheckArgs),
    /// Check an IMGBUILD project, reveal the secrets its templates use, and write the payload.
    Pack(PackArgs),
    /// Build the project's system once as an image (installed, configured, made generic) for
    /// image-mode installs on many hosts (`--image`, `image=`); natively, as root.
    Build(BuildArgs),
    /// Build the project's image (raw through a QEMU guest; dir and tar natively, as root).
    Image(ImageArgs),
    /// Build the project's raw image, boot it in QEMU and wait until the new system is up.
    Test(TestArgs),
    /// On the server: boot the installer with this payload via kexec (destroys the disk).
    Kexec(KexecArgs),
    /// Check and pack the project, then write kernel, initramfs and an iPXE script for a network boot.
    Pxe(PxeArgs),
    /// Install a Debian system into a directory (prepare + install, as the installer does).
    Bootstrap(BootstrapArgs),
    /// Reinstall running servers in place over ssh: copy, kexec, follow, wait for ssh.
    Deploy(DeployArgs),
    /// Talk to a failed installer: its last failure and log; retry, reboot or power off.
    Rescue(RescueArgs),
}

#[derive(Args)]
pub struct DisksArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What every command that reads a project shares: the directory, then its options.
#[derive(Args, Clone, Debug)]
pub struct ProjectArgs {
    /// The project directory (the one holding the IMGBUILD).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub options: ProjectOptions,
}

/// How to read a project: overrides of the IMGBUILD and where its secrets come from.
#[derive(Args, Clone, Debug, Default)]
pub struct ProjectOptions {
    /// Replace the IMGBUILD's format, e.g. "raw 4G gpt" or "dir" (makeimg's override).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// An input directory, relative to the project; repeatable, later ones win [default: files].
    #[arg(long = "input", value_name = "DIR")]
    pub inputs: Vec<String>,
    /// The age identity file for secrets/NAME.age [default: $ANEMOS_AGE_IDENTITY, else ~/.config/anemos/age.key].
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Use this package mirror instead of the IMGBUILD's or this host's (e.g. a local caching
    /// proxy; loopback addresses are rewritten for a build VM).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// With --mirror: the security archive's mirror.
    #[arg(long, value_name = "URL", requires = "mirror")]
    pub security_mirror: Option<String>,
    /// Install from this image (`anemos build`'s output: a local file, which the commands
    /// that install serve to their installers, or an http(s) URL each installer fetches)
    /// instead of the packages; overrides image=.
    #[arg(long, value_name = "FILE|URL")]
    pub image: Option<String>,
    /// The image's SHA-256 (required with a URL; checked for a file).
    #[arg(long, value_name = "HEX", requires = "image")]
    pub image_sha256: Option<String>,
    /// Set by `anemos test`: a disk image to boot, whatever the format says.
    #[arg(skip)]
    pub for_boot: Option<installer::imgbuild::validate::ForBoot>,
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Print the plan and all diagnostics as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PackArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Where to write the payload (written mode 0600: it holds revealed secrets).
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// The image file [default: IMGNAME.image.tar.zst]; its manifest goes beside it (FILE.json).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// zstd level (1-19): higher is smaller and slower to build, as fast to install.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// zstd level 19: the smallest, for an initramfs kept or served (PXE)
    Zstd,
    /// zstd level 3: about a fifth bigger and ~90 times faster to make (31 s → 0.35 s for
    /// Debian's default module set here), for an initramfs made to be used once
    ZstdFast,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BootstrapStrategy {
    /// Unpack everything in-process, register it in the dpkg database, `dpkg --configure -a`.
    InProcess,
    /// Unpack the essential set in-process, then `dpkg --install` all debs (mmdebstrap's way).
    DpkgInstall,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BootstrapTarget {
    Debian,
    Arch,
    Alpine,
}

#[derive(Args)]
pub struct BootstrapArgs {
    /// The target directory (created if missing).
    pub dir: PathBuf,
    /// The distribution to install.
    #[arg(long, value_enum, default_value = "debian")]
    pub target: BootstrapTarget,
    /// Debian: the suite (codename) to install (required for debian).
    #[arg(long)]
    pub suite: Option<String>,
    /// Debian: a repository `URL [SUITE [COMPONENT…]]` (default suite: --suite, component:
    /// main) [default: the host's apt sources for SUITE, SUITE-updates, SUITE-security].
    /// Arch: a `Server` URL (with $repo and $arch) for repositories without one. Alpine: a
    /// repository URL (…/v3.20/main), instead of --repositories. Repeatable.
    #[arg(long = "mirror", value_name = "SPEC")]
    pub mirrors: Vec<String>,
    /// The OpenPGP keyring that signs the mirrors (Debian: a file; Arch: a file or a
    /// directory like /usr/share/pacman/keyrings [default: that directory if it exists]).
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Arch: the pacman.conf naming the repositories [default: /etc/pacman.conf].
    #[arg(long, value_name = "FILE")]
    pub pacman_conf: Option<PathBuf>,
    /// Alpine: the repositories file [default: /etc/apk/repositories, unless --mirror].
    #[arg(long, value_name = "FILE")]
    pub repositories: Option<PathBuf>,
    /// Alpine: the directory of trusted RSA keys [default: /etc/apk/keys].
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Extra packages, comma-separated; repeatable. Arch: the targets [default: base];
    /// Alpine: the world [default: alpine-base].
    #[arg(long, value_name = "PKG,…")]
    pub include: Vec<String>,
    /// `minbase` (essential + required + apt) or `essential`.
    #[arg(long, default_value = "minbase", value_parser = ["minbase", "essential"])]
    pub variant: String,
    /// The distribution's architecture name [default: this program's].
    #[arg(long)]
    pub arch: Option<String>,
    /// How the work is split with the target's dpkg.
    #[arg(long, value_enum, default_value = "in-process")]
    pub strategy: BootstrapStrategy,
    /// Parallel downloads.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// HTTP proxy URL ("" for none) [default: from the environment].
    #[arg(long)]
    pub proxy: Option<String>,
    /// An extra trusted CA certificate (PEM) for HTTPS mirrors; repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Seconds without data before a transfer counts as stalled and is resumed.
    #[arg(long, default_value_t = 30)]
    pub stall_timeout: u64,
    /// Print the resolved set (name, version, why).
    #[arg(long)]
    pub print_set: bool,
    /// Stop after resolving (nothing is written).
    #[arg(long)]
    pub resolve_only: bool,
    /// Leave update-initramfs diverted and build no initramfs.
    #[arg(long)]
    pub no_initramfs: bool,
}

#[derive(Args, Clone)]
pub struct ImageArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Directory for the output (IMGNAME.img, IMGNAME.tar.*, IMGNAME/).
    #[arg(short, long, default_value = ".")]
    pub output: PathBuf,
    /// Memory of the build VM in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Keep the build VM's console log here.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Attach another disk image to the build VM (e.g. a disk the plan preserves), with the
    /// serial number its selector names; repeatable.
    #[arg(long, value_name = "FILE:SERIAL")]
    pub attach: Vec<String>,
}

#[derive(Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    /// The disk image's size [default: the IMGBUILD's raw size, else 8G]; the IMGBUILD's
    /// partition table and file system are kept.
    #[arg(long)]
    pub size: Option<String>,
    /// Wait for this text on the serial console [default: test_marker=, else "login:"].
    #[arg(long)]
    pub marker: Option<String>,
    /// Seconds to wait for the marker.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Boot through UEFI even if the boot loader would not need it.
    #[arg(long, conflicts_with = "bios")]
    pub uefi: bool,
    /// Boot through BIOS.
    #[arg(long)]
    pub bios: bool,
    /// Show the new system's console here while it boots, then hand it to this terminal at
    /// the marker (a login prompt): type into the guest; Ctrl-a x switches the VM off.
    #[arg(long)]
    pub console: bool,
    /// Forward a TCP port of 127.0.0.1 to the booted guest (e.g. 2222:22 for ssh); repeatable.
    #[arg(long, value_name = "HOSTPORT:GUESTPORT", value_parser = parse_forward)]
    pub forward: Vec<(u16, u16)>,
}

fn parse_forward(s: &str) -> Result<(u16, u16), String> {
    let (host, guest) = s.split_once(':').ok_or_else(|| format!("--forward {s}: expected HOSTPORT:GUESTPORT, e.g. 2222:22"))?;
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("--forward {s}: {p:?} is not a port number (1-65535)"));
    Ok((port(host)?, port(guest)?))
}

#[derive(Args)]
pub struct PxeArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// The directory to write vmlinuz, initramfs.img, boot.ipxe and payload.token into (created if missing).
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// The kernel the machines boot [default: /boot/vmlinuz-$(uname -r)].
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// The release of that kernel, whose modules the initramfs carries [default: read from the kernel image, else the name of --modules-dir, else the running kernel's].
    #[arg(long, value_name = "RELEASE")]
    pub kernel_release: Option<String>,
    /// The module tree for that kernel [default: /lib/modules/RELEASE].
    #[arg(long, value_name = "DIR")]
    pub modules_dir: Option<PathBuf>,
    /// Also carry this module (or alias) and its dependencies, e.g. a network driver the default set lacks; repeatable.
    #[arg(long = "module", value_name = "NAME")]
    pub modules: Vec<String>,
    /// A kernel console (`console=` value); repeatable, the last one is where the rescue console runs [default: tty0 and ttyS0,115200].
    #[arg(long = "console", value_name = "DEV")]
    pub consoles: Vec<String>,
    /// Extra kernel command-line options for the installer (e.g. "anemos.on_failure=reboot").
    #[arg(long, default_value = "")]
    pub append: String,
    /// The deploy token for the installer's event endpoint [default: a new random one].
    #[arg(long)]
    pub token: Option<String>,
}

#[derive(Args)]
pub struct KexecArgs {
    /// The payload from `anemos pack` (or `anemos deploy`).
    #[arg(required_unless_present = "exec_loaded")]
    pub payload: Option<PathBuf>,
    /// Boot the installer an earlier `--load-only` left loaded (after a clean shutdown).
    #[arg(long, conflicts_with_all = ["dry_run", "load_only"])]
    pub exec_loaded: bool,
    /// The kernel to boot [default: /boot/vmlinuz-$(uname -r)].
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// The module tree for that kernel [default: /lib/modules/RELEASE].
    #[arg(long)]
    pub modules_dir: Option<PathBuf>,
    /// Also carry this module; repeatable.
    #[arg(long = "module", value_name = "NAME")]
    pub modules: Vec<String>,
    /// Extra kernel command-line options for the installer.
    #[arg(long, default_value = "")]
    pub append: String,
    /// Use DHCP in the installer instead of this host's captured network configuration.
    #[arg(long)]
    pub dhcp: bool,
    /// Load the kernel and stop (then unload it): nothing is changed.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for the host name to be typed back.
    #[arg(long)]
    pub yes: bool,
    /// Load the installer and stop (keep it loaded): `--exec-loaded` boots it later.
    #[arg(long, conflicts_with = "dry_run")]
    pub load_only: bool,
}

#[derive(Args)]
pub struct DeployArgs {
    /// The servers, as ssh knows them (`user@host`, or an alias from your ssh config).
    #[arg(required = true, value_name = "HOST")]
    pub hosts: Vec<String>,
    /// The project directory (the one holding the IMGBUILD).
    #[arg(short = 'C', long = "project", default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub options: ProjectOptions,
    /// An ssh config file for every ssh command (ssh -F).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// An ssh option for every ssh command (ssh -o KEY=VALUE); repeatable.
    #[arg(short = 'o', long = "ssh-option", value_name = "KEY=VALUE")]
    pub ssh_options: Vec<String>,
    /// Run anemos on the servers through `sudo -n` (for a non-root ssh user).
    #[arg(long)]
    pub sudo: bool,
    /// The installers use DHCP instead of each server's captured network configuration.
    #[arg(long)]
    pub dhcp: bool,
    /// Extra kernel command-line options for the installers.
    #[arg(long, default_value = "")]
    pub append: String,
    /// Where a host's event endpoint answers, if not at its ssh host name and the plan's
    /// status_port (port forwards, NAT): `HOST=ADDR:PORT`, or `ADDR:PORT` for a single host;
    /// repeatable.
    #[arg(long, value_name = "[HOST=]ADDR:PORT")]
    pub events: Vec<String>,
    /// The static anemos binary to copy to the servers [default: this program].
    #[arg(long, value_name = "FILE")]
    pub anemos: Option<PathBuf>,
    /// Seconds to wait for an install to finish after kexec.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Seconds to wait for the new system to answer on ssh.
    #[arg(long, default_value_t = 900)]
    pub ssh_timeout: u64,
    /// Do not ask for the host names to be typed back.
    #[arg(long)]
    pub yes: bool,
}

impl DeployArgs {
    /// The project arguments (deploy names its project with -C, the hosts being positional).
    pub fn project(&self) -> ProjectArgs {
        ProjectArgs { dir: self.dir.clone(), options: self.options.clone() }
    }
}

#[derive(Args)]
pub struct RescueArgs {
    /// The host a deploy left in its rescue console.
    pub host: String,
    /// Print the installer's whole log.
    #[arg(long)]
    pub log: bool,
    /// Run the install again from the start.
    #[arg(long, conflicts_with_all = ["reboot", "poweroff"])]
    pub retry: bool,
    /// Reboot the machine (into its old system if the disk was not touched).
    #[arg(long, conflicts_with = "poweroff")]
    pub reboot: bool,
    /// Power the machine off.
    #[arg(long)]
    pub poweroff: bool,
    /// The deploy token [default: the one the last deploy of HOST recorded].
    #[arg(long)]
    pub token: Option<String>,
    /// The event endpoint ADDR:PORT [default: the one the last deploy of HOST recorded].
    #[arg(long, value_name = "ADDR:PORT")]
    pub events: Option<String>,
}
