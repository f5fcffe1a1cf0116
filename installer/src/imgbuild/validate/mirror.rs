//! `mirror=` and `security_mirror=`, or, when unset, the building host's own package-manager
//! configuration: apt sources (deb822 `*.sources` per sources.list(5), and one-line
//! `sources.list`), pacman's mirrorlist, or apk's `repositories`. No mirror host is written
//! into anemos itself; the plan records where the mirror came from.

use std::path::Path;

use super::Ctx;
use crate::plan::{Mirror, MirrorOrigin, Target};

pub fn mirror(cx: &mut Ctx<'_>, target: &Target, host_root: &Path, from_command_line: Option<(&str, Option<&str>)>) -> Option<Mirror> {
    if let Some((url, security)) = from_command_line {
        return command_line(cx, target, url, security);
    }
    let security = cx.get("security_mirror").map(|s| s.trim().to_string());
    if security.is_some() && !matches!(target, Target::Debian { .. }) {
        cx.warn("security_mirror", "security_mirror is only used when target=debian");
    }
    if let Some(s) = &security {
        if !is_url(s) {
            cx.error("security_mirror", format!("security_mirror={s:?}: not an http://, https:// or file:// URL"));
            return None;
        }
    }
    if let Some(url) = cx.get("mirror").map(|s| s.trim().to_string()) {
        let url = match normalise(target, &url) {
            Ok(u) => u,
            Err(e) => {
                cx.error("mirror", format!("mirror={url:?}: {e}"));
                return None;
            }
        };
        let origin = MirrorOrigin::Imgbuild { line: cx.pre.line_of("mirror") };
        return Some(Mirror { url, security_url: security, origin });
    }
    match host_mirror(target, host_root) {
        Some(mut m) => {
            if security.is_some() {
                m.security_url = security;
            }
            Some(m)
        }
        None => {
            let (name, file) = match target {
                Target::Debian { .. } => ("debian", "apt sources in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"),
                Target::Arch => ("arch", "Server = line in /etc/pacman.d/mirrorlist"),
                Target::Alpine => ("alpine", "repository in /etc/apk/repositories"),
            };
            cx.error("mirror", format!("no package mirror for {name}: this host has no {file}; set mirror= in the IMGBUILD"));
            None
        }
    }
}

/// `--mirror` and `--security-mirror`: checked as the IMGBUILD's would be.
fn command_line(cx: &mut Ctx<'_>, target: &Target, url: &str, security: Option<&str>) -> Option<Mirror> {
    let url = match normalise(target, url.trim()) {
        Ok(u) => u,
        Err(e) => {
            cx.error("mirror", format!("--mirror {url:?}: {e}"));
            return None;
        }
    };
    if let Some(s) = security.filter(|s| !is_url(s.trim())) {
        cx.error("security_mirror", format!("--security-mirror {s:?}: not an http://, https:// or file:// URL"));
        return None;
    }
    let security_url = security.map(|s| s.trim().trim_end_matches('/').to_string());
    Some(Mirror { url, security_url, origin: MirrorOrigin::CommandLine })
}

fn is_url(s: &str) -> bool {
    ["http://", "https://", "file://"].iter().any(|p| s.len() > p.len() && s.starts_with(p)) && !s.contains(char::is_whitespace)
}

/// Checks a `mirror=` value and brings it to the plan's form for the target.
fn normalise(target: &Target, url: &str) -> Result<String, String> {
    if !is_url(url) {
        return Err("not an http://, https:// or file:// URL".into());
    }
    match target {
        Target::Arch if url.contains("$repo") => Ok(url.to_string()),
        Target::Arch if url.contains("//os/") || url.ends_with("/os") => {
            Err("looks like the shell expanded $repo and $arch to nothing; write the URL in single quotes, or give only the mirror's root".into())
        }
        Target::Arch => Ok(format!("{}/$repo/os/$arch", url.trim_end_matches('/'))),
        _ => Ok(url.trim_end_matches('/').to_string()),
    }
}

/// The mirror the building host itself uses for `target`, if its configuration has one.
pub fn host_mirror(target: &Target, root: &Path) -> Option<Mirror> {
    match target {
        Target::Debian { .. } => apt_mirror(root),
        Target::Arch => first_line(root, "etc/pacman.d/mirrorlist", |l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "Server" && is_url(v.trim())).then(|| v.trim().to_string())
        }),
        Target::Alpine => first_line(root, "etc/apk/repositories", |l| {
            // A tagged repository (`@testing URL`) is not the main one.
            if l.starts_with('@') || !is_url(l) {
                return None;
            }
            let mut parts: Vec<&str> = l.trim_end_matches('/').split('/').collect();
            // …/alpine/v3.20/main → …/alpine
            if parts.len() > 4 && (parts[parts.len() - 2].starts_with('v') || parts[parts.len() - 2] == "edge") {
                parts.truncate(parts.len() - 2);
            }
            Some(parts.join("/"))
        }),
    }
}

fn first_line(root: &Path, rel: &str, pick: impl Fn(&str) -> Option<String>) -> Option<Mirror> {
    let text = std::fs::read_to_string(root.join(rel)).ok()?;
    let url = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).find_map(pick)?;
    Some(Mirror { url, security_url: None, origin: MirrorOrigin::Host { file: format!("/{rel}") } })
}

/// One apt source: its URI, its suites, and the file it is in.
struct AptSource {
    uri: String,
    suites: Vec<String>,
    file: String,
}

fn apt_mirror(root: &Path) -> Option<Mirror> {
    let mut sources = Vec::new();
    let dir = root.join("etc/apt/sources.list.d");
    let mut files: Vec<_> = std::fs::read_dir(&dir).into_iter().flatten().filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    sources.extend(one_line_sources(root, "etc/apt/sources.list"));
    for f in files {
        let rel = format!("etc/apt/sources.list.d/{f}");
        if f.ends_with(".sources") {
            sources.extend(deb822_sources(root, &rel));
        } else if f.ends_with(".list") {
            sources.extend(one_line_sources(root, &rel));
        }
    }
    let is_security = |s: &str| s.ends_with("-security") || s.ends_with("/updates");
    let usable = |s: &&AptSource| s.uri.starts_with("http://") || s.uri.starts_with("https://");
    let main = sources.iter().filter(usable).find(|s| s.suites.iter().any(|x| !is_security(x)))?;
    let security = sources.iter().filter(usable).find(|s| s.suites.iter().any(|x| is_security(x))).map(|s| s.uri.trim_end_matches('/').to_string());
    Some(Mirror { url: main.uri.trim_end_matches('/').to_string(), security_url: security, origin: MirrorOrigin::Host { file: format!("/{}", main.file) } })
}

/// deb822 stanzas (sources.list(5)): `Types: deb`, `URIs:`, `Suites:`, `Enabled: no`.
fn deb822_sources(root: &Path, rel: &str) -> Vec<AptSource> {
    let Ok(text) = std::fs::read_to_string(root.join(rel)) else { return Vec::new() };
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let types = field("Types").unwrap_or_default();
        if !types.split_whitespace().any(|t| t == "deb") || field("Enabled").is_some_and(|e| e.eq_ignore_ascii_case("no")) {
            continue;
        }
        let suites: Vec<String> = field("Suites").unwrap_or_default().split_whitespace().map(String::from).collect();
        for uri in field("URIs").unwrap_or_default().split_whitespace() {
            out.push(AptSource { uri: uri.to_string(), suites: suites.clone(), file: rel.to_string() });
        }
    }
    out
}

/// One-line sources: `deb [options] URI SUITE [COMPONENT…]`.
fn one_line_sources(root: &Path, rel: &str) -> Vec<AptSource> {
    let Ok(text) = std::fs::read_to_string(root.join(rel)) else { return Vec::new() };
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ").or_else(|| line.strip_prefix("deb\t")) else { continue };
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']').map(|(_, r)| r).unwrap_or(""),
            None => rest,
        };
        let mut w = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (w.next(), w.next()) {
            out.push(AptSource { uri: uri.to_string(), suites: vec![suite.to_string()], file: rel.to_string() });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host root holding `files`, removed when the guard drops.
    fn host(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::Builder::new().prefix("anemos-mirror-").tempdir().unwrap();
        for (p, t) in files {
            std::fs::create_dir_all(dir.path().join(p).parent().unwrap()).unwrap();
            std::fs::write(dir.path().join(p), t).unwrap();
        }
        dir
    }

    #[test]
    fn apt_deb822_and_one_line() {
        let root = host(&[(
            "etc/apt/sources.list.d/debian.sources",
            "Types: deb\nURIs: http://mirror.test/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://security.test/debian-security\nSuites: bookworm-security\nComponents: main\n",
        )]);
        let m = host_mirror(&Target::Debian { suite: "stable".into() }, root.path()).unwrap();
        assert_eq!(m.url, "http://mirror.test/debian");
        assert_eq!(m.security_url.as_deref(), Some("http://security.test/debian-security"));
        assert_eq!(m.origin, MirrorOrigin::Host { file: "/etc/apt/sources.list.d/debian.sources".into() });
        let root = host(&[("etc/apt/sources.list", "# x\ndeb [arch=amd64 signed-by=/k.gpg] https://m.test/debian trixie main\n")]);
        assert_eq!(host_mirror(&Target::Debian { suite: "stable".into() }, root.path()).unwrap().url, "https://m.test/debian");
    }

    #[test]
    fn pacman_and_apk() {
        let root = host(&[("etc/pacman.d/mirrorlist", "#Server = http://no.test/\nServer = https://arch.test/$repo/os/$arch\n"), ("etc/apk/repositories", "https://apk.test/alpine/v3.20/main\n")]);
        assert_eq!(host_mirror(&Target::Arch, root.path()).unwrap().url, "https://arch.test/$repo/os/$arch");
        assert_eq!(host_mirror(&Target::Alpine, root.path()).unwrap().url, "https://apk.test/alpine");
        assert!(host_mirror(&Target::Debian { suite: "x".into() }, root.path()).is_none());
    }

    #[test]
    fn arch_mirrors_are_completed_or_caught() {
        assert_eq!(normalise(&Target::Arch, "https://a.test/archlinux/").unwrap(), "https://a.test/archlinux/$repo/os/$arch");
        assert!(normalise(&Target::Arch, "https://a.test/archlinux//os/").unwrap_err().contains("single quotes"));
        assert!(normalise(&Target::Alpine, "ftp://x").is_err());
    }
}
