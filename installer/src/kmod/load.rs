//! Loading modules into the running kernel: by name (with dependencies) and by coldplug,
//! i.e. for every device that sysfs lists with a `modalias` nobody has claimed yet.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rustix::io::Errno;

use super::ModuleIndex;

/// What a loader did, for the log and for the rescue console.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub loaded: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// Loads modules of one tree, remembering what it already did.
pub struct Loader<'a> {
    index: &'a ModuleIndex,
    done: BTreeSet<String>,
    pub report: LoadReport,
}

impl<'a> Loader<'a> {
    pub fn new(index: &'a ModuleIndex) -> Self {
        Loader { index, done: BTreeSet::new(), report: LoadReport::default() }
    }

    /// Loads `names` (modules or aliases) and what they need. Failures of single modules
    /// are recorded in the report; the result is an error only for names that do not exist.
    pub fn load(&mut self, names: &[String]) -> Result<usize> {
        let order = self.index.load_order(names)?;
        let mut count = 0;
        for module in order {
            if self.load_one(&module) {
                count += 1;
            }
        }
        Ok(count)
    }

    /// One round of coldplug: every distinct modalias under `sysfs/devices` is matched
    /// against the index and the matches are loaded. Returns how many modules were newly
    /// loaded; call again until it returns 0, because new buses bring new devices.
    pub fn coldplug_round(&mut self, sysfs: &Path) -> Result<usize> {
        let aliases = super::device_modaliases(sysfs)?;
        let mut wanted = BTreeSet::new();
        for alias in &aliases {
            wanted.extend(self.index.match_modalias(alias));
        }
        let wanted: Vec<String> = wanted.into_iter().filter(|m| !self.done.contains(m)).collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        log::debug!("coldplug: {} modaliases → {}", aliases.len(), wanted.join(" "));
        self.load(&wanted)
    }

    /// Runs coldplug rounds until nothing new loads (at most `max_rounds`).
    pub fn coldplug(&mut self, sysfs: &Path, max_rounds: usize) -> Result<usize> {
        let mut total = 0;
        for _ in 0..max_rounds {
            let n = self.coldplug_round(sysfs)?;
            total += n;
            if n == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// Loads one module file (no dependencies). Returns whether it was newly loaded.
    fn load_one(&mut self, module: &str) -> bool {
        if !self.done.insert(module.to_string()) {
            return false;
        }
        let Some(entry) = self.index.module(module) else { return false };
        let path = self.index.root().join(&entry.path);
        match insert(&path) {
            Ok(true) => {
                log::debug!("loaded module {module}");
                self.report.loaded.push(module.to_string());
                true
            }
            Ok(false) => false,
            Err(e) => {
                log::warn!("module {module} ({}) failed to load: {e:#}", path.display());
                self.report.failed.push((module.to_string(), format!("{e:#}")));
                false
            }
        }
    }
}

/// Inserts one module file into the kernel, decompressing `.xz`, `.zst` and `.gz` in
/// memory. Returns `false` if the kernel already had it.
pub fn insert(path: &Path) -> Result<bool> {
    let name = path.to_string_lossy();
    let result = if name.ends_with(".ko") {
        let file = File::open(path).with_context(|| format!("opening {name}"))?;
        rustix::system::finit_module(&file, c"", 0)
    } else {
        let image = decompress(path)?;
        rustix::system::init_module(&image, c"")
    };
    match result {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => bail!("the kernel refused {name}: {e}"),
    }
}

/// Reads a module file and undoes its compression, chosen by file name (`.ko.xz`,
/// `.ko.zst`, `.ko.gz` or `.ko`) with the package extractor's decoders and memory bounds.
pub fn decompress(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let file = File::open(path).with_context(|| format!("opening {name}"))?;
    let mut out = Vec::new();
    crate::packages::extract::decompress(&name, file)?.read_to_end(&mut out).with_context(|| format!("decompressing {name}"))?;
    Ok(out)
}
