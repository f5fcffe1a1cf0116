//! `network=`: the initramfs's network during an install: `dhcp`, `captured` (the default:
//! the static configuration `anemos kexec` takes from the running server), or static lines
//! `IFACE|MAC ADDRESS/PREFIX [gateway GW] [dns A,B]`.

use std::net::IpAddr;

use super::Ctx;
use crate::plan::{IfaceSelector, Network, StaticInterface};

pub fn network(cx: &mut Ctx<'_>) -> Option<Network> {
    let lines = cx.lines("network");
    match lines.as_slice() {
        [] => return Some(Network::Captured),
        [(_, l)] if l == "dhcp" => return Some(Network::Dhcp),
        [(_, l)] if l == "captured" => return Some(Network::Captured),
        _ => {}
    }
    let mut interfaces = Vec::new();
    let mut ok = true;
    for (offset, line) in lines {
        match static_line(&line) {
            Ok(i) => interfaces.push(i),
            Err(e) => {
                cx.error_within("network", offset, format!("network: {line:?}: {e} (allowed: dhcp, captured, or lines IFACE|MAC ADDRESS/PREFIX [gateway GW] [dns A,B])"));
                ok = false;
            }
        }
    }
    ok.then_some(Network::Static { interfaces })
}

fn static_line(line: &str) -> Result<StaticInterface, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.len() < 2 {
        return Err("expected an interface and an address".into());
    }
    let iface = if is_mac(w[0]) {
        IfaceSelector::Mac(w[0].to_ascii_lowercase().replace('-', ":"))
    } else if !w[0].is_empty() && w[0].len() <= 15 && !w[0].contains(['/', ':']) && w[0] != "." && w[0] != ".." {
        IfaceSelector::Name(w[0].to_string())
    } else {
        return Err(format!("{:?} is neither an interface name nor a MAC address", w[0]));
    };
    let (addr, prefix) = w[1].split_once('/').ok_or_else(|| format!("{:?} needs a /PREFIX", w[1]))?;
    let address: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| format!("prefix {prefix:?} is not 0 to {max}"))?;
    let mut gateway = None;
    let mut dns = Vec::new();
    let mut rest = w[2..].iter();
    while let Some(key) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{key} needs a value"))?;
        match *key {
            "gateway" => gateway = Some(value.parse().map_err(|_| format!("gateway {value:?} is not an IP address"))?),
            "dns" => {
                for d in value.split(',') {
                    dns.push(d.parse().map_err(|_| format!("dns {d:?} is not an IP address"))?);
                }
            }
            other => return Err(format!("unknown word {other:?} (expected gateway or dns)")),
        }
    }
    Ok(StaticInterface { iface, address, prefix, gateway, dns })
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_lines() {
        let i = static_line("52:54:00:AB:CD:EF 192.0.2.10/24 gateway 192.0.2.1 dns 192.0.2.53,2001:db8::53").unwrap();
        assert_eq!(i.iface, IfaceSelector::Mac("52:54:00:ab:cd:ef".into()));
        assert_eq!((i.prefix, i.dns.len()), (24, 2));
        let i = static_line("eth0 2001:db8::10/64").unwrap();
        assert_eq!((i.iface, i.gateway), (IfaceSelector::Name("eth0".into()), None));
        assert!(static_line("eth0 192.0.2.10").unwrap_err().contains("/PREFIX"));
        assert!(static_line("eth0 192.0.2.10/33").unwrap_err().contains("0 to 32"));
        assert!(static_line("eth0 192.0.2.10/24 via 1.2.3.4").unwrap_err().contains("unknown word"));
    }
}
