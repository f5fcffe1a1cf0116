//! Installing a distribution's packages into a target root.
//!
//! - [`fetch`]: HTTP(S) with proxies, timeouts, retries, resumption, streaming verification,
//!   a bounded download pool and progress reporting — distro-neutral.
//! - [`extract`]: safe unpacking of tar streams (and `.deb` containers) into a root that
//!   nothing can escape — distro-neutral.
//! - [`debian`]: Debian's archive, resolver and dpkg hand-off.

pub mod debian;
pub mod extract;
pub mod fetch;
