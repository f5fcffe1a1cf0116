//! Debian version numbers and their ordering, exactly as dpkg orders them
//! (`lib/dpkg/version.c`: `dpkg_version_compare` and `verrevcmp`; deb-version(7)).
//!
//! A version is `[epoch:]upstream[-revision]`. Epochs compare as numbers; the upstream part and
//! the revision compare with the same rule: alternating runs of non-digits (compared char by
//! char, `~` before everything, even the end, and letters before other characters) and digits
//! (compared as numbers).

use std::cmp::Ordering;

/// A parsed version; `Ord` is dpkg's ordering.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub epoch: u32,
    pub upstream: String,
    pub revision: String,
}

impl Version {
    /// Parses `[epoch:]upstream[-revision]` as dpkg's `parseversion` does: the epoch ends at
    /// the first colon, the revision starts after the last hyphen.
    pub fn parse(s: &str) -> anyhow::Result<Version> {
        let s = s.trim();
        anyhow::ensure!(!s.is_empty(), "empty version string");
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => {
                let epoch = e.parse::<u32>().map_err(|_| anyhow::anyhow!("version {s:?}: epoch {e:?} is not a number"))?;
                (epoch, rest)
            }
            None => (0, s),
        };
        let (upstream, revision) = match rest.rfind('-') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        anyhow::ensure!(!upstream.is_empty(), "version {s:?}: empty upstream version");
        anyhow::ensure!(upstream.as_bytes()[0].is_ascii_digit(), "version {s:?}: the upstream version must start with a digit");
        Ok(Version { epoch, upstream: upstream.to_string(), revision: revision.to_string() })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch.cmp(&other.epoch).then_with(|| verrevcmp(self.upstream.as_bytes(), other.upstream.as_bytes())).then_with(|| verrevcmp(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// dpkg's `order()`: digits (and the end) 0, letters themselves, `~` −1, others after letters.
fn order(c: u8) -> i32 {
    match c {
        b'0'..=b'9' | 0 => 0,
        b'a'..=b'z' | b'A'..=b'Z' => c as i32,
        b'~' => -1,
        c => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`, on byte strings (a missing byte reads as 0, like C's terminator).
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0usize, 0usize);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0i32;
        while (at(a, i) != 0 && !at(a, i).is_ascii_digit()) || (at(b, j) != 0 && !at(b, j).is_ascii_digit()) {
            let (ac, bc) = (order(at(a, i)), order(at(b, j)));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while at(a, i) == b'0' {
            i += 1;
        }
        while at(b, j) == b'0' {
            j += 1;
        }
        while at(a, i).is_ascii_digit() && at(b, j).is_ascii_digit() {
            if first_diff == 0 {
                first_diff = at(a, i) as i32 - at(b, j) as i32;
            }
            i += 1;
            j += 1;
        }
        if at(a, i).is_ascii_digit() {
            return Ordering::Greater;
        }
        if at(b, j).is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

/// A version relation operator of a dependency field (deb-control(5)); `<` and `>` are the
/// obsolete spellings of `<=` and `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }

    /// Whether `have OP want` holds.
    pub fn holds(self, have: &Version, want: &Version) -> bool {
        let o = have.cmp(want);
        match self {
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Eq => o == Ordering::Equal,
            Op::Ge => o != Ordering::Less,
            Op::Gt => o == Ordering::Greater,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        Version::parse(a).unwrap().cmp(&Version::parse(b).unwrap())
    }

    #[test]
    fn dpkg_examples() {
        assert_eq!(cmp("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(cmp("1.0", "1.0-0"), Ordering::Equal);
        assert_eq!(cmp("1:1.0", "2.0"), Ordering::Greater);
        assert_eq!(cmp("1.0a", "1.0+"), Ordering::Less);
        assert_eq!(cmp("1.0-1~bpo1", "1.0-1"), Ordering::Less);
        assert_eq!(cmp("2.36-9+deb12u4", "2.36-9+deb12u10"), Ordering::Less);
        assert_eq!(cmp("1.001", "1.1"), Ordering::Equal);
        assert_eq!(cmp("1.0~~", "1.0~"), Ordering::Less);
        assert_eq!(cmp("1-2-3", "1-2"), Ordering::Greater);
        assert_eq!(Version::parse("1-2-3").unwrap().upstream, "1-2");
    }

    #[test]
    fn bad_versions() {
        assert!(Version::parse("").is_err());
        assert!(Version::parse("a1").is_err());
        assert!(Version::parse("x:1").is_err());
    }

    #[test]
    fn operators() {
        let v = |s| Version::parse(s).unwrap();
        assert!(Op::parse(">=").unwrap().holds(&v("1.2"), &v("1.2")));
        assert!(!Op::parse(">>").unwrap().holds(&v("1.2"), &v("1.2")));
        assert!(Op::parse("<<").unwrap().holds(&v("1.2~"), &v("1.2")));
        assert!(Op::parse("<").unwrap().holds(&v("1.2"), &v("1.2")));
    }
}
