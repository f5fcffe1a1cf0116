//! `pacman.conf` (pacman.conf(5)): `[options]` (`Architecture`, `SigLevel`, `HoldPkg`… of
//! which the install needs the first two) and one section per repository with `Server`
//! lines (`$repo` and `$arch` substituted), `SigLevel` and `Include` (another file of
//! `Server` lines — a mirrorlist — or any section body; a `*` glob in the file name is
//! allowed, as pacman allows). Repository order is priority order.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// One `SigLevel` half (package or database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Never,
    Optional,
    Required,
}

/// A parsed `SigLevel`; the trust tokens (`TrustedOnly`, `TrustAll`) are accepted, and every
/// key of the keyring given to the installer is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigLevel {
    pub package: Check,
    pub database: Check,
}

impl Default for SigLevel {
    /// pacman's built-in default: `Required DatabaseOptional`.
    fn default() -> Self {
        SigLevel { package: Check::Required, database: Check::Optional }
    }
}

impl SigLevel {
    /// Applies the tokens of a `SigLevel =` value on top of `self` (a repository's value
    /// overrides only the halves it names, as pacman merges them).
    pub fn apply(mut self, value: &str, origin: &str) -> Result<SigLevel> {
        for tok in value.split_whitespace() {
            let (which, level) = if let Some(l) = tok.strip_prefix("Package") {
                (Some(true), l)
            } else if let Some(l) = tok.strip_prefix("Database") {
                (Some(false), l)
            } else {
                (None, tok)
            };
            let check = match level {
                "Never" => Check::Never,
                "Optional" => Check::Optional,
                "Required" => Check::Required,
                "TrustedOnly" | "TrustAll" => continue,
                _ => bail!("{origin}: unknown SigLevel token {tok:?} (pacman.conf(5))"),
            };
            match which {
                Some(true) => self.package = check,
                Some(false) => self.database = check,
                None => {
                    self.package = check;
                    self.database = check;
                }
            }
        }
        Ok(self)
    }
}

/// One repository section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub name: String,
    /// Server URLs as written (with `$repo`/`$arch`), in order.
    pub servers: Vec<String>,
    /// This repository's `SigLevel =` value, if any (merged over the global one).
    pub siglevel: Option<String>,
}

impl Repo {
    /// The server URLs with `$repo` and `$arch` substituted.
    pub fn urls(&self, arch: &str) -> Vec<String> {
        self.servers.iter().map(|s| s.replace("$repo", &self.name).replace("$arch", arch).trim_end_matches('/').to_string()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacmanConf {
    /// `Architecture` values (`auto` resolved by the caller).
    pub architecture: Vec<String>,
    pub siglevel: Option<String>,
    pub repos: Vec<Repo>,
    /// Where it came from, for messages.
    pub origin: String,
}

/// Reads an `Include`d file; the installer gives the host's files, or none.
pub type Includer<'a> = &'a dyn Fn(&str) -> Result<Vec<(String, String)>>;

impl PacmanConf {
    /// Reads `path`, with `Include` paths read from the host's filesystem.
    pub fn load(path: &Path) -> Result<PacmanConf> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        PacmanConf::parse(&text, &path.display().to_string(), &host_includes)
    }

    /// Parses the text of a pacman.conf; `include` reads `Include =` targets.
    pub fn parse(text: &str, origin: &str, include: Includer<'_>) -> Result<PacmanConf> {
        let mut conf = PacmanConf { origin: origin.to_string(), ..PacmanConf::default() };
        let mut section: Option<String> = None;
        conf.parse_body(text, origin, include, &mut section, 0)?;
        Ok(conf)
    }

    fn parse_body(&mut self, text: &str, origin: &str, include: Includer<'_>, section: &mut Option<String>, depth: u32) -> Result<()> {
        if depth > 10 {
            bail!("{origin}: Include nested more than 10 deep");
        }
        for (n, line) in text.lines().enumerate() {
            let at = format!("{origin}:{}", n + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim();
                if name.is_empty() {
                    bail!("{at}: an empty section name");
                }
                if name != "options" && !self.repos.iter().any(|r| r.name == name) {
                    self.repos.push(Repo { name: name.to_string(), servers: Vec::new(), siglevel: None });
                }
                *section = Some(name.to_string());
                continue;
            }
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (line, ""),
            };
            let Some(sec) = section.clone() else { bail!("{at}: {key} outside any section") };
            if key == "Include" {
                for (file, body) in include(value).with_context(|| format!("{at}: Include = {value}"))? {
                    self.parse_body(&body, &file, include, section, depth + 1)?;
                }
                *section = Some(sec);
                continue;
            }
            if sec == "options" {
                match key {
                    "Architecture" => self.architecture = value.split_whitespace().map(str::to_string).collect(),
                    "SigLevel" => self.siglevel = Some(value.to_string()),
                    _ => {}
                }
                continue;
            }
            let Some(repo) = self.repos.iter_mut().find(|r| r.name == sec) else { continue };
            match key {
                "Server" if !value.is_empty() => repo.servers.push(value.to_string()),
                "Server" => bail!("{at}: Server without a URL"),
                "SigLevel" => repo.siglevel = Some(value.to_string()),
                _ => {}
            }
        }
        Ok(())
    }

    /// The effective signature levels of repository `i`.
    pub fn siglevel(&self, i: usize) -> Result<SigLevel> {
        let mut level = SigLevel::default();
        if let Some(g) = &self.siglevel {
            level = level.apply(g, &self.origin)?;
        }
        if let Some(r) = &self.repos[i].siglevel {
            level = level.apply(r, &format!("{} [{}]", self.origin, self.repos[i].name))?;
        }
        Ok(level)
    }
}

/// `Include` from the host: one file, or every file matching a `*` in the last component.
pub fn host_includes(pattern: &str) -> Result<Vec<(String, String)>> {
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains('*') {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {pattern}"))?;
        return Ok(vec![(pattern.to_string(), text)]);
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let (pre, post) = name.split_once('*').unwrap_or((name, ""));
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|n| {
            let p = dir.join(&n);
            Ok((p.display().to_string(), std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_servers_includes_and_siglevels() {
        let text = "[options]\nArchitecture = auto\nSigLevel = Required DatabaseOptional\nHoldPkg = pacman\n\n[core]\nInclude = /etc/pacman.d/mirrorlist\n\n[extra]\nSigLevel = PackageOptional\nServer = http://b.test/$repo/os/$arch/\n\n[local]\nSigLevel = Never\nServer = file:///srv/$repo\n";
        let inc = |p: &str| -> Result<Vec<(String, String)>> {
            assert_eq!(p, "/etc/pacman.d/mirrorlist");
            Ok(vec![(p.into(), "# a mirrorlist\nServer = http://a.test/$repo/os/$arch\n".into())])
        };
        let c = PacmanConf::parse(text, "pacman.conf", &inc).unwrap();
        assert_eq!(c.architecture, ["auto"]);
        assert_eq!(c.repos.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["core", "extra", "local"]);
        assert_eq!(c.repos[0].urls("x86_64"), ["http://a.test/core/os/x86_64"]);
        assert_eq!(c.repos[1].urls("x86_64"), ["http://b.test/extra/os/x86_64"]);
        assert_eq!(c.siglevel(0).unwrap(), SigLevel { package: Check::Required, database: Check::Optional });
        assert_eq!(c.siglevel(1).unwrap(), SigLevel { package: Check::Optional, database: Check::Optional });
        assert_eq!(c.siglevel(2).unwrap(), SigLevel { package: Check::Never, database: Check::Never });
        let bad = PacmanConf::parse("[core]\nSigLevel = Sometimes\n", "p", &inc).unwrap();
        assert!(bad.siglevel(0).unwrap_err().to_string().contains("Sometimes"));
        assert!(PacmanConf::parse("Server = x\n", "p", &inc).unwrap_err().to_string().contains("outside any section"));
    }
}
