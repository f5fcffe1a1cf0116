//! The payload: what `anemos pack` writes and the init installs from. It is a zstd-compressed
//! newc cpio archive that the initramfs builder appends to the base image, so the kernel
//! unpacks it into the initramfs's tmpfs at boot. Everything is under `/anemos/payload/`:
//!
//! ```text
//! plan.json        the typed plan (versioned)
//! IMGBUILD         the file itself, for provision()
//! inputs/N/…       input tree N of the plan (files, symlinks, patches, templates)
//! secrets/NAME     revealed secrets the templates use, mode 0600 (directory 0700)
//! project/…        pacman.conf (arch), repositories and keys/ (alpine)
//! keyrings/…       public keyrings the packages step verifies with (Debian: the packing
//!                  host's debian-archive-keyring)
//! token            the per-deploy token of the event endpoint (deploys and image builds)
//! build-time       the newest input's modification time, seconds since the epoch
//! packed-at        the workstation's clock when it packed (SOURCE_DATE_EPOCH if set)
//! ```
//! The later of `build-time` and `packed-at` is the installer clock's floor.

#[cfg(feature = "host")]
mod pack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::files::InputDir;
use crate::plan::{Plan, PLAN_VERSION};

#[cfg(feature = "host")]
pub use pack::{archive, build_time, new_token, pack, packed_at, Extras};

/// Where the payload is, relative to the initramfs root.
pub const DIR: &str = "anemos/payload";
pub const PLAN_FILE: &str = "plan.json";
pub const IMGBUILD_FILE: &str = "IMGBUILD";
pub const INPUTS_DIR: &str = "inputs";
pub const SECRETS_DIR: &str = "secrets";
pub const PROJECT_DIR: &str = "project";
/// The public keyrings the packages step verifies signatures with.
pub const KEYRINGS_DIR: &str = "keyrings";
/// The per-deploy token of the init's event endpoint (mode 0600).
pub const TOKEN_FILE: &str = "token";
/// When the payload's newest input was modified (decimal seconds since the epoch and a newline).
pub const BUILD_TIME_FILE: &str = "build-time";
/// The packing workstation's clock (decimal seconds since the epoch and a newline).
pub const PACKED_AT_FILE: &str = "packed-at";

/// A payload unpacked under some root (`/` in the initramfs).
#[derive(Debug, Clone)]
pub struct Payload {
    pub dir: PathBuf,
    pub plan: Plan,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: Option<u32>,
}

/// Parses and checks a `plan.json`; an unknown version is refused with a clear message.
pub fn parse_plan(text: &str) -> Result<Plan> {
    let v: VersionOnly = serde_json::from_slice(text.as_bytes()).context("plan.json is not a JSON object")?;
    match v.version {
        Some(n) if (crate::plan::PLAN_VERSION_MIN..=PLAN_VERSION).contains(&n) => {}
        Some(n) => bail!("plan.json has version {n}, but this anemos reads version {PLAN_VERSION}; pack the payload with the same anemos version as the initramfs"),
        None => bail!("plan.json has no version field; it was not written by anemos pack"),
    }
    serde_json::from_slice(text.as_bytes()).context("plan.json does not match the plan format of this anemos")
}

impl Payload {
    /// Loads `ROOT/anemos/payload/plan.json`; `Ok(None)` when there is no payload at all.
    pub fn load(root: &Path) -> Result<Option<Payload>> {
        let dir = root.join(DIR);
        let file = dir.join(PLAN_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        let plan = parse_plan(&text).with_context(|| format!("loading {}", file.display()))?;
        Ok(Some(Payload { dir, plan }))
    }

    /// The input trees, in order, labelled as in the project (`files`).
    pub fn inputs(&self) -> Vec<InputDir> {
        self.plan.inputs.iter().map(|i| InputDir { path: self.dir.join(&i.payload_dir), label: i.source.clone() }).collect()
    }

    /// The revealed secrets the plan lists, read from `secrets/`.
    pub fn secrets(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for s in &self.plan.secrets {
            let p = self.dir.join(SECRETS_DIR).join(&s.name);
            let v = std::fs::read(&p).with_context(|| format!("reading secret {:?} from the payload", s.name))?;
            out.insert(s.name.clone(), v);
        }
        Ok(out)
    }

    /// When the payload's newest input was modified; `Ok(None)` for a payload that does not say.
    pub fn build_time(&self) -> Result<Option<std::time::SystemTime>> {
        self.time_file(BUILD_TIME_FILE)
    }

    /// The installer clock's floor: the later of the build time and the packing
    /// workstation's clock. `Ok(None)` when the payload records neither.
    pub fn clock_floor(&self) -> Result<Option<std::time::SystemTime>> {
        Ok(self.build_time()?.max(self.time_file(PACKED_AT_FILE)?))
    }

    fn time_file(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        let file = self.dir.join(name);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        let secs: u64 = text.trim().parse().with_context(|| format!("{} holds {:?}, not a number of seconds; pack the payload again", file.display(), text.trim()))?;
        if secs > crate::clock::MAX_UNIX {
            bail!("{} says the payload was built after the year 9999 ({secs}); pack it again", file.display());
        }
        Ok(Some(crate::clock::from_unix(secs)))
    }

    pub fn imgbuild(&self) -> PathBuf {
        self.dir.join(IMGBUILD_FILE)
    }

    /// A project file (`pacman.conf`, `keys/…`) carried in the payload.
    pub fn project_file(&self, rel: &str) -> PathBuf {
        self.dir.join(PROJECT_DIR).join(rel)
    }
}

/// A few lines on what the plan will do, for the init's log.
pub fn summary(plan: &Plan) -> Vec<String> {
    crate::plan::render_human(plan).lines().map(str::to_string).collect()
}
