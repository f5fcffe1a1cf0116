//! Reading the plan back out of a payload file (zstd-compressed newc), and checking it against
//! this host before `anemos kexec` loads anything.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use installer::disk::{self, Allow};
use installer::plan::{DiskSelector, Plan, PreserveTarget};

/// The plan inside a payload file.
pub fn read(payload: &Path) -> Result<Plan> {
    let bytes = std::fs::read(payload).with_context(|| format!("reading {}", payload.display()))?;
    let cpio = match crate::compress::kind(&bytes) {
        Some("zstd") => zstd::stream::decode_all(&bytes[..]).context("decompressing the payload")?,
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out).context("decompressing the payload")?;
            out
        }
        Some("cpio") => bytes,
        _ => bail!("{} is not a payload (a cpio archive from anemos pack)", payload.display()),
    };
    let want = format!("{}/{}", installer::payload::DIR, installer::payload::PLAN_FILE);
    let mut rest = &cpio[..];
    loop {
        let mut reader = cpio::NewcReader::new(rest).context("reading the payload archive")?;
        if reader.entry().is_trailer() {
            bail!("{} holds no {want}", payload.display());
        }
        if reader.entry().name() == want {
            let mut text = String::new();
            reader.read_to_string(&mut text).context("reading plan.json")?;
            return installer::payload::parse_plan(&text);
        }
        rest = reader.finish().context("reading the payload archive")?;
    }
}

/// Loads the plan and checks it against this host's disks: the target must be exactly one
/// disk (it may be in use: it is the running system's), preserved disks must be present
/// and must not be the target. Returns the text to show before asking for confirmation.
pub fn check_against_host(payload: &Path) -> Result<(Plan, String)> {
    let plan = read(payload)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let disks = disk::inventory(Path::new("/sys"), &mountinfo)?;
    let preserved: Vec<&DiskSelector> = plan
        .preserve
        .iter()
        .filter_map(|p| match &p.what {
            PreserveTarget::Disk { disk } | PreserveTarget::Partition { disk, .. } => Some(disk),
            _ => None,
        })
        .collect();
    let target = disk::select(&disks, plan.disk.as_ref(), &preserved, Allow { removable: false, in_use: true })
        .context("this host does not match the plan's disk=")?;
    for sel in &preserved {
        disk::select(&disks, Some(sel), &[], Allow { removable: true, in_use: true }).with_context(|| format!("preserved disk {sel} is not on this host"))?;
    }
    let mut text = format!("The installer will WIPE {}:\n{}\n", target.path.display(), disk::describe(target));
    text += &installer::plan::render_human(&plan);
    Ok((plan, text))
}
