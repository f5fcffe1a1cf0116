//! Arch Linux: sync databases, pacman's resolver, packages streamed and verified (SHA-256
//! and OpenPGP `.sig`) into the target, a local database that the target's pacman reads as
//! its own, then `.INSTALL` scripts and libalpm hooks in the chroot.
//!
//! Same stages as [`crate::packages::debian`]:
//! - [`prepare`] reads `pacman.conf`, fetches (and where `SigLevel` asks, verifies) each
//!   repository's database, resolves the targets (packages and groups), fetches and
//!   pre-checks every package signature and probes the download URLs. It writes nothing.
//! - [`install`] streams the packages into the root, writes `/var/lib/pacman/local`, runs
//!   `post_install` of each `.INSTALL` and the `PostTransaction` hooks in the chroot (when the
//!   target has a shell), deferring the initramfs hooks.
//! - [`finish`] runs the deferred initramfs hooks (call it after the bootloader and module
//!   configuration are in place).

pub mod conf;
pub mod db;
pub mod depend;
pub mod hooks;
mod install;
pub mod localdb;
mod prepare;
pub mod resolve;
mod scripts;
mod unpack;
pub mod vercmp;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

pub use conf::{Check, PacmanConf, SigLevel};
pub use db::Package;
pub use install::{finish, install, InstallOptions, Report};
pub use prepare::prepare;

use crate::packages::fetch::FetchConfig;
use crate::packages::keyring::Keyring;

/// What to install from where.
#[derive(Debug, Clone)]
pub struct Config {
    /// The parsed `pacman.conf` (repositories, servers, `SigLevel`).
    pub conf: PacmanConf,
    /// The file itself, copied to the target's `/etc/pacman.conf` (`None`: keep the one the
    /// `pacman` package ships).
    pub conf_text: Option<String>,
    /// The OpenPGP keyring (a file, or a directory like `/usr/share/pacman/keyrings`);
    /// without one, signatures cannot be checked and a `Required` level is an error.
    pub keyring: Option<PathBuf>,
    /// A `Server` URL (with `$repo`/`$arch`) for repositories that have none, e.g. because
    /// their `Include`d mirrorlist is not on this machine: the plan's mirror.
    pub default_server: Option<String>,
    /// The architecture (`x86_64`); `Architecture = auto` means this one.
    pub arch: String,
    /// Packages and groups to install (`base`, `linux`, …).
    pub targets: Vec<String>,
    pub fetch: FetchConfig,
    /// How many package URLs [`prepare`] probes (the first ones, in install order).
    pub probe: usize,
    /// Seconds since 1970 used for key validity checks (default: the clock).
    pub now: Option<u64>,
}

impl Config {
    /// A configuration with the defaults: this machine's architecture, default fetching,
    /// probing 8 URLs.
    pub fn new(conf: PacmanConf, targets: Vec<String>) -> Config {
        Config { conf, conf_text: None, keyring: None, default_server: None, arch: std::env::consts::ARCH.to_string(), targets, fetch: FetchConfig::default(), probe: 8, now: None }
    }
}

/// A repository as [`prepare`] found it.
#[derive(Debug, Clone)]
pub struct Repo {
    pub name: String,
    /// The server that answered (`$repo`/`$arch` substituted, no trailing slash).
    pub url: String,
    pub siglevel: SigLevel,
}

/// The result of [`prepare`]: the verified, resolved download plan.
#[derive(Clone)]
pub struct Prepared {
    pub config: Config,
    pub repos: Vec<Repo>,
    /// The selected packages in install order (dependencies first).
    pub packages: Vec<Package>,
    /// The detached signature of each package (same order), where one is checked.
    pub signatures: Vec<Option<Vec<u8>>>,
    /// Packages asked for by name or group (pacman's "explicitly installed").
    pub explicit: BTreeSet<String>,
    /// Why each package is in the set (`(base) → systemd → libcap`).
    pub reasons: BTreeMap<String, String>,
    pub keyring: Option<Arc<Keyring>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("repos", &self.repos).field("packages", &self.packages.len()).finish_non_exhaustive()
    }
}

impl Prepared {
    /// The download URL of a selected package.
    pub fn url(&self, p: &Package) -> String {
        format!("{}/{}", self.repos[p.repo].url, p.filename)
    }

    /// Total download size in bytes.
    pub fn download_size(&self) -> u64 {
        self.packages.iter().map(|p| p.csize).sum()
    }
}

/// Seconds since 1970.
fn now(config: &Config) -> u64 {
    config.now.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}
