//! Debian (and derivatives using the same archive format): verified indexes, dependency
//! resolution, in-process unpacking into the dpkg database, configuration by the target's
//! own dpkg in a chroot, and one initramfs build at the very end.
//!
//! Two stages, so that everything that can fail does so before a disk is wiped:
//! - [`prepare`] fetches and verifies `InRelease` and the `Packages` indexes, resolves the
//!   package set and probes the download URLs. It writes nothing to any disk.
//! - [`install`] downloads, verifies and unpacks every package into the target root while it
//!   streams, registers them as dpkg would after unpacking, runs the pre-unpack maintainer
//!   scripts and lets `dpkg --configure -a` finish, with `update-initramfs` diverted.
//! - [`finish`] restores `update-initramfs` and builds the initramfs once (call it after the
//!   bootloader and module configuration are in place).

pub mod chroot;
pub mod control;
pub mod dpkgdb;
pub mod index;
mod install;
mod scripts;
mod unpack;
/// The OpenPGP keyring code, shared with Arch (see [`crate::packages::keyring`]).
pub use crate::packages::keyring;
mod prepare;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod sources;
pub mod version;

use std::path::PathBuf;

pub use install::{finish, install, InstallOptions, Report, Strategy};
pub use prepare::prepare;
pub use sources::Source;

use crate::packages::fetch::FetchConfig;

/// Which base set to install besides the requested packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `Essential: yes` and `Priority: required` packages plus apt (debootstrap's and
    /// mmdebstrap's `minbase`).
    Minbase,
    /// `Essential: yes` packages only, plus what was requested (no apt).
    Essential,
}

/// What to install from where.
#[derive(Debug, Clone)]
pub struct Config {
    /// Repositories, in order (the first one names the suite).
    pub sources: Vec<Source>,
    /// The OpenPGP keyring that signs them (binary or armored).
    pub keyring: PathBuf,
    /// Debian architecture name (`amd64`).
    pub arch: String,
    pub variant: Variant,
    /// Extra packages (names or virtual names).
    pub include: Vec<String>,
    pub fetch: FetchConfig,
    /// How many package URLs [`prepare`] probes (the first ones, in install order).
    pub probe: usize,
    /// Seconds since 1970 used for signature and Valid-Until checks (default: the clock).
    pub now: Option<u64>,
}

impl Config {
    /// A configuration for `sources` with the defaults: the native architecture, minbase,
    /// default fetching, probing 8 URLs.
    pub fn new(sources: Vec<Source>, keyring: PathBuf) -> Config {
        Config { sources, keyring, arch: native_arch().to_string(), variant: Variant::Minbase, include: Vec::new(), fetch: FetchConfig::default(), probe: 8, now: None }
    }
}

/// The Debian name of the architecture this program was built for.
pub fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The result of [`prepare`]: the verified, resolved download plan.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub config: Config,
    /// The selected packages, sorted by name.
    pub packages: Vec<index::Package>,
    /// Why each package is in the set (`apt → libapt-pkg6.0 → …`).
    pub reasons: std::collections::BTreeMap<String, String>,
    /// The keyring bytes that verified the indexes (copied into the target for apt).
    pub keyring_bytes: Vec<u8>,
}

impl Prepared {
    /// The download URL of a selected package.
    pub fn url(&self, p: &index::Package) -> String {
        format!("{}/{}", self.config.sources[p.source].uri, p.filename)
    }

    /// Total download size in bytes.
    pub fn download_size(&self) -> u64 {
        self.packages.iter().map(|p| p.size).sum()
    }
}
