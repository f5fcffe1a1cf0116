//! Streaming a Debian binary package (deb(5)): an ar archive of `debian-binary` ("2.0"),
//! `control.tar[.xz|.zst|.gz]` (read into memory: a few KiB of metadata and scripts) and
//! `data.tar[.xz|.zst|.gz]` (handed to the caller as a decompressed stream, typically to
//! [`super::unpack_tar`]). Members whose names start with `_` are skipped, as dpkg does.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{bail, Context, Result};

/// The members of `control.tar`, by name without `./` (`control`, `md5sums`, `postinst`, …),
/// with their modes.
#[derive(Debug, Default, Clone)]
pub struct Control {
    pub files: BTreeMap<String, (u32, Vec<u8>)>,
}

impl Control {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(|(_, d)| d.as_slice())
    }

    /// The `control` file as text.
    pub fn control_text(&self) -> Result<String> {
        let raw = self.get("control").context("control.tar has no control file")?;
        String::from_utf8(raw.to_vec()).context("the control file is not UTF-8")
    }
}

const CONTROL_LIMIT: u64 = super::METADATA_LIMIT;

/// Reads a `.deb` from `input`: the control members, then `data` gets the decompressed
/// data.tar stream (and the control members, to decide where files go), which fails once
/// it passes `data_limit` bytes ([`super::unpacked_limit`] of the package's Installed-Size).
pub fn read<R: Read, T>(input: R, data_limit: u64, data: impl FnOnce(&Control, &mut dyn Read) -> Result<T>) -> Result<(Control, T)> {
    let mut ar = ar::Archive::new(input);
    let mut control: Option<Control> = None;
    let mut seen_version = false;
    while let Some(member) = ar.next_entry() {
        let mut member = member.context("reading the ar archive of the .deb")?;
        let name = String::from_utf8_lossy(member.header().identifier()).trim_end_matches('/').to_string();
        if name == "debian-binary" {
            let mut v = String::new();
            (&mut member).take(64).read_to_string(&mut v).context("reading debian-binary")?;
            if !v.starts_with("2.") {
                bail!("unsupported .deb format version {:?} (dpkg supports 2.x)", v.trim());
            }
            seen_version = true;
        } else if name.starts_with('_') {
            continue;
        } else if !seen_version {
            bail!("not a Debian package: the first member is {name:?}, not debian-binary");
        } else if let Some(ext) = name.strip_prefix("control.tar") {
            control = Some(read_control(super::decompress(ext, &mut member)?).with_context(|| format!("reading {name}"))?);
        } else if let Some(ext) = name.strip_prefix("data.tar") {
            let c = control.take().context("data.tar comes before control.tar")?;
            let mut stream = super::Capped::new(super::decompress(ext, &mut member)?, data_limit, name.clone());
            let out = data(&c, &mut stream).with_context(|| format!("unpacking {name}"))?;
            // Drain the member so a truncated or corrupt compressed stream is noticed.
            std::io::copy(&mut stream, &mut std::io::sink()).with_context(|| format!("reading the end of {name}"))?;
            return Ok((c, out));
        } else {
            bail!("unexpected member {name:?} in the .deb");
        }
    }
    bail!("the .deb ended before its data.tar member (truncated?)")
}

fn read_control(input: impl Read) -> Result<Control> {
    let mut archive = tar::Archive::new(super::Capped::new(input, CONTROL_LIMIT, "control.tar"));
    let mut out = Control::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let typ = entry.header().entry_type();
        if typ.is_dir() {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = path.trim_start_matches("./").to_string();
        if !typ.is_file() || name.contains('/') || name.is_empty() {
            bail!("unexpected control member {path:?}");
        }
        let mode = entry.header().mode()?;
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        out.files.insert(name, (mode, data));
    }
    if !out.files.contains_key("control") {
        bail!("control.tar has no control file");
    }
    Ok(out)
}
