//! APKINDEX records (apk-tools `apk_pkg_add_info`, the same letters `/lib/apk/db/installed`
//! uses): one `X:value` per line, records separated by an empty line. `C:` is `Q1` and the
//! base64 SHA-1 of the package's control segment, `S:` the `.apk` size, `D:` the
//! space-separated dependencies (`name`, `name>=1.2`, `so:libc.musl-x86_64.so.1`, `/bin/sh`,
//! `!conflict`), `p:` the provisions (`cmd:sh=1.36.1-r0`), `i:` install-if conditions,
//! `k:` the provider priority.

use anyhow::{bail, Context, Result};

use super::version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Any,
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    /// `~`: the version starts with the given one (apk's fuzzy match).
    Fuzzy,
}

/// One dependency, provision or install-if condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub op: Op,
    pub version: String,
    /// `!name`: must not be installed.
    pub conflict: bool,
}

impl Dep {
    pub fn parse(s: &str) -> Result<Dep> {
        let (conflict, s) = match s.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let Some(i) = s.find(['<', '>', '=', '~']) else {
            if s.is_empty() {
                bail!("an empty dependency");
            }
            return Ok(Dep { name: s.to_string(), op: Op::Any, version: String::new(), conflict });
        };
        let rest = &s[i..];
        let (op, n) = match rest.as_bytes() {
            [b'>', b'=', ..] => (Op::Ge, 2),
            [b'<', b'=', ..] => (Op::Le, 2),
            [b'=', b'~', ..] | [b'~', b'=', ..] => (Op::Fuzzy, 2),
            [b'>', ..] => (Op::Gt, 1),
            [b'<', ..] => (Op::Lt, 1),
            [b'~', ..] => (Op::Fuzzy, 1),
            _ => (Op::Eq, 1),
        };
        let (name, v) = (&s[..i], &rest[n..]);
        if name.is_empty() || v.is_empty() || !version::valid(v) {
            bail!("bad dependency {s:?}");
        }
        Ok(Dep { name: name.to_string(), op, version: v.to_string(), conflict })
    }

    /// Whether `have` satisfies the version part.
    pub fn version_ok(&self, have: &str) -> bool {
        use std::cmp::Ordering::*;
        let c = || version::compare(have, &self.version);
        match self.op {
            Op::Any => true,
            Op::Eq => c() == Equal,
            Op::Lt => c() == Less,
            Op::Le => c() != Greater,
            Op::Gt => c() == Greater,
            Op::Ge => c() != Less,
            Op::Fuzzy => have == self.version || (have.starts_with(&self.version) && !have.as_bytes()[self.version.len()].is_ascii_digit()),
        }
    }
}

impl std::fmt::Display for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Op::Any => "",
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Fuzzy => "~",
        };
        write!(f, "{}{}{op}{}", if self.conflict { "!" } else { "" }, self.name, self.version)
    }
}

/// One package of an index.
#[derive(Debug, Clone, Default)]
pub struct Package {
    /// Index of its repository in the configuration.
    pub repo: usize,
    /// `C:` as written (`Q1…`).
    pub checksum: String,
    pub name: String,
    pub version: String,
    pub arch: String,
    pub size: u64,
    pub installed_size: u64,
    pub description: String,
    pub url: String,
    pub license: String,
    pub origin: String,
    pub maintainer: String,
    pub build_time: String,
    pub commit: String,
    pub provider_priority: Option<u32>,
    pub depends: Vec<Dep>,
    pub provides: Vec<Dep>,
    pub install_if: Vec<Dep>,
    /// The record's lines, for writing the installed database.
    pub raw: Vec<(char, String)>,
}

impl Package {
    /// The SHA-1 of the control segment, decoded from `C:` (`Q1` + base64).
    pub fn control_sha1(&self) -> Result<Option<[u8; 20]>> {
        use base64::Engine;
        let Some(b64) = self.checksum.strip_prefix("Q1") else {
            return Ok(None);
        };
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).with_context(|| format!("package {}: C:{} is not base64", self.name, self.checksum))?;
        Ok(Some(raw.try_into().map_err(|_| anyhow::anyhow!("package {}: C: is not a SHA-1", self.name))?))
    }

    /// `NAME-VERSION.apk`, its file name in the repository.
    pub fn file_name(&self) -> String {
        format!("{}-{}.apk", self.name, self.version)
    }

    /// Whether this package satisfies `dep` by name or by a provision (an unversioned
    /// provision satisfies only unversioned dependencies).
    pub fn satisfies(&self, dep: &Dep) -> bool {
        if self.name == dep.name {
            return dep.version_ok(&self.version);
        }
        self.provides.iter().any(|p| p.name == dep.name && (dep.op == Op::Any || (p.op == Op::Eq && dep.version_ok(&p.version))))
    }
}

/// Parses the text of an `APKINDEX` (or `/lib/apk/db/installed`, ignoring file lines).
pub fn parse(text: &str, origin: &str, repo: usize) -> Result<Vec<Package>> {
    let mut out = Vec::new();
    let mut p = Package { repo, ..Package::default() };
    for (n, line) in text.lines().chain(std::iter::once("")).enumerate() {
        if line.is_empty() {
            if !p.name.is_empty() {
                if p.version.is_empty() {
                    bail!("{origin}: the record of {} ending at line {} has no V:", p.name, n + 1);
                }
                out.push(std::mem::replace(&mut p, Package { repo, ..Package::default() }));
            }
            continue;
        }
        let (key, value) = match line.split_once(':') {
            Some((k, v)) if k.len() == 1 => (k.chars().next().unwrap_or(' '), v),
            _ => bail!("{origin}:{}: not a `X:value` line: {line:?}", n + 1),
        };
        let at = || format!("{origin}:{}", n + 1);
        let deps = |v: &str| v.split_whitespace().map(Dep::parse).collect::<Result<Vec<_>>>().with_context(at);
        let num = |v: &str| v.parse::<u64>().with_context(|| format!("{}: {key}:{v} is not a number", at()));
        match key {
            'C' => p.checksum = value.to_string(),
            'P' => p.name = value.to_string(),
            'V' => p.version = value.to_string(),
            'A' => p.arch = value.to_string(),
            'S' => p.size = num(value)?,
            'I' => p.installed_size = num(value)?,
            'T' => p.description = value.to_string(),
            'U' => p.url = value.to_string(),
            'L' => p.license = value.to_string(),
            'o' => p.origin = value.to_string(),
            'm' => p.maintainer = value.to_string(),
            't' => p.build_time = value.to_string(),
            'c' => p.commit = value.to_string(),
            'k' => p.provider_priority = Some(num(value)? as u32),
            'D' => p.depends = deps(value)?,
            'p' => p.provides = deps(value)?,
            'i' => p.install_if = deps(value)?,
            _ => {}
        }
        p.raw.push((key, value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "C:Q1k5tKnKtrj3+qm8Hz9kIEAIcYb+I=\nP:busybox\nV:1.36.1-r29\nA:x86_64\nS:509134\nI:950272\nT:Size optimized toolbox\nU:https://busybox.net/\nL:GPL-2.0-only\no:busybox\nm:Someone <a@b.invalid>\nt:1718000000\nc:abcdef\nD:so:libc.musl-x86_64.so.1\np:cmd:busybox=1.36.1-r29 cmd:sh=1.36.1-r29 /bin/sh\n\nC:Q1xxxx\nP:hello\nV:2.0-r1\nA:x86_64\nS:10\nI:20\nD:busybox>=1.36 !hello-old /bin/sh so:libc.musl-x86_64.so.1\ni:docs hello=2.0-r1\nk:10\n";

    #[test]
    fn parses_records_and_dependencies() {
        let pkgs = parse(INDEX, "APKINDEX", 2).unwrap();
        assert_eq!(pkgs.len(), 2);
        let b = &pkgs[0];
        assert_eq!((b.name.as_str(), b.version.as_str(), b.size, b.repo), ("busybox", "1.36.1-r29", 509134, 2));
        assert_eq!(b.provides.iter().map(|d| d.to_string()).collect::<Vec<_>>(), ["cmd:busybox=1.36.1-r29", "cmd:sh=1.36.1-r29", "/bin/sh"]);
        assert_eq!(b.control_sha1().unwrap().map(hex::encode).as_deref(), Some("939b4a9cab6b8f7faa9bc1f3f642040087186fe2"));
        let h = &pkgs[1];
        assert!(h.depends[1].conflict && h.depends[1].name == "hello-old");
        assert_eq!(h.install_if.len(), 2);
        assert_eq!(h.provider_priority, Some(10));
        assert!(b.satisfies(&Dep::parse("/bin/sh").unwrap()));
        assert!(b.satisfies(&Dep::parse("cmd:sh>=1.36").unwrap()));
        assert!(!b.satisfies(&Dep::parse("busybox>=1.37").unwrap()));
        assert!(b.satisfies(&Dep::parse("busybox~1.36").unwrap()));
        assert!(!b.satisfies(&Dep::parse("busybox~1.3").unwrap()));
        assert!(!b.satisfies(&Dep::parse("/bin/sh=1").unwrap()), "an unversioned provision");
        assert!(parse("P:x\n\n", "i", 0).unwrap_err().to_string().contains("no V:"));
        assert!(parse("Px\n", "i", 0).is_err());
        assert!(Dep::parse("a>=1.0-1").is_err());
    }
}
