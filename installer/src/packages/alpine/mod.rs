//! Alpine Linux: signed `APKINDEX.tar.gz` indexes, apk's resolver (names, provisions such as
//! `so:` and `cmd:` names, versions, conflicts, install-if), `.apk` packages streamed and
//! verified (index checksum of the control segment, RSA signature, `datahash` of the data)
//! into the target, `/lib/apk/db/installed` as apk writes it, and the packages' scripts and
//! triggers in the chroot.
//!
//! Same stages as [`crate::packages::debian`]:
//! - [`prepare`] reads the repositories and keys, fetches and verifies every index,
//!   resolves the world and probes the download URLs. It writes nothing.
//! - [`install`] streams the packages into the root, writes apk's database and
//!   configuration, runs the `pre-install`/`post-install` scripts and the triggers (when the
//!   target has a shell), deferring the initramfs trigger (mkinitfs).
//! - [`finish`] runs the deferred triggers (after the bootloader and module configuration).

pub mod apk;
pub mod index;
mod install;
pub mod installed;
mod prepare;
pub mod resolve;
pub mod sign;
pub mod version;

use std::collections::BTreeMap;

pub use index::Package;
pub use install::{finish, install, InstallOptions, Report};
pub use prepare::prepare;
pub use sign::Keys;

use crate::packages::fetch::FetchConfig;

/// One line of `/etc/apk/repositories`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `…/alpine/v3.20/main`, no trailing slash.
    pub url: String,
    /// `@tag URL`: only packages asked for as `name@tag` come from it.
    pub tag: Option<String>,
}

/// Parses an apk `repositories` file (repositories(5)): one URL per line, `#` comments,
/// `@tag URL` for tagged repositories; local paths are not supported here.
pub fn parse_repositories(text: &str) -> Vec<Repository> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (tag, url) = match l.strip_prefix('@') {
                Some(rest) => {
                    let (t, u) = rest.split_once(char::is_whitespace)?;
                    (Some(t.to_string()), u.trim())
                }
                None => (None, l),
            };
            Some(Repository { url: url.trim_end_matches('/').to_string(), tag })
        })
        .collect()
}

/// What to install from where.
#[derive(Debug, Clone)]
pub struct Config {
    pub repositories: Vec<Repository>,
    /// The trusted keys (`/etc/apk/keys/`).
    pub keys: Keys,
    /// apk's architecture name (`x86_64`, `aarch64`).
    pub arch: String,
    /// The world: package names or dependencies (`alpine-base`, `openssh>=9`, `pkg@tag`).
    pub world: Vec<String>,
    pub fetch: FetchConfig,
    /// How many package URLs [`prepare`] probes.
    pub probe: usize,
}

impl Config {
    pub fn new(repositories: Vec<Repository>, keys: Keys, world: Vec<String>) -> Config {
        Config { repositories, keys, arch: std::env::consts::ARCH.to_string(), world, fetch: FetchConfig::default(), probe: 8 }
    }
}

/// The result of [`prepare`].
#[derive(Debug, Clone)]
pub struct Prepared {
    pub config: Config,
    /// The selected packages, dependencies first.
    pub packages: Vec<Package>,
    /// Why each package is in the set.
    pub reasons: BTreeMap<String, String>,
}

impl Prepared {
    pub fn url(&self, p: &Package) -> String {
        format!("{}/{}/{}", self.config.repositories[p.repo].url, self.config.arch, p.file_name())
    }

    pub fn download_size(&self) -> u64 {
        self.packages.iter().map(|p| p.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_file() {
        let r = parse_repositories("# mirrors\nhttps://m.test/alpine/v3.20/main/\n\n@testing https://m.test/alpine/edge/testing\n");
        assert_eq!(r[0], Repository { url: "https://m.test/alpine/v3.20/main".into(), tag: None });
        assert_eq!(r[1].tag.as_deref(), Some("testing"));
    }
}
