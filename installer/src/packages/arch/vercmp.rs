//! Version comparison exactly as pacman's `alpm_pkg_vercmp` (libalpm `version.c`, the
//! `vercmp(8)` tool): `[epoch:]version[-release]`, the epoch defaulting to 0, the release
//! compared only when both sides have one, and each part compared by RPM's `rpmvercmp`
//! algorithm: alternating runs of digits and letters, separators only counting by length.

use std::cmp::Ordering;

/// Compares two full versions (`1:2.3-4`) as pacman does.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (e1, v1, r1) = parse_evr(a);
    let (e2, v2, r2) = parse_evr(b);
    rpmvercmp(e1, e2).then_with(|| rpmvercmp(v1, v2)).then_with(|| match (r1, r2) {
        (Some(r1), Some(r2)) => rpmvercmp(r1, r2),
        _ => Ordering::Equal,
    })
}

/// `(epoch, version, release)`: the epoch is the leading digits before a `:` ("0" if there
/// are none), the release whatever follows the last `-` after the epoch.
fn parse_evr(evr: &str) -> (&str, &str, Option<&str>) {
    let digits = evr.bytes().take_while(u8::is_ascii_digit).count();
    let (epoch, rest) = if evr.as_bytes().get(digits) == Some(&b':') {
        let e = &evr[..digits];
        (if e.is_empty() { "0" } else { e }, &evr[digits + 1..])
    } else {
        ("0", evr)
    };
    match rest.rfind('-') {
        Some(i) => (epoch, &rest[..i], Some(&rest[i + 1..])),
        None => (epoch, rest, None),
    }
}

/// RPM's segment comparison, as libalpm carries it.
fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (si, sj) = (i, j);
        while i < a.len() && !a[i].is_ascii_alphanumeric() {
            i += 1;
        }
        while j < b.len() && !b[j].is_ascii_alphanumeric() {
            j += 1;
        }
        if i >= a.len() || j >= b.len() {
            break;
        }
        // Separators of different lengths decide.
        if i - si != j - sj {
            return (i - si).cmp(&(j - sj));
        }
        let numeric = a[i].is_ascii_digit();
        let class = |c: &u8| if numeric { c.is_ascii_digit() } else { c.is_ascii_alphabetic() };
        let ei = i + a[i..].iter().take_while(|c| class(c)).count();
        let ej = j + b[j..].iter().take_while(|c| class(c)).count();
        if ej == j {
            // Different kinds of segment: a number is newer than letters.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let (mut x, mut y) = (&a[i..ei], &b[j..ej]);
        if numeric {
            while x.first() == Some(&b'0') {
                x = &x[1..];
            }
            while y.first() == Some(&b'0') {
                y = &y[1..];
            }
            if x.len() != y.len() {
                return x.len().cmp(&y.len());
            }
        }
        match x.cmp(y) {
            Ordering::Equal => {}
            o => return o,
        }
        i = ei;
        j = ej;
    }
    let (rest_a, rest_b) = (&a[i.min(a.len())..], &b[j.min(b.len())..]);
    if rest_a.is_empty() && rest_b.is_empty() {
        return Ordering::Equal;
    }
    // A remaining letter segment never beats the end of a version ("1.0a" < "1.0"), a
    // remaining number does ("1.0.1" > "1.0").
    let a_alpha = rest_a.first().is_some_and(u8::is_ascii_alphabetic);
    let b_alpha = rest_b.first().is_some_and(u8::is_ascii_alphabetic);
    if (rest_a.is_empty() && !b_alpha) || a_alpha {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases in the style of pacman's test/util/vercmptest.sh, values as `vercmp` 6.0 prints.
    #[test]
    fn pacman_test_suite_cases() {
        let cases: &[(&str, &str, i32)] = &[
            ("1.5.0", "1.5.0", 0),
            ("1.5.1", "1.5.0", 1),
            ("1.5.1", "1.5", 1),
            ("1.5.0-1", "1.5.0-1", 0),
            ("1.5.0-1", "1.5.0-2", -1),
            ("1.5.0-1", "1.5.1-1", -1),
            ("1.5.0-2", "1.5.1-1", -1),
            ("1.5-1", "1.5", 0),
            ("1.5.a", "1.5", 1),
            ("1.5.b", "1.5.a", 1),
            ("1.5.1", "1.5.b", 1),
            ("1.5.b-1", "1.5.b", 0),
            ("1.5-1", "1.5.b", -1),
            ("1.0", "1.0_", -1),
            ("1.0a", "1.0", -1),
            ("1.0", "1.0a", 1),
            ("1.0.0", "1.0a", 1),
            ("1.0pre1", "1.0", -1),
            ("1.0", "1.0.a", -1),
            ("1.0.a", "1.0.1", -1),
            ("1.1", "1.1.0", -1),
            ("2:1.0", "1:1.0", 1),
            ("1:1.0", "1.0", 1),
            ("0:1.0", "1.0", 0),
            ("1.0-1", "1:1.0-1", -1),
            ("1.0+1", "1.0.1", 0),
            ("1.0..1", "1.0.1", 1),
            ("1.0.1", "1.0.01", 0),
            ("a", "1", -1),
            ("1.0.rc1", "1.0", 1),
        ];
        for &(a, b, want) in cases {
            assert_eq!(vercmp(a, b) as i32, want, "vercmp {a} {b}");
            assert_eq!(vercmp(b, a) as i32, -want, "vercmp {b} {a}");
        }
    }

    /// A generated table judged by pacman's own `vercmp` (Debian: pacman-package-manager).
    #[test]
    fn agrees_with_pacmans_vercmp_tool() {
        let parts = ["0", "1", "01", "1.0", "1.0.1", "1.0a", "1.0.a", "1a", "1_1", "1.0pre1", "1.0rc", "2", "10", "1..0", "1+1", "a", "b1"];
        let mut versions: Vec<String> = Vec::new();
        for p in parts {
            versions.push(p.to_string());
            versions.push(format!("{p}-1"));
            versions.push(format!("1:{p}-2"));
        }
        let mut script = String::new();
        for a in &versions {
            for b in &versions {
                script.push_str(&format!("vercmp '{a}' '{b}'\n"));
            }
        }
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().expect("running vercmp (apt-get install pacman-package-manager)");
        assert!(out.status.success(), "vercmp failed: {}", String::from_utf8_lossy(&out.stderr));
        let results: Vec<i32> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(results.len(), versions.len() * versions.len());
        let mut k = 0;
        for a in &versions {
            for b in &versions {
                assert_eq!(vercmp(a, b) as i32, results[k].signum(), "vercmp {a} {b}");
                k += 1;
            }
        }
    }
}
