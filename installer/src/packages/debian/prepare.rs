//! Stage one: verified indexes, the resolved set, probed URLs; no disk is touched.

use std::io::BufReader;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::index::Universe;
use super::keyring::Keyring;
use super::relation::{ArchQual, Relation};
use super::release::Release;
use super::resolve::resolve;
use super::{Config, Prepared, Source, Variant};
use crate::packages::extract::{decompress, Capped};
use crate::packages::fetch::{pool, Expected, Fetcher, Spool};

/// Fetches and verifies every index, resolves the package set and probes the first URLs.
pub fn prepare(config: &Config) -> Result<Prepared> {
    let t = Instant::now();
    if config.sources.is_empty() {
        bail!("no Debian mirror configured");
    }
    let fetcher = Fetcher::new(config.fetch.clone())?;
    let keyring_bytes = std::fs::read(&config.keyring).with_context(|| format!("reading the keyring {}", config.keyring.display()))?;
    let keyring = Keyring::from_bytes(&keyring_bytes, &config.keyring.display().to_string())?;
    let now = config.now.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    let mut universe = Universe::default();
    for (i, source) in config.sources.iter().enumerate() {
        let release = fetch_release(&fetcher, &keyring, source, now)?;
        for comp in &source.components {
            let n = load_index(&fetcher, &mut universe, source, &release, comp, &config.arch, i)?;
            log::info!("{} {} {comp}: {n} packages", source.uri, source.suite);
        }
    }
    let roots = roots(&universe, config);
    let resolution = resolve(&universe, &config.arch, &roots)?;
    let packages: Vec<_> = resolution.selected.iter().map(|&i| universe.packages[i].clone()).collect();
    drop(universe);
    let prepared = Prepared { config: config.clone(), packages, reasons: resolution.reasons, keyring_bytes };
    probe(&fetcher, &prepared)?;
    log::info!("prepared {} packages, {:.1} MiB to download, in {:.1} s", prepared.packages.len(), prepared.download_size() as f64 / 1048576.0, t.elapsed().as_secs_f64());
    Ok(prepared)
}

/// `InRelease`, or `Release` with `Release.gpg`, verified against the keyring.
fn fetch_release(fetcher: &Fetcher, keyring: &Keyring, source: &Source, now: u64) -> Result<Release> {
    let base = source.dists();
    let url = format!("{base}/InRelease");
    let text = match fetcher.get_optional(&url, RELEASE_LIMIT)? {
        Some(data) => {
            let text = String::from_utf8(data).with_context(|| format!("{url} is not UTF-8"))?;
            keyring.verify_clearsigned(&text, now).with_context(|| format!("verifying {url}"))?
        }
        None => {
            let url = format!("{base}/Release");
            let data = fetcher.get_bytes(&url, RELEASE_LIMIT)?;
            let sig = fetcher.get_bytes(&format!("{url}.gpg"), 1 << 20).with_context(|| format!("{url} has no InRelease and no Release.gpg"))?;
            keyring.verify_detached(&data, &sig, now).with_context(|| format!("verifying {url} with {url}.gpg"))?;
            String::from_utf8(data).with_context(|| format!("{url} is not UTF-8"))?
        }
    };
    let release = Release::parse(&text, &url)?;
    release.check_fresh(now, &url)?;
    release.check_suite(&source.suite, &url)?;
    Ok(release)
}

/// The largest index (compressed, as downloaded) held in memory. Debian's biggest, main
/// for amd64, is about 9 MiB as xz.
const INDEX_LIMIT: u64 = 128 << 20;
/// The largest InRelease accepted (Debian's are about 150 KiB).
const RELEASE_LIMIT: u64 = 16 << 20;

/// Loads one Packages index: downloaded whole and verified against the Release's size and
/// SHA-256 first, then decompressed (capped at the uncompressed size the Release lists)
/// and parsed into `universe`.
fn load_index(fetcher: &Fetcher, universe: &mut Universe, source: &Source, release: &Release, comp: &str, arch: &str, i: usize) -> Result<usize> {
    let (path, size, sha) = release.packages_index(comp, arch)?;
    let url = if release.acquire_by_hash {
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{}/{dir}/by-hash/SHA256/{sha}", source.dists())
    } else {
        format!("{}/{path}", source.dists())
    };
    let mut reader = fetcher.open(&url, Expected { size: Some(size), sha256: Some(sha), limit: None })?;
    let mut spool = Spool::in_memory(&mut reader, Some(size), INDEX_LIMIT, &url)?;
    let plain = path.trim_end_matches(".xz").trim_end_matches(".gz");
    let limit = release.sha256.get(plain).map(|(n, _)| *n).unwrap_or(4 << 30);
    let decoded = Capped::new(decompress(&path, spool.reader()?)?, limit, url.clone());
    universe.add_index(BufReader::with_capacity(256 << 10, decoded), &url, arch, i)
}

/// The root requests of a variant plus the included packages.
fn roots(u: &Universe, config: &Config) -> Vec<(Relation, String)> {
    let rel = |name: &str| Relation { name: name.to_string(), arch: ArchQual::None, version: None };
    let mut out = Vec::new();
    // We make /usr merged with symlinks before unpacking (as debootstrap does), so, like
    // debootstrap, declare it with the empty usr-is-merged package: otherwise the first
    // alternative of `usrmerge | usr-is-merged` (init-system-helpers) would pull in the
    // conversion tool and perl.
    if u.candidate("usr-is-merged").is_some() {
        out.push((rel("usr-is-merged"), "(merged /usr)".to_string()));
    }
    let mut names: Vec<&String> = u.names().collect();
    names.sort();
    for name in names {
        let Some(c) = u.candidate(name) else { continue };
        let p = &u.packages[c];
        let wanted = match config.variant {
            Variant::Minbase => p.essential || p.priority == "required",
            Variant::Essential => p.essential,
        };
        if wanted {
            out.push((rel(name), format!("({})", if p.essential { "essential" } else { "required" })));
        }
    }
    if config.variant == Variant::Minbase {
        out.push((rel("apt"), "(minbase)".into()));
    }
    for name in &config.include {
        out.push((rel(name), "(requested)".into()));
    }
    out
}

/// Checks that the first package URLs exist (HEAD, or a ranged GET).
fn probe(fetcher: &Fetcher, prepared: &Prepared) -> Result<()> {
    let first: Vec<_> = prepared.packages.iter().take(prepared.config.probe).collect();
    pool::run(&first, fetcher.config.parallel, |p| {
        let url = prepared.url(p);
        let probe = fetcher.probe(&url).with_context(|| format!("package {} ({})", p.name, p.version))?;
        if let Some(len) = probe.length.filter(|&l| l != p.size) {
            bail!("package {}: {url} is {len} bytes, the index says {}: the mirror is inconsistent", p.name, p.size);
        }
        Ok(())
    })?;
    Ok(())
}
