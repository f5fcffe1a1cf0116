//! The local database pacman reads as the installed system (`/var/lib/pacman/local`,
//! libalpm `be_local.c`): `ALPM_DB_VERSION` (9), and per package `NAME-VERSION/` with
//! `desc` (fields in `_alpm_local_db_write`'s order, each `%KEY%`, its values, an empty
//! line; empty fields left out), `files` (`%FILES%`: every path without its leading `/`,
//! directories ending in `/`, sorted bytewise; `%BACKUP%`: `path<TAB>md5`), `mtree` (the
//! package's gzipped `.MTREE`, which `pacman -Qkk` compares the files with), and `install`
//! and `changelog` when the package has them. The values come from the package's own
//! `.PKGINFO`, as pacman takes them from the downloaded file.

use anyhow::{Context, Result};

use super::unpack::Unpacked;
use crate::packages::extract::{Kind, Root};

pub const LOCAL: &str = "var/lib/pacman/local";

/// Creates an empty local database.
pub fn init(root: &Root) -> Result<()> {
    root.dir_all(LOCAL)?;
    root.write_file(&format!("{LOCAL}/ALPM_DB_VERSION"), b"9\n", 0o644)
}

/// How a package was verified (`%VALIDATION%`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Validation {
    pub sha256: bool,
    pub pgp: bool,
}

/// Writes the entry of one unpacked package.
pub fn register(root: &Root, u: &Unpacked, explicit: bool, validation: Validation, installdate: u64) -> Result<()> {
    let name = first(u, "pkgname");
    let version = first(u, "pkgver");
    let dir = format!("{LOCAL}/{name}-{version}");
    root.dir_all(&dir)?;
    let write = |file: &str, data: &[u8]| root.write_file(&format!("{dir}/{file}"), data, 0o644).with_context(|| format!("registering {name} in the local database"));
    write("desc", desc(u, explicit, validation, installdate).as_bytes())?;
    write("files", files(u)?.as_bytes())?;
    if let Some(m) = &u.mtree {
        write("mtree", m)?;
    }
    if let Some(i) = &u.install {
        write("install", &i.data)?;
        // pacman extracts it with the archive's mtime, which `pacman -Qkk` compares with
        // the .MTREE entry of `.INSTALL`.
        root.set_mtime(&format!("{dir}/install"), i.mtime)?;
    }
    if let Some(c) = &u.changelog {
        write("changelog", c)?;
    }
    Ok(())
}

fn first<'a>(u: &'a Unpacked, key: &str) -> &'a str {
    u.info(key).next().unwrap_or("")
}

/// The `desc` file.
pub fn desc(u: &Unpacked, explicit: bool, validation: Validation, installdate: u64) -> String {
    let mut out = String::new();
    // A field is written when the package has it, even empty (`url = ` gives an empty
    // %URL%), as pacman writes every string it read; lists only when not empty.
    let mut field = |key: &str, values: Vec<&str>| {
        if !values.is_empty() {
            out.push_str(&format!("%{key}%\n{}\n\n", values.join("\n")));
        }
    };
    let one = |k: &str| u.info(k).take(1).collect::<Vec<_>>();
    let nonzero = |k: &str| u.info(k).take(1).filter(|v| !v.is_empty() && *v != "0").collect::<Vec<_>>();
    let all = |k: &str| u.info(k).collect::<Vec<_>>();
    field("NAME", one("pkgname"));
    field("VERSION", one("pkgver"));
    field("BASE", one("pkgbase"));
    field("DESC", one("pkgdesc"));
    field("URL", one("url"));
    field("ARCH", one("arch"));
    field("BUILDDATE", nonzero("builddate"));
    let date = installdate.to_string();
    field("INSTALLDATE", vec![&date]);
    field("PACKAGER", one("packager"));
    field("SIZE", nonzero("size"));
    field("REASON", if explicit { vec![] } else { vec!["1"] });
    field("GROUPS", all("group"));
    field("LICENSE", all("license"));
    let mut v = Vec::new();
    if validation.sha256 {
        v.push("sha256");
    }
    if validation.pgp {
        v.push("pgp");
    }
    if v.is_empty() {
        v.push("none");
    }
    field("VALIDATION", v);
    field("REPLACES", all("replaces"));
    field("DEPENDS", all("depend"));
    field("OPTDEPENDS", all("optdepend"));
    field("CONFLICTS", all("conflict"));
    field("PROVIDES", all("provides"));
    field("XDATA", all("xdata"));
    out
}

/// The package's paths as the `files` list names them (no leading `/`, directories with a
/// trailing `/`), sorted.
pub fn files_of(u: &Unpacked) -> Vec<String> {
    let mut paths: Vec<String> = u
        .written
        .iter()
        .filter(|w| w.path != "/.")
        .map(|w| {
            let p = w.path.trim_start_matches('/');
            if w.kind == Kind::Dir {
                format!("{p}/")
            } else {
                p.to_string()
            }
        })
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The `files` file: the package's paths, and its backup files with their MD5.
pub fn files(u: &Unpacked) -> Result<String> {
    let paths = files_of(u);
    let mut out = String::new();
    if !paths.is_empty() {
        out.push_str("%FILES%\n");
        for p in &paths {
            out.push_str(p);
            out.push('\n');
        }
        out.push('\n');
    }
    let backups: Vec<&str> = u.info("backup").collect();
    if !backups.is_empty() {
        out.push_str("%BACKUP%\n");
        for b in backups {
            let md5 =
                u.written.iter().find(|w| w.path.trim_start_matches('/') == b).and_then(|w| w.md5.clone()).with_context(|| format!("the backup file {b} is not a regular file of the package"))?;
            out.push_str(&format!("{b}\t{md5}\n"));
        }
        out.push('\n');
    }
    Ok(out)
}
