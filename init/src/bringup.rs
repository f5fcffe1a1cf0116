//! Bring-up after the early mounts: kernel modules (by name, then coldplug), EFI variables,
//! and the block devices the command line says must appear.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use installer::kmod::{Loader, ModuleIndex};

use crate::cmdline::Options;
use crate::early;

/// Loads modules and returns how many were loaded.
pub fn modules(opts: &Options) -> Result<usize> {
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    let root = Path::new("/lib/modules").join(&release);
    if !root.join("modules.dep").exists() {
        log::warn!("this initramfs carries no modules for kernel {release} ({} is missing); relying on built-in drivers", root.display());
        return Ok(0);
    }
    let index = ModuleIndex::load(&root)?;
    let mut loader = Loader::new(&index);
    if !opts.modules.is_empty() {
        loader.load(&opts.modules).context("loading the modules named by anemos.modules")?;
    }
    loader.coldplug(Path::new("/sys"), 8).context("coldplug")?;
    // efivarfs may be a module: mount it once modules are in.
    if Path::new("/sys/firmware/efi").exists() {
        let efivarfs = if index.lookup("efivarfs").is_empty() { Vec::new() } else { vec!["efivarfs".to_string()] };
        if let Err(e) = loader.load(&efivarfs).and_then(|_| early::EFIVARS.apply()) {
            log::warn!("EFI variables are not available: {e:#}");
        }
    }
    let report = &loader.report;
    log::info!("loaded {} modules: {}", report.loaded.len(), report.loaded.join(" "));
    for (module, error) in &report.failed {
        log::warn!("module {module} did not load: {error}");
    }
    Ok(report.loaded.len())
}

/// Waits until every device in `opts.wait` exists under /sys/class/block.
pub fn wait_for_devices(opts: &Options) -> Result<()> {
    if opts.wait.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + opts.wait_timeout;
    loop {
        let missing: Vec<&String> = opts.wait.iter().filter(|d| !Path::new("/sys/class/block").join(d).exists()).collect();
        if missing.is_empty() {
            log::info!("block devices present: {}", opts.wait.join(" "));
            return Ok(());
        }
        if Instant::now() >= deadline {
            let seen = block_devices();
            bail!(
                "block devices {} did not appear within {} s; the kernel has: {}. Check that the disk is attached and that its driver module is in the initramfs (anemos initramfs --module NAME)",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                opts.wait_timeout.as_secs(),
                if seen.is_empty() { "none".to_string() } else { seen.join(" ") }
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Names under /sys/class/block, sorted.
pub fn block_devices() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/block").map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()).unwrap_or_default();
    names.sort();
    names
}

/// Brings up the network and returns the configured addresses for the ready event.
pub fn network(cfg: &installer::net::NetConfig) -> Result<Vec<String>> {
    let done = installer::net::bring_up(cfg, Path::new("/sys"), Path::new("/etc/resolv.conf"))?;
    for a in &done.addresses {
        log::info!("network: {a}");
    }
    if let Some(gw) = done.gateway {
        log::info!("network: default gateway {gw}");
    }
    if !done.dns.is_empty() {
        log::info!("network: name servers {}", done.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" "));
    }
    Ok(done.addresses)
}

/// Where the captured configuration of a kexec'd server travels (`anemos kexec`).
pub const NET_JSON: &str = "/anemos/net.json";

/// The network to bring up: the command line wins, then the captured configuration of the
/// server we were kexec'd from, then the plan's `network=`, then DHCP in install mode;
/// rescue and probe stay offline unless told.
pub fn network_config(opts: &Options, plan: Option<&installer::plan::Plan>) -> Option<installer::net::NetConfig> {
    if let Some(explicit) = opts.network() {
        return explicit;
    }
    match std::fs::read(NET_JSON) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(cfg) => return Some(cfg),
            Err(e) => log::warn!("ignoring {NET_JSON}: {e}"),
        },
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => log::warn!("reading {NET_JSON}: {e}"),
        Err(_) => {}
    }
    if let Some(plan) = plan {
        return Some(plan_network(&plan.network));
    }
    (opts.mode == crate::cmdline::Mode::Install).then(installer::net::NetConfig::dhcp)
}

/// The plan's `network=` as a configuration (`captured` without a captured file: DHCP).
fn plan_network(n: &installer::plan::Network) -> installer::net::NetConfig {
    use installer::net::{Interface, Match, Method, NetConfig};
    use installer::plan::{IfaceSelector, Network};
    match n {
        Network::Dhcp | Network::Captured => NetConfig::dhcp(),
        Network::Static { interfaces } => NetConfig {
            interfaces: interfaces
                .iter()
                .map(|i| Interface {
                    matches: match &i.iface {
                        IfaceSelector::Name(n) => Match::Name(n.clone()),
                        IfaceSelector::Mac(m) => Match::Mac(m.clone()),
                    },
                    method: Method::Static { addresses: vec![(i.address, i.prefix)], gateway: i.gateway },
                    routes: Vec::new(),
                })
                .collect(),
            dns: interfaces.iter().flat_map(|i| i.dns.iter().copied()).collect(),
        },
    }
}
