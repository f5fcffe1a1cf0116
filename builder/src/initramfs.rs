//! Building an initramfs image on the host: choose the module tree and modules, assemble the
//! base archive around the embedded init, compress it, and append a payload.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use installer::initramfs::{base_archive, BaseSpec, ModulesSpec};
use installer::kmod::{self, ModuleIndex, Selection};

use crate::cli::Compression;
use crate::{compress, embedded};

/// What to build.
#[derive(Debug, Clone)]
pub struct Request {
    pub compression: Compression,
    pub modules: ModuleChoice,
    pub payload: Option<PathBuf>,
}

/// Which kernel modules to carry.
#[derive(Debug, Clone)]
pub enum ModuleChoice {
    None,
    Tree {
        release: Option<String>,
        dir: Option<PathBuf>,
        defaults: bool,
        extra: Vec<String>,
        /// `None`: decide by whether the tree is the running kernel's.
        autodetect: Option<bool>,
    },
}

/// The result, with what went into it.
pub struct Built {
    pub bytes: Vec<u8>,
    pub release: Option<String>,
    pub selection: Option<Selection>,
    pub autodetected: Vec<String>,
    pub base_len: usize,
}

/// `extra` and the modules an install of `layout` needs beyond the defaults
/// ([`kmod::for_layout`]): for an initramfs whose payload is appended later (`anemos pxe`).
pub fn with_layout_modules(extra: &[String], layout: &installer::plan::Layout) -> Vec<String> {
    let mut out = extra.to_vec();
    for m in kmod::for_layout(layout) {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

pub fn build(req: &Request) -> Result<Built> {
    let running = rustix::system::uname().release().to_string_lossy().into_owned();
    let (index, release, selection, autodetected) = match &req.modules {
        ModuleChoice::None => (None, None, None, Vec::new()),
        ModuleChoice::Tree { release, dir, defaults, extra, autodetect } => {
            let (release, dir) = resolve_tree(release.as_deref(), dir.as_deref(), &running);
            let index = ModuleIndex::load(&dir)?;
            let detect = autodetect.unwrap_or(release == running && dir == Path::new("/lib/modules").join(&running));
            let detected = if detect {
                let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
                kmod::autodetect(&index, Path::new("/sys"), &mounts)?
            } else {
                Vec::new()
            };
            // A payload with a plan that needs more modules (btrfs) gets them; any other
            // archive is appended as given, and one that is not an archive is refused by
            // `append_payload` below.
            let extra = match req.payload.as_deref().and_then(|p| crate::payload_plan::read(p).ok()) {
                Some(plan) => with_layout_modules(extra, &plan.layout),
                None => extra.clone(),
            };
            let selection = kmod::select(&index, *defaults, &extra, &detected)?;
            (Some(index), Some(release), Some(selection), detected)
        }
    };
    let modules = match (&index, &release, &selection) {
        (Some(index), Some(release), Some(sel)) => Some(ModulesSpec { index, release, modules: &sel.modules }),
        _ => None,
    };
    let archive = base_archive(&BaseSpec { init: embedded::INIT, skel: embedded::SKEL, modules })?;
    let mut bytes = compress::compress(&archive.to_bytes()?, req.compression)?;
    let base_len = bytes.len();
    if let Some(payload) = &req.payload {
        append_payload(&mut bytes, payload)?;
    }
    Ok(Built { bytes, release, selection, autodetected, base_len })
}

/// The kernel release and module directory: each defaults from the other, then from the
/// running kernel.
fn resolve_tree(release: Option<&str>, dir: Option<&Path>, running: &str) -> (String, PathBuf) {
    match (release, dir) {
        (Some(r), Some(d)) => (r.to_string(), d.to_path_buf()),
        (Some(r), None) => (r.to_string(), Path::new("/lib/modules").join(r)),
        (None, Some(d)) => {
            let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| running.to_string());
            (name, d.to_path_buf())
        }
        (None, None) => (running.to_string(), Path::new("/lib/modules").join(running)),
    }
}

/// Appends a payload archive after padding to a 4-byte boundary, where the kernel looks for
/// the next archive of a concatenated initramfs.
fn append_payload(bytes: &mut Vec<u8>, path: &Path) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading payload {}", path.display()))?;
    if compress::kind(&data).is_none() {
        bail!("payload {} is not a cpio archive (plain, zstd or gzip); make one with `anemos pack`", path.display());
    }
    append(bytes, &data);
    Ok(())
}

/// Appends another archive (a payload) after padding to a 4-byte boundary.
pub fn append(bytes: &mut Vec<u8>, archive: &[u8]) {
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
    bytes.extend_from_slice(archive);
}
