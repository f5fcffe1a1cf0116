//! Capturing a running server's network configuration (`anemos kexec`), so the initramfs
//! can bring up exactly the same addresses, routes and name servers without DHCP.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Interface, Match, Method, NetConfig, Netlink, Route};

/// Reads the addresses and routes of every interface that has a global address, keyed by
/// MAC (names can change under a new kernel), plus the name servers of `resolv_conf`.
pub fn capture(resolv_conf: &Path) -> Result<NetConfig> {
    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    let addresses = nl.addresses()?;
    let routes = nl.routes()?;
    let mut interfaces = Vec::new();
    for (index, name, mac, _) in &links {
        let Some(mac) = mac.clone() else { continue };
        let mine: Vec<(IpAddr, u8)> = addresses.iter().filter(|a| a.index == *index && is_global(a.address)).map(|a| (a.address, a.prefix)).collect();
        if mine.is_empty() || name == "lo" {
            continue;
        }
        let mut gateway = None;
        let mut extra = Vec::new();
        for r in routes.iter().filter(|r| r.oif == Some(*index)) {
            match (r.destination, r.gateway) {
                (None, Some(gw)) if gateway.is_none() && gw.is_ipv4() => gateway = Some(gw),
                (None, Some(gw)) => extra.push(Route { destination: Some((unspecified(gw), 0)), gateway: Some(gw), oif: None }),
                (Some(_), Some(_)) => extra.push(Route { oif: None, ..r.clone() }),
                _ => {} // on-link prefix routes come back with the addresses
            }
        }
        interfaces.push(Interface { matches: Match::Mac(mac), method: Method::Static { addresses: mine, gateway }, routes: extra });
    }
    let dns = name_servers(resolv_conf)?;
    Ok(NetConfig { interfaces, dns })
}

/// Name servers from a resolv.conf; the systemd-resolved stub (127.0.0.53) is replaced by
/// the upstream servers resolved knows, since the initramfs has no resolver daemon.
pub fn name_servers(resolv_conf: &Path) -> Result<Vec<IpAddr>> {
    let parse = |text: &str| -> Vec<IpAddr> { text.lines().filter_map(|l| l.trim().strip_prefix("nameserver")).filter_map(|v| v.trim().split('%').next().and_then(|a| a.parse().ok())).collect() };
    // No resolv.conf (a server with systemd-networkd and no resolver): no name servers,
    // which is fine when the mirror is given by address.
    let text = match std::fs::read_to_string(resolv_conf) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::warn!("{} does not exist: the installer gets no name servers", resolv_conf.display());
            String::new()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", resolv_conf.display())),
    };
    let mut servers = parse(&text);
    if servers.iter().any(|s| s.is_loopback()) {
        if let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            servers = parse(&upstream);
        }
        servers.retain(|s| !s.is_loopback());
    }
    Ok(servers)
}

fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_parsing() {
        let dir = std::env::temp_dir().join(format!("anemos-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("resolv.conf");
        std::fs::write(&p, "# x\nsearch example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\noptions edns0\n").unwrap();
        assert_eq!(name_servers(&p).unwrap(), ["192.0.2.53".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]);
        assert_eq!(name_servers(&dir.join("missing")).unwrap(), Vec::<IpAddr>::new());
        assert!(name_servers(&dir).is_err(), "a directory is not a resolv.conf");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(is_global("10.0.2.15".parse().unwrap()));
        assert!(!is_global("fe80::5054:ff:fe12:3456".parse().unwrap()));
        assert!(is_global("2001:db8::1".parse().unwrap()));
    }
}
