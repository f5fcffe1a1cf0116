//! Reading the plan back out of a payload file (zstd-compressed newc), and checking it against
//! this host before `anemos kexec` loads anything.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use installer::disk::{self, Allow, Confirmed, Identity};
use installer::plan::{DiskSelector, Plan};

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

/// The plan checked against this host, and what the operator is asked to confirm.
pub struct HostCheck {
    pub plan: Plan,
    /// The identities the installer will require (see [`installer::disk::Confirmed`]).
    pub confirmed: Confirmed,
    /// The text to show before asking.
    pub text: String,
}

/// Loads the plan and checks it against this host's disks: the target (`anemos.target=` in
/// `append`, else the plan's `disk=`) must be exactly one disk (it may be in use: it is the
/// running system's), every kept disk or partition must be present and not on the target.
/// The identities of the target and of the disks holding kept entries are recorded: after
/// the reboot into the installer, kernel names may differ, the identities may not.
pub fn check_against_host(payload: &Path, append: &str) -> Result<HostCheck> {
    let plan = read(payload)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let disks = disk::inventory(Path::new("/sys"), &mountinfo)?;
    let from_append = target_in(append)?;
    let selector = from_append.as_ref().or(plan.disk.as_ref());
    let resolved = installer::install::resolve(&plan, &disks, selector, Allow { removable: false, in_use: true }, false).context("this host does not match the plan's disks")?;
    let target = Identity::of(resolved.target).context("recording the disk to wipe")?;
    let mut preserved: Vec<Identity> = Vec::new();
    for l in &resolved.preserved {
        let id = Identity::of(l.disk).with_context(|| format!("recording the disk that holds preserved {}", l.entry.what))?;
        if !preserved.contains(&id) {
            preserved.push(id);
        }
    }
    let others = resolved.others.iter().map(|d| Identity::of(d).with_context(|| format!("recording {}, a disk of the arrays to wipe", d.path.display()))).collect::<Result<Vec<_>>>()?;
    let confirmed = Confirmed { target, preserved, others };
    let mut text = format!("The installer will WIPE {}:\n{}\n", resolved.target.path.display(), disk::describe(resolved.target));
    for d in &resolved.others {
        text += &format!("and WIPE {} too (the layout is written on every disk of disk=):\n{}\n", d.path.display(), disk::describe(d));
    }
    if let Some(sel) = &from_append {
        text += &format!("(chosen by anemos.target={sel} on the installer's command line, not the plan's disk=)\n");
    }
    text += &format!("After the reboot it requires exactly this disk, {}, and stops before writing anything if it finds another.\n", confirmed.target.describe());
    for other in &confirmed.others {
        text += &format!("It requires {} as well, the same way.\n", other.describe());
    }
    for kept in &confirmed.preserved {
        text += &format!("It keeps {}, and stops if that disk is missing.\n", kept.describe());
    }
    text += &installer::plan::render_human(&plan);
    Ok(HostCheck { plan, confirmed, text })
}

/// `anemos.target=SELECTOR` among extra command-line options (the last one wins, as in the init).
fn target_in(append: &str) -> Result<Option<DiskSelector>> {
    let mut found = None;
    for value in append.split_whitespace().filter_map(|w| w.strip_prefix("anemos.target=")) {
        found = Some(installer::plan::parse::parse_selector(value).map_err(|e| anyhow::anyhow!("anemos.target={value}: {e}"))?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_lines_target_is_the_one_shown() {
        assert_eq!(super::target_in("anemos.log=debug").unwrap(), None);
        let sel = super::target_in("anemos.target=/dev/vdb quiet anemos.target=serial:S2").unwrap().unwrap();
        assert_eq!(sel.to_string(), "serial:S2");
        assert!(super::target_in("anemos.target=bogus").is_err());
    }
}
