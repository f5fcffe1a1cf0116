//! Package indexes (`Packages` files): the fields the resolver and the downloader need, read
//! streaming from the decompressed index, for the native architecture and `all` only.

use std::collections::HashMap;
use std::io::BufRead;

use anyhow::{Context, Result};

use super::control::Reader;
use super::relation::{parse_field, parse_flat, Alternatives, Relation};
use super::version::Version;

/// The fields of a Packages paragraph that are kept.
const KEPT: &[&str] =
    &["Package", "Version", "Architecture", "Multi-Arch", "Priority", "Essential", "Depends", "Pre-Depends", "Provides", "Conflicts", "Breaks", "Filename", "Size", "SHA256", "Installed-Size"];

/// `Multi-Arch` (deb-control(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiArch {
    No,
    Same,
    Foreign,
    Allowed,
}

/// One binary package as an index describes it. A full index has tens of thousands, so the
/// relationship fields other than `Provides` (needed for the lookup tables) are kept as text
/// and parsed when the resolver looks at them (a few hundred packages).
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: Version,
    pub arch: String,
    pub multi_arch: MultiArch,
    pub priority: String,
    pub essential: bool,
    depends: Box<str>,
    pre_depends: Box<str>,
    conflicts: Box<str>,
    breaks: Box<str>,
    pub provides: Vec<Relation>,
    /// Path below the repository's base URL (`pool/main/…`).
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub installed_kib: u64,
    /// Which repository (index into the prepared list of sources) it comes from.
    pub source: usize,
}

impl Package {
    /// `name_version_arch`, the usual .deb base name.
    pub fn id(&self) -> String {
        format!("{}_{}_{}", self.name, self.version, self.arch)
    }

    /// `Depends`.
    pub fn depends(&self) -> Result<Vec<Alternatives>> {
        parse_field(&self.depends).with_context(|| format!("the Depends of {}", self.id()))
    }

    /// `Pre-Depends`.
    pub fn pre_depends(&self) -> Result<Vec<Alternatives>> {
        parse_field(&self.pre_depends).with_context(|| format!("the Pre-Depends of {}", self.id()))
    }

    /// `Conflicts` and `Breaks` together (a bad field reads as empty: it is only consulted
    /// to avoid or report conflicts).
    pub fn conflicts_and_breaks(&self) -> Vec<Relation> {
        let mut out = parse_flat(&self.conflicts).unwrap_or_default();
        out.extend(parse_flat(&self.breaks).unwrap_or_default());
        out
    }

    /// The `Priority` rank: lower is more important.
    pub fn priority_rank(&self) -> u8 {
        match self.priority.as_str() {
            "required" => 0,
            "important" => 1,
            "standard" => 2,
            "optional" => 3,
            _ => 4,
        }
    }
}

/// Every package of every index, with lookups by name and by provided name.
#[derive(Debug, Default)]
pub struct Universe {
    pub packages: Vec<Package>,
    by_name: HashMap<String, Vec<usize>>,
    providers: HashMap<String, Vec<usize>>,
}

impl Universe {
    /// Reads one decompressed Packages index; paragraphs of other architectures are dropped.
    pub fn add_index(&mut self, input: impl BufRead, what: &str, native: &str, source: usize) -> Result<usize> {
        let mut reader = Reader::new(input, what, |f| KEPT.iter().any(|k| k.eq_ignore_ascii_case(f)));
        let mut n = 0;
        while let Some(p) = reader.next_paragraph()? {
            let arch = p.require("Architecture")?;
            if arch != native && arch != "all" {
                continue;
            }
            let name = p.require("Package")?.to_string();
            let pkg = parse_package(&p, source).with_context(|| format!("{what}: package {name}"))?;
            self.push(pkg);
            n += 1;
        }
        Ok(n)
    }

    fn push(&mut self, pkg: Package) {
        let i = self.packages.len();
        self.by_name.entry(pkg.name.clone()).or_default().push(i);
        for p in &pkg.provides {
            self.providers.entry(p.name.clone()).or_default().push(i);
        }
        self.packages.push(pkg);
    }

    /// Every version of a real package called `name`.
    pub fn by_name(&self, name: &str) -> &[usize] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every package that provides `name`.
    pub fn providers(&self, name: &str) -> &[usize] {
        self.providers.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The candidate of `name`: its highest version over all sources (an update or security
    /// suite thus wins over the release it updates, as apt's default pinning does).
    pub fn candidate(&self, name: &str) -> Option<usize> {
        self.by_name(name).iter().copied().max_by(|&a, &b| self.packages[a].version.cmp(&self.packages[b].version))
    }

    /// Every package name with at least one version.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.by_name.keys()
    }
}

fn parse_package(p: &super::control::Paragraph, source: usize) -> Result<Package> {
    let raw = |f: &str| Box::<str>::from(p.get(f).unwrap_or(""));
    let flat = |f: &str| p.get(f).map(parse_flat).transpose().map(Option::unwrap_or_default);
    let multi_arch = match p.get("Multi-Arch").unwrap_or("no") {
        "same" => MultiArch::Same,
        "foreign" => MultiArch::Foreign,
        "allowed" => MultiArch::Allowed,
        _ => MultiArch::No,
    };
    Ok(Package {
        name: p.require("Package")?.to_string(),
        version: Version::parse(p.require("Version")?)?,
        arch: p.require("Architecture")?.to_string(),
        multi_arch,
        priority: p.get("Priority").unwrap_or("optional").to_string(),
        essential: p.get("Essential") == Some("yes"),
        depends: raw("Depends"),
        pre_depends: raw("Pre-Depends"),
        conflicts: raw("Conflicts"),
        breaks: raw("Breaks"),
        provides: flat("Provides")?,
        filename: p.require("Filename")?.to_string(),
        size: p.require("Size")?.parse().context("Size is not a number")?,
        sha256: p.require("SHA256")?.to_ascii_lowercase(),
        installed_kib: p.get("Installed-Size").and_then(|s| s.parse().ok()).unwrap_or(0),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "Package: a\nVersion: 1.0\nArchitecture: amd64\nPriority: required\nEssential: yes\nDepends: b (>= 2) | c\nProvides: virt (= 3)\nFilename: pool/a.deb\nSize: 10\nSHA256: AB\nDescription: x\n y\n\nPackage: a\nVersion: 1.1\nArchitecture: amd64\nFilename: pool/a2.deb\nSize: 10\nSHA256: ab\n\nPackage: z\nVersion: 1\nArchitecture: arm64\nFilename: pool/z.deb\nSize: 1\nSHA256: 00\n";

    #[test]
    fn reads_native_packages_with_lookups() {
        let mut u = Universe::default();
        assert_eq!(u.add_index(INDEX.as_bytes(), "t", "amd64", 0).unwrap(), 2);
        let a = &u.packages[u.candidate("a").unwrap()];
        assert_eq!(a.version.to_string(), "1.1");
        assert_eq!(u.providers("virt").len(), 1);
        assert!(u.packages[0].essential);
        assert_eq!(u.packages[0].sha256, "ab");
        assert!(u.candidate("z").is_none());
    }

    #[test]
    fn missing_fields_are_errors_naming_the_package() {
        let mut u = Universe::default();
        let err = u.add_index("Package: q\nVersion: 1\nArchitecture: all\n".as_bytes(), "idx", "amd64", 0).unwrap_err();
        assert!(format!("{err:#}").contains("idx: package q"), "{err:#}");
    }
}
