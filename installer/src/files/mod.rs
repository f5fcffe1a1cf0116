//! The files, patches and templates steps: a project's input trees applied into a target
//! root. These are engine steps: the init runs them on the new system's mounted root, the
//! host runs them for `dir`/`tar` builds and tests. All writes go through [`root::RootDir`],
//! which keeps every path inside the target root.

mod apply;
pub mod patch;
pub mod root;
pub mod template;
pub mod tree;

pub use apply::{apply_all, apply_files, apply_patches, render_templates, Applied, Templates};
pub use tree::{check_links, scan, Entry, EntryKind, InputDir, Tree, PATCH_SUFFIX, TEMPLATE_SUFFIX};
