//! Installing a distribution's packages into a target root.
//!
//! - [`fetch`]: HTTP(S) with proxies, timeouts, retries, resumption, streaming verification,
//!   a bounded download pool and progress reporting — distro-neutral.
//! - [`extract`]: safe unpacking of tar streams (and `.deb` containers) into a root that
//!   nothing can escape — distro-neutral.
//! - [`keyring`]: OpenPGP keyrings and signatures with the key-validity checks rpgp leaves
//!   to us (Debian's `InRelease`, Arch's `.sig`).
//! - [`chroot`]: running the target's own programs inside it (mounts, environment).
//! - [`debian`]: Debian's archive, resolver and dpkg hand-off.
//! - [`arch`]: Arch Linux's sync databases, resolver, local database, scripts and hooks.
//! - [`alpine`]: Alpine's signed indexes and packages, resolver and installed database.
//! - [`profile`]: what an install adds and uses per distribution (kernel, boot loader
//!   packages, project files, keyrings, rolling suites).

pub mod alpine;
pub mod arch;
pub mod chroot;
pub mod debian;
pub mod extract;
pub mod fetch;
pub mod keyring;
pub mod profile;
