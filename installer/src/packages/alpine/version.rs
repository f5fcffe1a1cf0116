//! Alpine version comparison as apk-tools 2 (`version.c`): `digit{.digit}…{letter}{_suffix{#}}…{-r#}`
//! read as a sequence of typed tokens; leading zeros after a dot compare as fractions, the
//! suffixes `_alpha _beta _pre _rc` sort before the plain version and `_cvs _svn _git _hg _p`
//! after it, and when one version runs out, the longer one is newer unless what follows is
//! a pre-release suffix.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tok {
    Invalid = -1,
    DigitOrZero = 0,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    RevisionNo,
    End,
}

const PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

/// Decides the type of the next token from the byte(s) after a token ends, consuming a
/// separator (`.`, `_`, `-r`).
fn next_type(t: Tok, s: &mut &[u8]) -> Tok {
    let mut n = Tok::Invalid;
    match s.first() {
        None | Some(0) => n = Tok::End,
        Some(c) if matches!(t, Tok::Digit | Tok::DigitOrZero) && c.is_ascii_lowercase() => n = Tok::Letter,
        Some(c) if t == Tok::Letter && c.is_ascii_digit() => n = Tok::Digit,
        Some(c) if t == Tok::Suffix && c.is_ascii_digit() => n = Tok::SuffixNo,
        Some(&c) => {
            match c {
                b'.' => n = Tok::DigitOrZero,
                b'_' => n = Tok::Suffix,
                b'-' if s.get(1) == Some(&b'r') => {
                    n = Tok::RevisionNo;
                    *s = &s[1..];
                }
                _ => {}
            }
            *s = &s[1..];
        }
    }
    let allowed_back = matches!((n, t), (Tok::DigitOrZero, Tok::Digit) | (Tok::Suffix, Tok::SuffixNo) | (Tok::Digit, Tok::Letter));
    if n < t && !allowed_back {
        n = Tok::Invalid;
    }
    n
}

/// The value of the token of type `*t` at the start of `s`; advances and sets `*t` to the
/// next token's type.
fn token(t: &mut Tok, s: &mut &[u8]) -> i64 {
    if s.is_empty() {
        *t = Tok::End;
        return 0;
    }
    let mut v: i64 = 0;
    let mut i = 0;
    let mut forced = None;
    match *t {
        // A component after a dot that starts with zeros and goes on with digits compares
        // as a fraction: the zeros count negatively, the rest is the next number.
        Tok::DigitOrZero if s[0] == b'0' && s.iter().position(|&c| c != b'0').is_some_and(|k| s[k].is_ascii_digit()) => {
            while s[i] == b'0' {
                i += 1;
            }
            forced = Some(Tok::Digit);
            v = -(i as i64);
        }
        Tok::DigitOrZero | Tok::Digit | Tok::SuffixNo | Tok::RevisionNo => {
            while i < s.len() && s[i].is_ascii_digit() {
                v = v.saturating_mul(10).saturating_add((s[i] - b'0') as i64);
                i += 1;
            }
        }
        Tok::Letter => {
            v = s[0] as i64;
            i = 1;
        }
        Tok::Suffix => {
            if let Some((k, w)) = PRE.iter().enumerate().find(|(_, w)| s.starts_with(w.as_bytes())) {
                v = k as i64 - PRE.len() as i64;
                i = w.len();
            } else if let Some((k, w)) = POST.iter().enumerate().find(|(_, w)| s.starts_with(w.as_bytes())) {
                v = k as i64;
                i = w.len();
            } else {
                *t = Tok::Invalid;
                return -1;
            }
        }
        _ => {
            *t = Tok::Invalid;
            return -1;
        }
    }
    *s = &s[i..];
    if s.is_empty() {
        *t = Tok::End;
    } else if let Some(f) = forced {
        *t = f;
    } else {
        *t = next_type(*t, s);
    }
    v
}

/// Compares two Alpine versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let (mut at, mut bt) = (Tok::Digit, Tok::Digit);
    let (mut av, mut bv) = (0, 0);
    while at == bt && at != Tok::End && at != Tok::Invalid && av == bv {
        av = token(&mut at, &mut a);
        bv = token(&mut bt, &mut b);
    }
    if av != bv {
        return av.cmp(&bv);
    }
    if at == bt {
        return Ordering::Equal;
    }
    // Equal so far: the longer version is newer, unless it goes on with a pre-release.
    let mut tt = at;
    if at == Tok::Suffix && token(&mut tt, &mut a) < 0 {
        return Ordering::Less;
    }
    let mut tt = bt;
    if bt == Tok::Suffix && token(&mut tt, &mut b) < 0 {
        return Ordering::Greater;
    }
    bt.cmp(&at)
}

/// Whether `v` is a well-formed Alpine version.
pub fn valid(v: &str) -> bool {
    let mut s = v.as_bytes();
    let mut t = Tok::Digit;
    while t != Tok::End {
        token(&mut t, &mut s);
        if t == Tok::Invalid {
            return false;
        }
    }
    !v.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_orderings() {
        // apk(8) / APKBUILD(5) orderings: pre-release suffixes, the plain version, post-release
        // suffixes, letters, then the next number; revisions last.
        let chain = ["1.0_alpha1", "1.0_alpha2", "1.0_beta1", "1.0_pre1", "1.0_rc1", "1.0", "1.0-r1", "1.0-r2", "1.0_p1", "1.0a", "1.0.1", "1.1", "1.2.9", "1.2.10", "2"];
        for (i, a) in chain.iter().enumerate() {
            assert_eq!(compare(a, a), Ordering::Equal, "{a}");
            for b in &chain[i + 1..] {
                assert_eq!(compare(a, b), Ordering::Less, "{a} < {b}");
                assert_eq!(compare(b, a), Ordering::Greater, "{b} > {a}");
            }
        }
        assert_eq!(compare("1.01", "1.1"), Ordering::Less, "a leading zero after a dot is a fraction");
        assert_eq!(compare("1.001", "1.01"), Ordering::Less);
        assert_eq!(compare("1.0.0", "1.0.0-r0"), Ordering::Less);
        assert_eq!(compare("1.0_git20240101", "1.0"), Ordering::Greater);
        assert!(valid("1.36.1-r29") && valid("2.14.4_p3-r0") && valid("0.9a_rc2"));
        assert!(!valid("1.0-1") && !valid("1.0_foo") && !valid(""));
    }
}
