//! Stage one: databases fetched and checked, the set resolved, package signatures fetched
//! and their keys checked, URLs probed; no disk is touched.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use base64::Engine;

use super::conf::Check;
use super::resolve::{resolve, Universe};
use super::{db, now, Config, Prepared, Repo};
use crate::packages::fetch::{pool, Fetcher};
use crate::packages::keyring::Keyring;

/// Fetches and checks every database, resolves the targets, fetches and pre-checks the
/// package signatures and probes the first package URLs.
pub fn prepare(config: &Config) -> Result<Prepared> {
    let t = Instant::now();
    if config.conf.repos.is_empty() {
        bail!("{} configures no repository", config.conf.origin);
    }
    let fetcher = Fetcher::new(config.fetch.clone())?;
    let keyring = match &config.keyring {
        Some(k) => Some(Arc::new(Keyring::load(k)?)),
        None => None,
    };
    let now = now(config);
    let mut universe = Universe::default();
    let mut repos = Vec::new();
    for (i, r) in config.conf.repos.iter().enumerate() {
        let siglevel = config.conf.siglevel(i)?;
        let mut servers = r.urls(&config.arch);
        if servers.is_empty() {
            let Some(d) = &config.default_server else {
                bail!("repository [{}] in {} has no Server (is its Include file missing?) and no mirror was given", r.name, config.conf.origin);
            };
            servers = conf_urls(d, &r.name, &config.arch);
        }
        let (url, pkgs) = fetch_db(&fetcher, keyring.as_deref(), &r.name, &servers, siglevel.database, i, now)?;
        log::info!("[{}] {url}: {} packages", r.name, pkgs.len());
        universe.add(pkgs);
        repos.push(Repo { name: r.name.clone(), url, siglevel });
    }
    let resolution = resolve(&universe, &config.targets, &config.arch)?;
    let packages: Vec<_> = resolution.order.iter().map(|&i| universe.packages[i].clone()).collect();
    drop(universe);
    let mut prepared = Prepared { config: config.clone(), repos, signatures: Vec::new(), packages, explicit: resolution.explicit, reasons: resolution.reasons, keyring };
    prepared.signatures = signatures(&fetcher, &prepared, now)?;
    probe(&fetcher, &prepared)?;
    log::info!("prepared {} packages, {:.1} MiB to download, in {:.1} s", prepared.packages.len(), prepared.download_size() as f64 / 1048576.0, t.elapsed().as_secs_f64());
    Ok(prepared)
}

fn conf_urls(server: &str, repo: &str, arch: &str) -> Vec<String> {
    vec![server.replace("$repo", repo).replace("$arch", arch).trim_end_matches('/').to_string()]
}

/// `REPO.db` from the first server that has it, with `REPO.db.sig` checked as `check` says.
fn fetch_db(fetcher: &Fetcher, keyring: Option<&Keyring>, repo: &str, servers: &[String], check: Check, i: usize, now: u64) -> Result<(String, Vec<db::Package>)> {
    let mut last = None;
    for server in servers {
        let url = format!("{server}/{repo}.db");
        let data = match fetcher.get_bytes(&url, 128 << 20) {
            Ok(d) => d,
            Err(e) => {
                log::warn!("[{repo}] {url}: {e:#}; trying the next server");
                last = Some(e);
                continue;
            }
        };
        if check != Check::Never {
            let sig_url = format!("{url}.sig");
            match (fetcher.get_optional(&sig_url, 1 << 20)?, keyring) {
                (Some(sig), Some(k)) => k.verify_detached(&data, &sig, now).with_context(|| format!("verifying {url} with {sig_url}"))?,
                (None, _) if check == Check::Required => bail!("{url} has no signature ({sig_url}) and SigLevel requires one for [{repo}]"),
                (Some(_), None) if check == Check::Required => bail!("SigLevel requires a signed database for [{repo}], but no keyring was given"),
                (Some(_), None) => log::warn!("{sig_url}: no keyring given, the database signature is not checked"),
                (None, _) => {}
            }
        }
        let pkgs = db::read(&data[..], &url, i)?;
        return Ok((server.clone(), pkgs));
    }
    Err(last.map(|e| e.context(format!("no server of [{repo}] has {repo}.db"))).unwrap_or_else(|| anyhow::anyhow!("[{repo}] has no server")))
}

/// The detached signature of every package whose repository checks them: from `%PGPSIG%`
/// or `URL.sig`, parsed, and its key checked against the keyring (valid, not revoked, not
/// expired, may sign). Only the data remains to verify, while it streams in.
fn signatures(fetcher: &Fetcher, prepared: &Prepared, now: u64) -> Result<Vec<Option<Vec<u8>>>> {
    let items: Vec<_> = prepared.packages.iter().collect();
    let sigs = pool::run(&items, fetcher.config.parallel, |p| {
        let level = prepared.repos[p.repo].siglevel.package;
        if level == Check::Never {
            return Ok(None);
        }
        let url = prepared.url(p);
        let what = || format!("package {} {} ({url})", p.name, p.version);
        let sig = match &p.pgpsig {
            Some(b64) => Some(base64::engine::general_purpose::STANDARD.decode(b64.trim()).with_context(|| format!("{}: %PGPSIG% is not base64", what()))?),
            None => fetcher.get_optional(&format!("{url}.sig"), 1 << 20).with_context(what)?,
        };
        match (&sig, &prepared.keyring) {
            (None, _) if level == Check::Required => bail!("{}: no signature (no %PGPSIG% in the database, no {url}.sig) and SigLevel requires one", what()),
            (Some(_), None) if level == Check::Required => {
                bail!("{}: SigLevel requires package signatures for [{}], but no keyring was given", what(), prepared.repos[p.repo].name)
            }
            (Some(s), Some(k)) => {
                k.check_detached(s, now).with_context(|| format!("{}: checking the signature's key", what()))?;
            }
            _ => {}
        }
        Ok(sig)
    })?;
    if prepared.keyring.is_none() && sigs.iter().any(Option::is_some) {
        log::warn!("no keyring given: package signatures are not checked");
    }
    Ok(sigs)
}

/// Checks that the first package URLs exist and have the size the database says.
fn probe(fetcher: &Fetcher, prepared: &Prepared) -> Result<()> {
    let first: Vec<_> = prepared.packages.iter().take(prepared.config.probe).collect();
    pool::run(&first, fetcher.config.parallel, |p| {
        let url = prepared.url(p);
        let probe = fetcher.probe(&url).with_context(|| format!("package {} {}", p.name, p.version))?;
        if let Some(len) = probe.length.filter(|&l| p.csize != 0 && l != p.csize) {
            bail!("package {}: {url} is {len} bytes, the database says {}: the mirror is inconsistent", p.name, p.csize);
        }
        Ok(())
    })?;
    Ok(())
}
