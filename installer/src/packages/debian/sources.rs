//! APT sources: where a suite lives. Read from the building host's apt configuration (so no
//! mirror is ever named in our code), given on the command line as one-line entries, and
//! written into the target as a deb822 `.sources` file with `Signed-By` (sources.list(5)).

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::control::parse_all;

/// One repository: a base URI, a suite (distribution) and components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Base URI without a trailing slash (`http://host/debian`).
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
}

impl Source {
    /// Parses `URI [SUITE [COMPONENT…]]`; the suite defaults to `default_suite` and the
    /// components to `main`.
    pub fn parse(spec: &str, default_suite: &str) -> Result<Source> {
        let mut f = spec.split_whitespace();
        let uri = f.next().context("an empty mirror specification")?;
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            bail!("the mirror {uri:?} is not an http:// or https:// URL");
        }
        let suite = f.next().unwrap_or(default_suite).to_string();
        let mut components: Vec<String> = f.map(str::to_string).collect();
        if components.is_empty() {
            components.push("main".into());
        }
        Ok(Source { uri: uri.trim_end_matches('/').to_string(), suite, components })
    }

    /// `URI/dists/SUITE/`
    pub fn dists(&self) -> String {
        format!("{}/dists/{}", self.uri, self.suite)
    }
}

/// Every `deb` entry of the host's apt configuration (`/etc/apt/sources.list`,
/// `sources.list.d/*.list` and `*.sources`) under `etc_apt`.
pub fn host_sources(etc_apt: &Path) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let list = etc_apt.join("sources.list");
    if list.is_file() {
        out.extend(one_line(&std::fs::read_to_string(&list)?));
    }
    let dir = etc_apt.join("sources.list.d");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let text = || std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()));
            match p.extension().and_then(|e| e.to_str()) {
                Some("list") => out.extend(one_line(&text()?)),
                Some("sources") => out.extend(deb822(&text()?, &p.display().to_string())?),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The host's sources for `suite` and its companions (`SUITE-updates`, `SUITE-security`,
/// `SUITE/updates`): the default mirror set of a bootstrap.
pub fn host_sources_for(etc_apt: &Path, suite: &str) -> Result<Vec<Source>> {
    let family = [suite.to_string(), format!("{suite}-updates"), format!("{suite}-security"), format!("{suite}/updates")];
    let all = host_sources(etc_apt)?;
    let picked: Vec<Source> = all.iter().filter(|s| family.contains(&s.suite)).cloned().collect();
    if !picked.iter().any(|s| s.suite == suite) {
        let seen: Vec<String> = all.iter().map(|s| format!("{} {}", s.uri, s.suite)).collect();
        bail!("the host's apt sources ({}) have no entry for the suite {suite:?} (they have: {}); give --mirror URL", etc_apt.display(), if seen.is_empty() { "none".into() } else { seen.join(", ") });
    }
    Ok(picked)
}

fn one_line(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut f = line.split_whitespace().peekable();
        if f.next() != Some("deb") {
            continue;
        }
        // Options: `[arch=amd64 signed-by=…]`.
        if f.peek().is_some_and(|w| w.starts_with('[')) {
            for w in f.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        let rest: Vec<&str> = f.collect();
        if let [uri, suite, comps @ ..] = &rest[..] {
            out.push(Source { uri: uri.trim_end_matches('/').to_string(), suite: suite.to_string(), components: comps.iter().map(|c| c.to_string()).collect() });
        }
    }
    out
}

fn deb822(text: &str, what: &str) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for p in parse_all(text, what)? {
        let types = p.get("Types").unwrap_or("");
        if !types.split_whitespace().any(|t| t == "deb") || p.get("Enabled") == Some("no") {
            continue;
        }
        let comps: Vec<String> = p.get("Components").unwrap_or("").split_whitespace().map(str::to_string).collect();
        for uri in p.get("URIs").unwrap_or("").split_whitespace() {
            for suite in p.get("Suites").unwrap_or("").split_whitespace() {
                out.push(Source { uri: uri.trim_end_matches('/').to_string(), suite: suite.to_string(), components: comps.clone() });
            }
        }
    }
    Ok(out)
}

/// The deb822 `.sources` text for the target: one stanza per base URI (suites and
/// components merged in order), each `Signed-By` the given keyring path.
pub fn render_deb822(sources: &[Source], signed_by: &str) -> String {
    let mut uris: Vec<&str> = Vec::new();
    for s in sources {
        if !uris.contains(&s.uri.as_str()) {
            uris.push(&s.uri);
        }
    }
    let mut out = String::new();
    for uri in uris {
        let mut suites: Vec<&str> = Vec::new();
        let mut comps: Vec<&str> = Vec::new();
        for s in sources.iter().filter(|s| s.uri == uri) {
            if !suites.contains(&s.suite.as_str()) {
                suites.push(&s.suite);
            }
            for c in &s.components {
                if !comps.contains(&c.as_str()) {
                    comps.push(c);
                }
            }
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("Types: deb\nURIs: {uri}\nSuites: {}\nComponents: {}\nSigned-By: {signed_by}\n", suites.join(" "), comps.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_host_style_configuration() {
        let dir = std::env::temp_dir().join(format!("anemos-sources-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sources.list.d")).unwrap();
        std::fs::write(dir.join("sources.list"), "deb [arch=amd64] http://m.invalid/debian/ bookworm main contrib # x\ndeb-src http://m.invalid/debian bookworm main\n").unwrap();
        std::fs::write(
            dir.join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://s.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb\nURIs: http://o.invalid/x\nSuites: other\nComponents: main\n",
        )
        .unwrap();
        let s = host_sources_for(&dir, "bookworm").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], Source { uri: "http://m.invalid/debian".into(), suite: "bookworm".into(), components: vec!["main".into(), "contrib".into()] });
        assert_eq!(s[1].suite, "bookworm-security");
        assert!(host_sources_for(&dir, "trixie").unwrap_err().to_string().contains("no entry for the suite"));
        let text = render_deb822(&s, "/k.gpg");
        assert!(text.starts_with("Types: deb\nURIs: http://m.invalid/debian\nSuites: bookworm\nComponents: main contrib\nSigned-By: /k.gpg\n\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn command_line_specs() {
        let s = Source::parse("http://h.invalid/debian/", "bookworm").unwrap();
        assert_eq!((s.uri.as_str(), s.suite.as_str(), s.components.len()), ("http://h.invalid/debian", "bookworm", 1));
        let s = Source::parse("https://h.invalid/ds bookworm-security main non-free-firmware", "x").unwrap();
        assert_eq!(s.components, ["main", "non-free-firmware"]);
        assert!(Source::parse("ftp://h/", "x").is_err());
    }
}
