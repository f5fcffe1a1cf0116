//! Downloading and unpacking the selected packages in parallel: each is read whole from the
//! mirror through SHA-256 verification into a spool (memory or an unnamed file in the
//! root), and only then read through ar, decompression (capped by its Installed-Size) and
//! tar into the root.

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::dpkgdb::{conffiles_of, Unpacked};
use super::index::Package;
use super::Prepared;
use crate::packages::extract::{self, deb, Kind, Root};
use crate::packages::fetch::progress::Progress;
use crate::packages::fetch::{pool, Expected, Fetcher, Spool};

/// Streams every package of `pkgs` into `root` for registration (conffiles are written as
/// `*.dpkg-new`, as dpkg leaves them after unpacking).
pub fn unpack_all(prepared: &Prepared, pkgs: &[&Package], root: &Root, opts: &extract::Options) -> Result<Vec<Unpacked>> {
    let fetcher = Fetcher::new(prepared.config.fetch.clone())?;
    let pkgs = &largest_first(pkgs);
    let bytes = pkgs.iter().map(|p| p.size).sum();
    let progress = Progress::new("packages", pkgs.len() as u64, bytes);
    let results = pool::run(pkgs, fetcher.config.parallel, |p| {
        let url = prepared.url(p);
        let t = std::time::Instant::now();
        let r = unpack_one(&fetcher, &url, p, root, opts, &progress).with_context(|| format!("package {} {} ({url})", p.name, p.version));
        progress.add_work(t.elapsed());
        progress.item_done();
        r
    })?;
    log::info!("{} on {} workers", progress.summary(), fetcher.config.parallel);
    warn_overlaps(&results);
    Ok(results.into_iter().map(|(u, _)| u).collect())
}

/// The biggest packages first: a kernel image takes longest to decompress, and started last
/// it would leave the other workers idle at the end.
fn largest_first<'a>(pkgs: &[&'a Package]) -> Vec<&'a Package> {
    let mut v = pkgs.to_vec();
    v.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    v
}

fn unpack_one(fetcher: &Fetcher, url: &str, p: &Package, root: &Root, opts: &extract::Options, progress: &Progress) -> Result<(Unpacked, Vec<String>)> {
    let mut spool = download(fetcher, url, p, root, progress)?;
    let (mut control, written) = deb::read(std::io::BufReader::with_capacity(64 << 10, spool.reader()?), extract::unpacked_limit(p.installed_kib * 1024), |control, data| {
        let conffiles = conffiles_of(control);
        let place = |path: &str| conffiles.iter().any(|c| c == path).then(|| format!("{path}.dpkg-new"));
        // dpkg computes md5sums itself for packages that ship none.
        let opts = extract::Options { md5: control.get("md5sums").is_none(), ..opts.clone() };
        extract::unpack_tar(root, data, &opts, &place)
    })?;
    if control.get("md5sums").is_none() {
        let conffiles = conffiles_of(&control);
        let sums: String = written.iter().filter(|w| !conffiles.contains(&w.path)).filter_map(|w| w.md5.as_ref().map(|m| format!("{m}  {}\n", w.path.trim_start_matches('/')))).collect();
        control.files.insert("md5sums".into(), (0o644, sums.into_bytes()));
    }
    let non_dirs = written.iter().filter(|w| w.kind != Kind::Dir).map(|w| w.path.clone()).collect();
    let u = Unpacked::new(control, written.into_iter().map(|w| w.path).collect())?;
    if u.name() != p.name {
        anyhow::bail!("the .deb is {}, the index promised {}", u.name(), p.name);
    }
    Ok((u, non_dirs))
}

/// The whole `.deb`, verified against the index's size and SHA-256.
fn download(fetcher: &Fetcher, url: &str, p: &Package, root: &Root, progress: &Progress) -> Result<Spool> {
    let expected = Expected { size: Some(p.size), sha256: Some(p.sha256.clone()), limit: None };
    let t = std::time::Instant::now();
    let reader = fetcher.open(url, expected)?;
    progress.add_wait(t.elapsed());
    let mut reader = reader.with_progress(progress);
    Spool::fill(&mut reader, p.size, || root.spool_file(), "the .deb")
}

/// Downloads `pkgs` verified into `dir` (inside the root) as `NAME_VERSION_ARCH.deb`
/// (epoch colons escaped as apt does), unpacking the data of those in `unpack_too`.
pub fn save_all(prepared: &Prepared, pkgs: &[&Package], root: &Root, dir: &str, unpack_too: &(dyn Fn(&Package) -> bool + Sync), opts: &extract::Options) -> Result<Vec<String>> {
    let fetcher = Fetcher::new(prepared.config.fetch.clone())?;
    let progress = Progress::new("packages", pkgs.len() as u64, pkgs.iter().map(|p| p.size).sum());
    root.dir_all(dir)?;
    // In the caller's order: the result pairs with `pkgs`.
    pool::run(pkgs, fetcher.config.parallel, |p| {
        let url = prepared.url(p);
        let name = format!("{dir}/{}_{}_{}.deb", p.name, p.version.to_string().replace(':', "%3a"), p.arch);
        let r = save_one(&fetcher, &url, p, root, &name, unpack_too(p), opts, &progress).with_context(|| format!("package {} {} ({url})", p.name, p.version));
        progress.item_done();
        r.map(|()| format!("/{name}"))
    })
}

#[allow(clippy::too_many_arguments)]
fn save_one(fetcher: &Fetcher, url: &str, p: &Package, root: &Root, name: &str, unpack: bool, opts: &extract::Options, progress: &Progress) -> Result<()> {
    let mut spool = download(fetcher, url, p, root, progress)?;
    let target = extract::InRoot::parse(name)?;
    let mut file = root.create_file(&target, 0o644)?;
    std::io::copy(spool.reader()?, &mut file).context("saving the .deb")?;
    if unpack {
        deb::read(std::io::BufReader::with_capacity(64 << 10, spool.reader()?), extract::unpacked_limit(p.installed_kib * 1024), |_, data| extract::unpack_tar(root, data, opts, &|_| None))?;
    }
    Ok(())
}

/// dpkg refuses to let two packages own one file without `Replaces`; we unpack in parallel,
/// so say which ones overlapped (the later writer won).
fn warn_overlaps(pkgs: &[(Unpacked, Vec<String>)]) {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (u, non_dirs) in pkgs {
        for p in non_dirs {
            if let Some(prev) = owner.insert(p, u.name()) {
                log::warn!("{p} is shipped by both {prev} and {}", u.name());
            }
        }
    }
}
