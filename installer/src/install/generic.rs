//! The last phase of an image build: what made the tree one machine's is taken out, so that
//! every host installed from the image makes its own. The machine-id is emptied (systemd's
//! "not yet initialised"; the installer writes a fresh one per host), the ssh host keys are
//! removed (the installer makes new ones per host), and what records this build rather
//! than the system — logs, caches, random seeds — goes, which also makes two builds of the
//! same inputs differ less.

use anyhow::{Context, Result};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use super::Install;
use crate::files::root::RootDir;
use crate::packages::extract::Root;
use crate::plan::Plan;

/// Whether the operator asked for secrets in the image (`image_secrets=yes`): then the
/// templates that use them are rendered into it, and it must be kept like a secret.
pub fn secrets_in_image(plan: &Plan) -> bool {
    plan.variables.get("image_secrets").map(|v| v.trim()) == Some("yes")
}

/// Files taken out of the image, relative to the root.
const REMOVE: &[&str] = &[
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "var/lib/systemd/credential.secret",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/passwords.dat-old",
    "etc/shadow-",
    "etc/gshadow-",
    "etc/passwd-",
    "etc/group-",
    "etc/subuid-",
    "etc/subgid-",
];

/// Directories whose files (not the directories themselves) are taken out.
const EMPTY: &[&str] = &["var/log", "tmp", "var/tmp", "var/cache/apt", "var/lib/apt/lists", "etc/ssh"];

pub fn run(inst: &mut Install) -> Result<()> {
    let root = Root::open(&inst.root)?;
    let mut removed = 0;
    for rel in REMOVE {
        removed += remove_file(&root, rel)? as usize;
    }
    for rel in EMPTY {
        removed += empty(&root, rel, &|name| *rel != "etc/ssh" || name.starts_with("ssh_host_"))?;
    }
    // systemd: an empty machine-id means "not yet initialised"; each host gets its own.
    RootDir::open(&inst.root)?.write_file("etc/machine-id", b"", 0o444)?;
    log::info!("generalize: machine-id emptied, {removed} files removed (ssh host keys, logs, caches, random seeds)");
    Ok(())
}

/// Removes a file (not a directory) if it is there; whether it was.
fn remove_file(root: &Root, rel: &str) -> Result<bool> {
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let Ok(dir) = root.dir(parent) else { return Ok(false) };
    match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
            rfs::unlinkat(&dir, name, AtFlags::empty()).with_context(|| format!("removing /{rel}"))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Removes every non-directory below `rel` whose name `keep_out` accepts, keeping the
/// directories (packages own them). Returns how many.
fn empty(root: &Root, rel: &str, select: &dyn Fn(&str) -> bool) -> Result<usize> {
    let Ok(dir) = root.dir(rel) else { return Ok(0) };
    let dir = rfs::openat(&dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).with_context(|| format!("opening /{rel}"))?;
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(&dir).with_context(|| format!("listing /{rel}"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    let mut n = 0;
    for name in names {
        let st = rfs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            n += empty(root, &format!("{rel}/{name}"), select)?;
        } else if select(&name) {
            rfs::unlinkat(&dir, name.as_str(), AtFlags::empty()).with_context(|| format!("removing /{rel}/{name}"))?;
            n += 1;
        }
    }
    Ok(n)
}
