//! Initramfs images: a reproducible newc archive of the init, the skeleton, kernel modules
//! and (appended as its own archive) a payload.

mod archive;
mod image;

pub use archive::{Archive, Node};
pub use image::{base_archive, BaseSpec, ModulesSpec};
