//! `anemos bootstrap DIR [--target debian|arch|alpine]`: a system in a directory on this
//! host, through the same prepare + install (+ finish) stages the init uses after
//! partitioning.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use installer::packages::debian::{Config, InstallOptions, Source, Strategy, Variant};
use installer::packages::fetch::FetchConfig;
use installer::packages::{alpine, arch, debian};

use crate::cli::{BootstrapArgs, BootstrapStrategy, BootstrapTarget};

pub fn run(args: BootstrapArgs) -> Result<()> {
    match args.target {
        BootstrapTarget::Debian => run_debian(args),
        BootstrapTarget::Arch => run_arch(args),
        BootstrapTarget::Alpine => run_alpine(args),
    }
}

fn fetch_config(args: &BootstrapArgs) -> Result<FetchConfig> {
    let mut f = FetchConfig { parallel: args.jobs.max(1), proxy: args.proxy.clone(), read_timeout: Duration::from_secs(args.stall_timeout), ..FetchConfig::default() };
    for ca in &args.ca {
        f.extra_ca_pem.push(std::fs::read(ca).with_context(|| format!("reading the CA file {}", ca.display()))?);
    }
    Ok(f)
}

fn includes(args: &BootstrapArgs, default: &str) -> Vec<String> {
    let v: Vec<String> = args.include.iter().flat_map(|i| i.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    if v.is_empty() && !default.is_empty() {
        vec![default.to_string()]
    } else {
        v
    }
}

fn run_debian(args: BootstrapArgs) -> Result<()> {
    let Some(suite) = args.suite.clone() else { bail!("--suite is required for --target debian") };
    let sources =
        if args.mirrors.is_empty() { debian::sources::host_sources_for(Path::new("/etc/apt"), &suite)? } else { args.mirrors.iter().map(|m| Source::parse(m, &suite)).collect::<Result<Vec<_>>>()? };
    for s in &sources {
        log::info!("source: {} {} {}", s.uri, s.suite, s.components.join(" "));
    }
    let keyring = args.keyring.clone().unwrap_or_else(|| PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg"));
    let mut config = Config::new(sources, keyring);
    config.variant = if args.variant == "essential" { Variant::Essential } else { Variant::Minbase };
    config.include = includes(&args, "");
    config.fetch = fetch_config(&args)?;
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
    summary(report.packages, report.bytes, &args.dir, report.total_ms, report.unpack_ms, report.configure_ms);
    Ok(())
}

fn run_arch(args: BootstrapArgs) -> Result<()> {
    let conf_path = args.pacman_conf.clone().unwrap_or_else(|| PathBuf::from("/etc/pacman.conf"));
    let text = std::fs::read_to_string(&conf_path).with_context(|| format!("reading {}", conf_path.display()))?;
    let default_server = args.mirrors.first().cloned();
    // With a mirror given, an Include that is not on this host is not fatal.
    let include = |p: &str| match arch::conf::host_includes(p) {
        Err(e) if default_server.is_some() => {
            log::warn!("{e:#}; using --mirror for repositories without a Server");
            Ok(Vec::new())
        }
        r => r,
    };
    let conf = arch::PacmanConf::parse(&text, &conf_path.display().to_string(), &include)?;
    let mut config = arch::Config::new(conf, includes(&args, "base"));
    config.conf_text = Some(text);
    config.default_server = default_server;
    let shipped = PathBuf::from("/usr/share/pacman/keyrings");
    config.keyring = args.keyring.clone().or_else(|| shipped.is_dir().then_some(shipped));
    config.fetch = fetch_config(&args)?;
    if let Some(a) = &args.arch {
        config.arch = a.clone();
    }
    let prepared = arch::prepare(&config)?;
    if args.print_set {
        for p in &prepared.packages {
            println!("{} {} {}", p.name, p.version, prepared.reasons.get(&p.name).map(String::as_str).unwrap_or(""));
        }
    }
    if args.resolve_only {
        return Ok(());
    }
    let report = arch::install(&prepared, &args.dir, &arch::InstallOptions::default())?;
    if !args.no_initramfs {
        arch::finish(&args.dir)?;
    }
    summary(report.packages, report.bytes, &args.dir, report.total_ms, report.unpack_ms, report.configure_ms);
    Ok(())
}

fn run_alpine(args: BootstrapArgs) -> Result<()> {
    let repositories = if args.mirrors.is_empty() {
        let file = args.repositories.clone().unwrap_or_else(|| PathBuf::from("/etc/apk/repositories"));
        alpine::parse_repositories(&std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?)
    } else {
        args.mirrors.iter().map(|m| alpine::Repository { url: m.trim_end_matches('/').to_string(), tag: None }).collect()
    };
    let keys_dir = args.keys.clone().unwrap_or_else(|| PathBuf::from("/etc/apk/keys"));
    let keys = alpine::Keys::load_dir(&keys_dir)?;
    let mut config = alpine::Config::new(repositories, keys, includes(&args, "alpine-base"));
    config.fetch = fetch_config(&args)?;
    if let Some(a) = &args.arch {
        config.arch = a.clone();
    }
    let prepared = alpine::prepare(&config)?;
    if args.print_set {
        for p in &prepared.packages {
            println!("{} {} {}", p.name, p.version, prepared.reasons.get(&p.name).map(String::as_str).unwrap_or(""));
        }
    }
    if args.resolve_only {
        return Ok(());
    }
    let report = alpine::install(&prepared, &args.dir, &alpine::InstallOptions::default())?;
    if !args.no_initramfs {
        alpine::finish(&args.dir)?;
    }
    summary(report.packages, report.bytes, &args.dir, report.total_ms, report.unpack_ms, report.configure_ms);
    Ok(())
}

fn summary(packages: usize, bytes: u64, dir: &Path, total: u64, unpack: u64, configure: u64) {
    println!(
        "bootstrapped {packages} packages ({:.1} MiB) into {} in {:.1} s (unpack {:.1} s, configure {:.1} s)",
        bytes as f64 / 1048576.0,
        dir.display(),
        total as f64 / 1000.0,
        unpack as f64 / 1000.0,
        configure as f64 / 1000.0
    );
}
