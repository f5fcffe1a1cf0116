//! `anemos bootstrap DIR --suite SUITE`: a Debian system in a directory on this host, through
//! the same prepare + install stages the init uses after partitioning.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use installer::packages::debian::{self, Config, InstallOptions, Source, Strategy, Variant};

use crate::cli::{BootstrapArgs, BootstrapStrategy};

pub fn run(args: BootstrapArgs) -> Result<()> {
    let sources = if args.mirrors.is_empty() {
        debian::sources::host_sources_for(Path::new("/etc/apt"), &args.suite)?
    } else {
        args.mirrors.iter().map(|m| Source::parse(m, &args.suite)).collect::<Result<Vec<_>>>()?
    };
    for s in &sources {
        log::info!("source: {} {} {}", s.uri, s.suite, s.components.join(" "));
    }
    let keyring = args.keyring.clone().unwrap_or_else(|| PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg"));
    let mut config = Config::new(sources, keyring);
    config.variant = if args.variant == "essential" { Variant::Essential } else { Variant::Minbase };
    config.include = args.include.iter().flat_map(|i| i.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    config.fetch.parallel = args.jobs.max(1);
    config.fetch.proxy = args.proxy.clone();
    config.fetch.read_timeout = Duration::from_secs(args.stall_timeout);
    for ca in &args.ca {
        config.fetch.extra_ca_pem.push(std::fs::read(ca).with_context(|| format!("reading the CA file {}", ca.display()))?);
    }
    if let Some(arch) = &args.arch {
        config.arch = arch.clone();
    }
    let prepared = debian::prepare(&config)?;
    if args.print_set {
        for p in &prepared.packages {
            println!("{} {} {}", p.name, p.version, prepared.reasons.get(&p.name).map(String::as_str).unwrap_or(""));
        }
    }
    if args.resolve_only {
        return Ok(());
    }
    let strategy = match args.strategy {
        BootstrapStrategy::InProcess => Strategy::InProcess,
        BootstrapStrategy::DpkgInstall => Strategy::DpkgInstall,
    };
    let report = debian::install(&prepared, &args.dir, &InstallOptions { strategy, ..InstallOptions::default() })?;
    if !args.no_initramfs {
        debian::finish(&args.dir)?;
    }
    println!(
        "bootstrapped {} packages ({:.1} MiB) into {} in {:.1} s (unpack {:.1} s, configure {:.1} s)",
        report.packages,
        report.bytes as f64 / 1048576.0,
        args.dir.display(),
        report.total_ms as f64 / 1000.0,
        report.unpack_ms as f64 / 1000.0,
        report.configure_ms as f64 / 1000.0
    );
    Ok(())
}
