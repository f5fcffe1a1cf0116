//! Relationship fields (deb-control(5), "Declaring relationships between packages"):
//! `Depends: a (>= 1.2) | b:any, c` — comma-separated groups of `|` alternatives, each a
//! package name with an optional architecture qualifier and version relation. Architecture
//! lists `[...]` and build profiles `<...>` belong to source packages; they are skipped.

use anyhow::{bail, Context, Result};

use super::version::{Op, Version};

/// The `:qualifier` of a relation (multi-arch spec).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ArchQual {
    /// No qualifier: the depending package's own architecture (or `all`).
    None,
    /// `:any`: any architecture, for `Multi-Arch: allowed` targets.
    Any,
    /// `:native`: the native architecture.
    Native,
    /// An explicit architecture name.
    Arch(String),
}

/// One alternative: `name[:qual] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relation {
    pub name: String,
    pub arch: ArchQual,
    pub version: Option<(Op, Version)>,
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        match &self.arch {
            ArchQual::None => {}
            ArchQual::Any => f.write_str(":any")?,
            ArchQual::Native => f.write_str(":native")?,
            ArchQual::Arch(a) => write!(f, ":{a}")?,
        }
        if let Some((op, v)) = &self.version {
            write!(f, " ({} {v})", op.as_str())?;
        }
        Ok(())
    }
}

/// A group of alternatives, any one of which satisfies it.
pub type Alternatives = Vec<Relation>;

/// Parses a whole field into groups of alternatives.
pub fn parse_field(value: &str) -> Result<Vec<Alternatives>> {
    let mut out = Vec::new();
    for group in value.split(',') {
        if group.trim().is_empty() {
            continue;
        }
        let alts = group.split('|').map(parse_relation).collect::<Result<Vec<_>>>().with_context(|| format!("in the relation {:?}", group.trim()))?;
        out.push(alts);
    }
    Ok(out)
}

/// Parses a field whose groups may not have alternatives (Provides, Conflicts, Breaks).
pub fn parse_flat(value: &str) -> Result<Vec<Relation>> {
    let groups = parse_field(value)?;
    let mut out = Vec::new();
    for g in groups {
        if g.len() != 1 {
            bail!("alternatives (`|`) are not allowed here: {value:?}");
        }
        out.extend(g);
    }
    Ok(out)
}

fn parse_relation(s: &str) -> Result<Relation> {
    // Drop architecture restrictions and build profiles (source-package syntax).
    let mut s = s.to_string();
    for (open, close) in [('[', ']'), ('<', '>')] {
        while let Some(start) = s.find(open) {
            // `<` inside a version relation is an operator, not a profile.
            if open == '<' && s[..start].contains('(') && !s[..start].contains(')') {
                break;
            }
            let end = s[start..].find(close).map(|e| start + e + 1).unwrap_or(s.len());
            s.replace_range(start..end, "");
        }
    }
    let s = s.trim();
    let (head, version) = match s.find('(') {
        Some(i) => {
            let close = s.rfind(')').with_context(|| format!("unclosed `(` in {s:?}"))?;
            (s[..i].trim(), Some(s[i + 1..close].trim()))
        }
        None => (s, None),
    };
    if head.is_empty() || head.contains(char::is_whitespace) {
        bail!("bad package name {head:?}");
    }
    let (name, arch) = match head.split_once(':') {
        Some((n, "any")) => (n, ArchQual::Any),
        Some((n, "native")) => (n, ArchQual::Native),
        Some((n, a)) => (n, ArchQual::Arch(a.to_string())),
        None => (head, ArchQual::None),
    };
    let version = match version {
        None => None,
        Some(v) => {
            let split = v.find(|c: char| !"<>=".contains(c)).unwrap_or(v.len());
            let op = Op::parse(&v[..split]).with_context(|| format!("bad version operator in {v:?}"))?;
            Some((op, Version::parse(&v[split..])?))
        }
    };
    Ok(Relation { name: name.to_string(), arch, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alternatives_and_versions() {
        let f = parse_field("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, perl:any, python3:native (<<3.12~)").unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0][0].name, "libc6");
        assert_eq!(f[0][0].version.as_ref().unwrap().0, Op::Ge);
        assert_eq!(f[1].len(), 2);
        assert_eq!(f[1][1].name, "debconf-2.0");
        assert_eq!(f[2][0].arch, ArchQual::Any);
        assert_eq!(f[3][0].arch, ArchQual::Native);
        assert_eq!(f[3][0].to_string(), "python3:native (<< 3.12~)");
    }

    #[test]
    fn skips_source_syntax_and_rejects_garbage() {
        let f = parse_field("foo [amd64] <!nocheck>, bar (<< 2) [i386]").unwrap();
        assert_eq!(f[0][0].name, "foo");
        assert_eq!(f[1][0].version.as_ref().unwrap().0, Op::Lt);
        assert!(parse_field("foo (~~ 1)").is_err());
        assert!(parse_field("foo bar").is_err());
        assert!(parse_flat("a | b").is_err());
        assert_eq!(parse_flat("mail-transport-agent, x (= 1.0)").unwrap().len(), 2);
    }
}
