//! Stage one: every repository's `APKINDEX.tar.gz` fetched and its signature verified with
//! the keys, the world resolved, the first package URLs probed; no disk is touched.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::apk::read_index;
use super::index::parse;
use super::resolve::resolve;
use super::{Config, Prepared};
use crate::packages::fetch::{pool, Fetcher};

pub fn prepare(config: &Config) -> Result<Prepared> {
    let t = Instant::now();
    if config.repositories.is_empty() {
        bail!("no Alpine repository configured");
    }
    let fetcher = Fetcher::new(config.fetch.clone())?;
    let mut universe = Vec::new();
    for (i, repo) in config.repositories.iter().enumerate() {
        let url = format!("{}/{}/APKINDEX.tar.gz", repo.url, config.arch);
        let data = fetcher.get_bytes(&url, 128 << 20)?;
        let index = read_index(&data).with_context(|| format!("reading {url}"))?;
        let key = config.keys.verify(&index.signatures, &index.digests).with_context(|| format!("verifying {url}"))?;
        let (text, description) = index.contents().with_context(|| format!("reading {url}"))?;
        let pkgs = parse(&text, &url, i)?;
        log::info!("{url} ({description}): {} packages, signed by {key}", pkgs.len());
        universe.extend(pkgs.into_iter().filter(|p| p.arch.is_empty() || p.arch == config.arch || p.arch == "noarch"));
    }
    let tags: Vec<Option<String>> = config.repositories.iter().map(|r| r.tag.clone()).collect();
    let r = resolve(&universe, &tags, &config.world)?;
    let packages = r.order.iter().map(|&i| universe[i].clone()).collect();
    let prepared = Prepared { config: config.clone(), packages, reasons: r.reasons };
    probe(&fetcher, &prepared)?;
    log::info!("prepared {} packages, {:.1} MiB to download, in {:.1} s", prepared.packages.len(), prepared.download_size() as f64 / 1048576.0, t.elapsed().as_secs_f64());
    Ok(prepared)
}

fn probe(fetcher: &Fetcher, prepared: &Prepared) -> Result<()> {
    let first: Vec<_> = prepared.packages.iter().take(prepared.config.probe).collect();
    pool::run(&first, fetcher.config.parallel, |p| {
        let url = prepared.url(p);
        let probe = fetcher.probe(&url).with_context(|| format!("package {} {}", p.name, p.version))?;
        if let Some(len) = probe.length.filter(|&l| p.size != 0 && l != p.size) {
            bail!("package {}: {url} is {len} bytes, the index says {}: the mirror is inconsistent", p.name, p.size);
        }
        Ok(())
    })?;
    Ok(())
}
