//! The plan: the typed, validated form of an IMGBUILD project. `anemos check` prints it,
//! `anemos pack` puts it into the payload as `plan.json`, and the init installs from it.
//! Everything the install needs to decide is here; the IMGBUILD itself only travels along for
//! its `provision()` function. Meanings are documented in `docs/IMGBUILD.5.md`.

mod human;
pub mod parse;
mod rules;
mod subvolumes;
mod types;

pub use human::render as render_human;
pub use rules::{At, Problem, ENCRYPTED_MIN};
pub use subvolumes::{Holder, Subvolume};
pub use types::*;

/// The version of the `plan.json` schema. Bump it on any change a reader must know about;
/// the init refuses a plan whose version it does not know.
/// Version 2 added layouts over several disks (`other_disks`, `raid`): an init that reads
/// only version 1 would install a plan with arrays onto one disk, so it must refuse it.
/// Version 3 added btrfs and `subvolumes`: an older init would mount the top level at `/`.
pub const PLAN_VERSION: u32 = 3;
/// The oldest version this anemos still reads (every later field has a default).
pub const PLAN_VERSION_MIN: u32 = 1;

#[cfg(test)]
pub(crate) mod tests;
