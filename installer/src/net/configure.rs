//! Bringing the network up in the initramfs: loopback, the chosen links (by name or MAC, or
//! every Ethernet link with a carrier), DHCP or static addresses, routes and DNS.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{dhcp, links, Link, Netlink, Route};

/// Which links a configuration applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    Name(String),
    Mac(String),
    /// Every Ethernet link with a carrier; the first that gets an address wins.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Dhcp,
    Static { addresses: Vec<(IpAddr, u8)>, gateway: Option<IpAddr> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    #[serde(rename = "match")]
    pub matches: Match,
    pub method: Method,
    /// Extra routes beyond the default route.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// The network the init should bring up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
}

impl NetConfig {
    /// DHCP on the first Ethernet link that has a carrier.
    pub fn dhcp() -> NetConfig {
        NetConfig { interfaces: vec![Interface { matches: Match::Any, method: Method::Dhcp, routes: Vec::new() }], dns: Vec::new() }
    }
}

/// What was configured, for the log and the ready event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Configured {
    pub links: Vec<String>,
    pub addresses: Vec<String>,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
}

const CARRIER_TIMEOUT: Duration = Duration::from_secs(10);
const DHCP_TIMEOUT: Duration = Duration::from_secs(30);

/// Applies `cfg`, writes `resolv` (normally /etc/resolv.conf) and returns what was done.
pub fn bring_up(cfg: &NetConfig, sysfs: &Path, resolv: &Path) -> Result<Configured> {
    let mut nl = Netlink::open()?;
    let lo = nl.links()?.into_iter().find(|l| l.1 == "lo").map(|l| l.0);
    if let Some(lo) = lo {
        nl.set_up(lo)?;
        nl.add_address(lo, IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8)?;
    }
    let mut done = Configured { dns: cfg.dns.clone(), ..Configured::default() };
    for iface in &cfg.interfaces {
        configure_one(&mut nl, sysfs, iface, &mut done)?;
    }
    if !done.dns.is_empty() {
        let text: String = done.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        std::fs::write(resolv, text).with_context(|| format!("writing {}", resolv.display()))?;
    }
    Ok(done)
}

fn configure_one(nl: &mut Netlink, sysfs: &Path, iface: &Interface, done: &mut Configured) -> Result<()> {
    let all = links(sysfs)?;
    let candidates: Vec<&Link> = all
        .iter()
        .filter(|l| match &iface.matches {
            Match::Name(n) => &l.name == n,
            Match::Mac(m) => l.mac.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(m)),
            Match::Any => l.name != "lo" && sysfs.join("class/net").join(&l.name).join("device").exists(),
        })
        .collect();
    if candidates.is_empty() {
        bail!(
            "no network interface matches {:?}; the kernel has: {} (is its driver module in the initramfs?)",
            iface.matches,
            all.iter().map(|l| format!("{} {}", l.name, l.mac.as_deref().unwrap_or("-"))).collect::<Vec<_>>().join(", ")
        );
    }
    let indexes = nl.links()?;
    let mut last_error = None;
    for link in candidates {
        let Some(index) = indexes.iter().find(|l| l.1 == link.name).map(|l| l.0) else { continue };
        nl.set_up(index)?;
        if !wait_carrier(sysfs, &link.name) {
            log::info!("{}: no carrier after {} s", link.name, CARRIER_TIMEOUT.as_secs());
            last_error = Some(anyhow::anyhow!("{} has no carrier (is the cable plugged in?)", link.name));
            continue;
        }
        match apply_method(nl, index, link, iface, done) {
            Ok(()) => {
                done.links.push(link.name.clone());
                for r in &iface.routes {
                    nl.add_route(&Route { oif: Some(index), ..r.clone() })?;
                }
                return Ok(());
            }
            Err(e) if iface.matches == Match::Any => {
                log::info!("{}: {e:#}", link.name);
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no interface could be configured")))
}

fn apply_method(nl: &mut Netlink, index: u32, link: &Link, iface: &Interface, done: &mut Configured) -> Result<()> {
    match &iface.method {
        Method::Dhcp => {
            let mac = parse_mac(link.mac.as_deref().unwrap_or(""))?;
            let lease = dhcp::acquire(&link.name, mac, DHCP_TIMEOUT)?;
            nl.add_address(index, IpAddr::V4(lease.address), lease.prefix)?;
            if let Some(gw) = lease.router {
                nl.add_route(&Route { destination: None, gateway: Some(IpAddr::V4(gw)), oif: Some(index) })?;
                done.gateway = Some(IpAddr::V4(gw));
            }
            if done.dns.is_empty() {
                done.dns = lease.dns.iter().map(|d| IpAddr::V4(*d)).collect();
            }
            done.addresses.push(format!("{}: {}/{} (DHCP from {})", link.name, lease.address, lease.prefix, lease.server));
            dhcp::keep_renewing(link.name.clone(), mac, lease);
        }
        Method::Static { addresses, gateway } => {
            for (addr, prefix) in addresses {
                nl.add_address(index, *addr, *prefix)?;
                done.addresses.push(format!("{}: {addr}/{prefix} (static)", link.name));
            }
            if let Some(gw) = gateway {
                nl.add_route(&Route { destination: None, gateway: Some(*gw), oif: Some(index) })?;
                done.gateway = Some(*gw);
            }
        }
    }
    Ok(())
}

fn wait_carrier(sysfs: &Path, name: &str) -> bool {
    let path = sysfs.join("class/net").join(name).join("carrier");
    let deadline = Instant::now() + CARRIER_TIMEOUT;
    while Instant::now() < deadline {
        if crate::sysfs::read_str(&path).as_deref() == Some("1") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `52:54:00:12:34:56` → bytes.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16)).collect::<Result<_, _>>().map_err(|_| anyhow::anyhow!("{s:?} is not a MAC address"))?;
    parts.try_into().map_err(|_| anyhow::anyhow!("{s:?} is not a MAC address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_round_trips() {
        let cfg = NetConfig {
            interfaces: vec![Interface {
                matches: Match::Mac("52:54:00:12:34:56".into()),
                method: Method::Static { addresses: vec![("10.0.2.15".parse().unwrap(), 24)], gateway: Some("10.0.2.2".parse().unwrap()) },
                routes: vec![],
            }],
            dns: vec!["10.0.2.3".parse().unwrap()],
        };
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<NetConfig>(&json).unwrap(), cfg);
        assert_eq!(parse_mac("52:54:00:12:34:56").unwrap(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert!(parse_mac("52:54").is_err());
    }
}
