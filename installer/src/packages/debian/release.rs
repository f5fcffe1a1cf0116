//! `Release` files (https://wiki.debian.org/DebianRepository/Format#A.22Release.22_files): the
//! suite's signed table of index files with their sizes and SHA-256 digests, its date and
//! `Valid-Until`, and whether indexes may be fetched `by-hash`.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

use super::control::parse_all;

#[derive(Debug, Clone)]
pub struct Release {
    pub suite: String,
    pub codename: String,
    pub date: Option<u64>,
    pub valid_until: Option<u64>,
    pub acquire_by_hash: bool,
    pub components: Vec<String>,
    /// Index path (`main/binary-amd64/Packages.xz`) → (size, SHA-256).
    pub sha256: HashMap<String, (u64, String)>,
}

impl Release {
    pub fn parse(text: &str, what: &str) -> Result<Release> {
        let paras = parse_all(text, what)?;
        let p = paras.first().with_context(|| format!("{what} is empty"))?;
        let mut sha256 = HashMap::new();
        for line in p.get("SHA256").with_context(|| format!("{what} has no SHA256 list"))?.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [hash, size, path] = f[..] {
                sha256.insert(path.to_string(), (size.parse().with_context(|| format!("{what}: bad size in {line:?}"))?, hash.to_ascii_lowercase()));
            }
        }
        let date = |f: &str| p.get(f).map(|d| parse_date(d).with_context(|| format!("{what}: bad {f} {d:?}"))).transpose();
        Ok(Release {
            suite: p.get("Suite").unwrap_or("").to_string(),
            codename: p.get("Codename").unwrap_or("").to_string(),
            date: date("Date")?,
            valid_until: date("Valid-Until")?,
            acquire_by_hash: p.get("Acquire-By-Hash") == Some("yes"),
            components: p.get("Components").unwrap_or("").split_whitespace().map(str::to_string).collect(),
            sha256,
        })
    }

    /// The best available `Packages` index of `component` for `arch`: xz, then gzip, then
    /// uncompressed. Returns (path, size, sha256).
    pub fn packages_index(&self, component: &str, arch: &str) -> Result<(String, u64, String)> {
        for ext in [".xz", ".gz", ""] {
            let path = format!("{component}/binary-{arch}/Packages{ext}");
            if let Some((size, hash)) = self.sha256.get(&path) {
                return Ok((path, *size, hash.clone()));
            }
        }
        bail!("the Release file of {} lists no Packages index for {component}/{arch} (components: {})", self.codename, self.components.join(" "))
    }

    /// Refuses a Release signed for another suite: a mirror (or whoever is between it and
    /// us) could otherwise answer with an older, still validly signed suite (a downgrade).
    pub fn check_suite(&self, asked: &str, what: &str) -> Result<()> {
        if self.codename != asked && self.suite != asked {
            bail!(
                "{what} is signed for suite {:?} (codename {:?}), not the {asked:?} that was asked for: the mirror serves another release (a stale mirror, a wrong URL or a downgrade attempt); nothing was installed",
                self.suite,
                self.codename
            );
        }
        Ok(())
    }

    /// Refuses a Release that is past its `Valid-Until` (a replayed old mirror state).
    pub fn check_fresh(&self, now: u64, what: &str) -> Result<()> {
        if let Some(until) = self.valid_until {
            if until < now {
                bail!("{what} expired (Valid-Until is {} s before now): the mirror is stale or the clock is wrong", now - until);
            }
        }
        Ok(())
    }
}

/// Parses an RFC 2822 date as Release files write it (`Sat, 11 Jul 2026 10:16:37 UTC`).
pub fn parse_date(s: &str) -> Result<u64> {
    let s = s.split_once(',').map(|(_, r)| r).unwrap_or(s);
    let f: Vec<&str> = s.split_whitespace().collect();
    let [day, mon, year, time, ..] = f[..] else { bail!("not a date") };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon)).context("bad month")? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse()?, year.parse()?);
    let t: Vec<i64> = time.split(':').map(|x| x.parse()).collect::<Result<_, _>>()?;
    let [h, m, sec] = t[..] else { bail!("bad time") };
    let offset = match f.get(4).copied() {
        None | Some("UTC") | Some("GMT") | Some("Z") => 0,
        Some(z) if z.len() == 5 => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (z[1..3].parse::<i64>()? * 3600 + z[3..5].parse::<i64>()? * 60)
        }
        Some(z) => bail!("unknown time zone {z}"),
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let t = days * 86400 + h * 3600 + m * 60 + sec - offset;
    u64::try_from(t).context("date before 1970")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("Sat, 11 Jul 2026 10:16:37 UTC").unwrap(), 1783764997);
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 +0000").unwrap(), 0);
        assert_eq!(parse_date("Thu, 01 Jan 1970 01:00:00 +0100").unwrap(), 0);
        assert!(parse_date("yesterday").is_err());
    }

    #[test]
    fn release_fields_and_index_choice() {
        let text = "Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nValid-Until: Sat, 18 Jul 2026 10:16:37 UTC\nAcquire-By-Hash: yes\nComponents: main contrib\nSHA256:\n aa 10 main/binary-amd64/Packages\n BB 5 main/binary-amd64/Packages.gz\n";
        let r = Release::parse(text, "t").unwrap();
        assert!(r.acquire_by_hash);
        assert_eq!(r.packages_index("main", "amd64").unwrap(), ("main/binary-amd64/Packages.gz".into(), 5, "bb".into()));
        assert!(r.packages_index("contrib", "amd64").is_err());
        assert!(r.check_fresh(1783764997, "t").is_ok());
        assert!(r.check_fresh(1783764997 + 8 * 86400, "t").is_err());
        assert!(r.check_suite("bookworm", "t").is_ok() && r.check_suite("stable", "t").is_ok());
        let e = r.check_suite("trixie", "http://m/dists/trixie/InRelease").unwrap_err().to_string();
        assert!(e.contains("signed for suite \"stable\"") && e.contains("trixie") && e.contains("http://m/dists/trixie/InRelease"), "{e}");
    }
}
