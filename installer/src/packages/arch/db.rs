//! Sync databases (`REPO.db`, repo-add(8)): a tar archive, compressed or not, with one
//! directory `NAME-VERSION/` per package holding `desc` (and, in databases made before
//! pacman 5.2, a separate `depends`). Both files are sections of `%KEY%` followed by one
//! value per line, ended by an empty line (libalpm `be_sync.c`, `sync_db_read`).

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{bail, Context, Result};

use super::depend::Depend;
use crate::packages::extract::decompress_sniffed;

/// One package of a sync database.
#[derive(Debug, Clone, Default)]
pub struct Package {
    /// Index of its repository in the configuration.
    pub repo: usize,
    pub filename: String,
    pub name: String,
    pub base: String,
    pub version: String,
    pub desc: String,
    pub groups: Vec<String>,
    /// Download size.
    pub csize: u64,
    /// Installed size.
    pub isize: u64,
    pub sha256: Option<String>,
    /// The detached signature, base64 (repo-add stores it when a `.sig` sits beside the package).
    pub pgpsig: Option<String>,
    pub url: String,
    pub licenses: Vec<String>,
    pub arch: String,
    pub builddate: u64,
    pub packager: String,
    pub replaces: Vec<Depend>,
    pub conflicts: Vec<Depend>,
    pub provides: Vec<Depend>,
    pub depends: Vec<Depend>,
    /// `name[: description]`, kept as written.
    pub optdepends: Vec<String>,
}

/// Parses `%KEY%` sections into lists of values.
pub fn sections(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            current = None;
        } else if current.is_none() && line.len() > 2 && line.starts_with('%') && line.ends_with('%') {
            let key = line[1..line.len() - 1].to_string();
            out.entry(key.clone()).or_default();
            current = Some(key);
        } else if let Some(k) = &current {
            out.entry(k.clone()).or_default().push(line.to_string());
        }
    }
    out
}

impl Package {
    /// Merges the sections of a `desc` (or old-style `depends`) file into `self`.
    pub fn add_sections(&mut self, text: &str, origin: &str) -> Result<()> {
        for (key, values) in sections(text) {
            let one = || values.first().cloned().unwrap_or_default();
            let num = |what: &str| -> Result<u64> { one().trim().parse().with_context(|| format!("{origin}: %{what}% is not a number: {:?}", one())) };
            let deps = || -> Result<Vec<Depend>> { values.iter().map(|v| Depend::parse(v)).collect() };
            match key.as_str() {
                "FILENAME" => self.filename = one(),
                "NAME" => self.name = one(),
                "BASE" => self.base = one(),
                "VERSION" => self.version = one(),
                "DESC" => self.desc = one(),
                "GROUPS" => self.groups = values,
                "CSIZE" => self.csize = num("CSIZE")?,
                "ISIZE" => self.isize = num("ISIZE")?,
                "SHA256SUM" => self.sha256 = Some(one().to_ascii_lowercase()),
                "PGPSIG" => self.pgpsig = Some(one()),
                "URL" => self.url = one(),
                "LICENSE" => self.licenses = values,
                "ARCH" => self.arch = one(),
                "BUILDDATE" => self.builddate = num("BUILDDATE")?,
                "PACKAGER" => self.packager = one(),
                "REPLACES" => self.replaces = deps()?,
                "CONFLICTS" => self.conflicts = deps()?,
                "PROVIDES" => self.provides = deps()?,
                "DEPENDS" => self.depends = deps()?,
                "OPTDEPENDS" => self.optdepends = values,
                _ => {}
            }
        }
        Ok(())
    }

    /// `NAME-VERSION`, the name of its directory in the databases.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

/// The largest database accepted, decompressed (Arch's biggest, extra, is about 40 MiB).
const DB_LIMIT: u64 = 1 << 30;

/// Reads a sync database (any compression pacman accepts, told by its magic bytes).
pub fn read(input: impl Read, origin: &str, repo: usize) -> Result<Vec<Package>> {
    // A database of a repository that does not sign it could be anything: bounded.
    let decoded = crate::packages::extract::Capped::new(decompress_sniffed(input, origin)?, DB_LIMIT, origin.to_string());
    let mut archive = tar::Archive::new(decoded);
    let mut by_dir: BTreeMap<String, Package> = BTreeMap::new();
    for entry in archive.entries().with_context(|| format!("reading the database {origin}"))? {
        let mut entry = entry.with_context(|| format!("reading the database {origin}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some((dir, file)) = path.trim_start_matches("./").split_once('/') else { continue };
        if file != "desc" && file != "depends" {
            continue;
        }
        if entry.size() > 16 << 20 {
            bail!("{origin}: {path} is implausibly large");
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).with_context(|| format!("{origin}: {path} is not UTF-8 text"))?;
        let p = by_dir.entry(dir.to_string()).or_default();
        p.repo = repo;
        p.add_sections(&text, &format!("{origin}: {path}"))?;
    }
    let mut out = Vec::with_capacity(by_dir.len());
    for (dir, p) in by_dir {
        if p.name.is_empty() || p.version.is_empty() || p.filename.is_empty() {
            bail!("{origin}: the entry {dir} lacks %NAME%, %VERSION% or %FILENAME%");
        }
        if p.filename.contains('/') || p.filename.starts_with('.') {
            bail!("{origin}: the entry {dir} names the file {:?}, which is not a plain file name", p.filename);
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desc_sections_and_old_depends_file() {
        let desc = "%FILENAME%\nhello-1.0-1-x86_64.pkg.tar.zst\n\n%NAME%\nhello\n\n%VERSION%\n1.0-1\n\n%GROUPS%\nbase\nextra-grp\n\n%CSIZE%\n1234\n\n%ISIZE%\n4096\n\n%SHA256SUM%\nABCDEF\n\n%ARCH%\nx86_64\n\n%DEPENDS%\nglibc>=2.38\nsh\n\n%PROVIDES%\nhi=1.0\n\n%OPTDEPENDS%\nperl: for the scripts\n\n";
        let mut p = Package::default();
        p.add_sections(desc, "test").unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str(), p.csize, p.isize), ("hello", "1.0-1", 1234, 4096));
        assert_eq!(p.groups, ["base", "extra-grp"]);
        assert_eq!(p.sha256.as_deref(), Some("abcdef"));
        assert_eq!(p.depends.iter().map(|d| d.to_string()).collect::<Vec<_>>(), ["glibc>=2.38", "sh"]);
        assert_eq!(p.provides[0].to_string(), "hi=1.0");
        assert_eq!(p.optdepends, ["perl: for the scripts"]);
        p.add_sections("%CONFLICTS%\nhello-git\n\n", "depends").unwrap();
        assert_eq!(p.conflicts[0].name, "hello-git");
        let mut bad = Package::default();
        assert!(bad.add_sections("%CSIZE%\nbig\n", "t").unwrap_err().to_string().contains("not a number"));
    }

    #[test]
    fn reads_a_gzip_database() {
        let mut tar = tar::Builder::new(Vec::new());
        let desc = b"%FILENAME%\na-1-1-any.pkg.tar.zst\n\n%NAME%\na\n\n%VERSION%\n1-1\n\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(desc.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, "a-1-1/desc", &desc[..]).unwrap();
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let pkgs = read(&gz.finish().unwrap()[..], "core.db", 3).unwrap();
        assert_eq!((pkgs[0].name.as_str(), pkgs[0].repo), ("a", 3));
        let evil = b"%FILENAME%\n../x\n\n%NAME%\na\n\n%VERSION%\n1-1\n\n";
        let mut tar = tar::Builder::new(Vec::new());
        h.set_size(evil.len() as u64);
        tar.append_data(&mut h, "a-1-1/desc", &evil[..]).unwrap();
        let err = read(&tar.into_inner().unwrap()[..], "core.db", 0).unwrap_err().to_string();
        assert!(err.contains("not a plain file name"), "{err}");
    }
}
