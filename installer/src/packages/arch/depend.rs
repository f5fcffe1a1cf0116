//! Dependency strings (`name`, `name>=1.2-3`, `so-name=1-64`) as libalpm parses them
//! (`alpm_dep_from_string`: the first of `<`, `>`, `=` starts the operator) and whether a
//! package satisfies one (`_alpm_depcmp`): by its name and version, or by a provision — an
//! unversioned provision satisfies only unversioned dependencies.

use std::cmp::Ordering;
use std::fmt;

use anyhow::{bail, Result};

use super::db::Package;
use super::vercmp::vercmp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ge,
    Le,
    Gt,
    Lt,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Lt => "<",
        }
    }

    /// Whether `have` relates to `want` as this operator says.
    pub fn holds(self, have: &str, want: &str) -> bool {
        let c = vercmp(have, want);
        match self {
            Op::Eq => c == Ordering::Equal,
            Op::Ge => c != Ordering::Less,
            Op::Le => c != Ordering::Greater,
            Op::Gt => c == Ordering::Greater,
            Op::Lt => c == Ordering::Less,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depend {
    pub name: String,
    pub version: Option<(Op, String)>,
}

impl Depend {
    pub fn parse(s: &str) -> Result<Depend> {
        let s = s.trim();
        let Some(i) = s.find(['<', '>', '=']) else {
            if s.is_empty() {
                bail!("an empty dependency");
            }
            return Ok(Depend { name: s.to_string(), version: None });
        };
        let rest = &s[i..];
        let (op, len) = if rest.starts_with(">=") {
            (Op::Ge, 2)
        } else if rest.starts_with("<=") {
            (Op::Le, 2)
        } else if rest.starts_with('=') {
            (Op::Eq, 1)
        } else if rest.starts_with('>') {
            (Op::Gt, 1)
        } else {
            (Op::Lt, 1)
        };
        let (name, version) = (&s[..i], &rest[len..]);
        if name.is_empty() || version.is_empty() {
            bail!("the dependency {s:?} lacks a name or a version");
        }
        Ok(Depend { name: name.to_string(), version: Some((op, version.to_string())) })
    }

    /// Whether `p` satisfies this dependency, by name or by a provision.
    pub fn satisfied_by(&self, p: &Package) -> bool {
        if p.name == self.name {
            return self.version.as_ref().is_none_or(|(op, v)| op.holds(&p.version, v));
        }
        p.provides.iter().any(|prov| {
            prov.name == self.name
                && match (&self.version, &prov.version) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some((op, want)), Some((_, have))) => op.holds(have, want),
                }
        })
    }
}

impl fmt::Display for Depend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            None => f.write_str(&self.name),
            Some((op, v)) => write!(f, "{}{}{v}", self.name, op.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, provides: &[&str]) -> Package {
        Package { name: name.into(), version: version.into(), provides: provides.iter().map(|p| Depend::parse(p).unwrap()).collect(), ..Package::default() }
    }

    #[test]
    fn parse_and_satisfy() {
        let d = Depend::parse("libfoo>=1.2").unwrap();
        assert_eq!(d.version, Some((Op::Ge, "1.2".into())));
        assert_eq!(Depend::parse("a<2").unwrap().version.unwrap().0, Op::Lt);
        assert_eq!(Depend::parse("a<=2").unwrap().version.unwrap().0, Op::Le);
        assert!(Depend::parse(">=1").is_err());
        assert!(d.satisfied_by(&pkg("libfoo", "1.2-3", &[])), "the release is ignored when the dependency has none");
        assert!(!d.satisfied_by(&pkg("libfoo", "1.1-9", &[])));
        assert!(d.satisfied_by(&pkg("foo-ng", "9-1", &["libfoo=1.5"])));
        assert!(!d.satisfied_by(&pkg("foo-ng", "9-1", &["libfoo"])), "an unversioned provision satisfies only unversioned deps");
        assert!(Depend::parse("libfoo").unwrap().satisfied_by(&pkg("foo-ng", "9-1", &["libfoo"])));
        assert!(Depend::parse("sh=1:5").unwrap().satisfied_by(&pkg("sh", "1:5-2", &[])));
        assert!(!Depend::parse("x>1-2").unwrap().satisfied_by(&pkg("x", "1-2", &[])));
    }
}
