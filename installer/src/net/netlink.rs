//! rtnetlink requests: links up, addresses and routes added, and the current addresses and
//! routes listed (for the rescue console and for capturing a server's configuration).
//!
//! The wire format (netlink(7), rtnetlink(7)) is written and read here: a 16-byte header,
//! the message's fixed part, then attributes aligned to 4 bytes, all in host byte order.
//! Three requests and three dumps need little code; netlink-packet-route, which models every
//! message the kernel knows, was a tenth of the static init (docs/benchmarks.md).
//! Replies come from the kernel; they are still read with bounds checks only, never indexed
//! blindly, since the init must not panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;

use anyhow::{bail, Context, Result};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// A link as netlink lists it: (index, name, MAC address, up).
pub type LinkInfo = (u32, String, Option<String>, bool);

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IfAddr {
    pub index: u32,
    pub address: IpAddr,
    pub prefix: u8,
}

/// A route in the main table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    /// Destination network; `None` is the default route.
    pub destination: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
}

/// The kernel's ABI numbers used here (<linux/netlink.h>, <linux/rtnetlink.h>,
/// <linux/if_link.h>, <linux/if_addr.h>): fixed since Linux 2.2.
mod abi {
    pub const NLMSG_ERROR: u16 = 2;
    pub const NLMSG_DONE: u16 = 3;
    pub const NLM_F_REQUEST: u16 = 0x1;
    pub const NLM_F_ACK: u16 = 0x4;
    pub const NLM_F_DUMP: u16 = 0x300;
    /// NLM_F_CREATE | NLM_F_EXCL
    pub const NLM_F_CREATE_EXCL: u16 = 0x400 | 0x200;
    pub const RTM_NEWLINK: u16 = 16;
    pub const RTM_GETLINK: u16 = 18;
    pub const RTM_SETLINK: u16 = 19;
    pub const RTM_NEWADDR: u16 = 20;
    pub const RTM_GETADDR: u16 = 22;
    pub const RTM_NEWROUTE: u16 = 24;
    pub const RTM_GETROUTE: u16 = 26;
    pub const IFLA_ADDRESS: u16 = 1;
    pub const IFLA_IFNAME: u16 = 3;
    pub const IFA_ADDRESS: u16 = 1;
    pub const IFA_LOCAL: u16 = 2;
    pub const IFA_BROADCAST: u16 = 4;
    pub const RTA_DST: u16 = 1;
    pub const RTA_OIF: u16 = 4;
    pub const RTA_GATEWAY: u16 = 5;
    /// An attribute type without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
    pub const NLA_TYPE_MASK: u16 = 0x3fff;
    pub const IFF_UP: u32 = 1;
    pub const RT_TABLE_MAIN: u8 = 254;
    pub const RTPROT_BOOT: u8 = 3;
    pub const RT_SCOPE_UNIVERSE: u8 = 0;
    pub const RT_SCOPE_LINK: u8 = 253;
    pub const RTN_UNICAST: u8 = 1;
    pub const AF_INET: u8 = 2;
    pub const AF_INET6: u8 = 10;
}
use abi::*;

/// `struct nlmsghdr`: length, type, flags, sequence, port.
const HEADER: usize = 16;
/// `struct ifinfomsg`, `struct ifaddrmsg`, `struct rtmsg`.
const IFINFO: usize = 16;
const IFADDR: usize = 8;
const RTMSG: usize = 12;

/// One message the kernel sent: its type and the bytes after the netlink header.
struct Reply {
    kind: u16,
    body: Vec<u8>,
}

/// A route netlink socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        // Protocol 0 is NETLINK_ROUTE; an unconnected netlink socket talks to the kernel.
        let fd = rustix::net::socket_with(AddressFamily::NETLINK, SocketType::RAW, SocketFlags::CLOEXEC, None).context("opening a route netlink socket")?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends one request (an ACK or a dump is always asked for) and collects the replies
    /// until the ACK or the end of the dump. A kernel error comes back as `std::io::Error`.
    fn request(&mut self, kind: u16, flags: u16, fixed: &[u8], attrs: &[(u16, &[u8])]) -> Result<Vec<Reply>> {
        self.seq = self.seq.wrapping_add(1);
        let msg = encode(kind, NLM_F_REQUEST | flags, self.seq, fixed, attrs);
        rustix::net::send(&self.fd, &msg, SendFlags::empty()).context("sending a netlink request")?;
        let mut replies = Vec::new();
        let mut rx = vec![0u8; 64 * 1024];
        loop {
            let (n, _) = rustix::net::recv(&self.fd, &mut rx, RecvFlags::empty()).context("receiving a netlink reply")?;
            for (kind, seq, body) in messages(rx.get(..n).unwrap_or_default())? {
                if seq != self.seq {
                    continue;
                }
                match kind {
                    // Both end a request; their body starts with an errno (0: success).
                    NLMSG_DONE | NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(bytes4(body, 0));
                        if code < 0 {
                            return Err(std::io::Error::from_raw_os_error(-code).into());
                        }
                        return Ok(replies);
                    }
                    _ => replies.push(Reply { kind, body: body.to_vec() }),
                }
            }
        }
    }

    /// Every link: (index, name, MAC address, up).
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        let replies = self.request(RTM_GETLINK, NLM_F_DUMP, &[0; IFINFO], &[])?;
        Ok(replies
            .iter()
            .filter(|r| r.kind == RTM_NEWLINK)
            .map(|r| {
                let (mut name, mut mac) = (String::new(), None);
                for (t, data) in attributes(r.body.get(IFINFO..).unwrap_or_default()) {
                    match t {
                        IFLA_IFNAME => name = String::from_utf8_lossy(data.split(|&b| b == 0).next().unwrap_or_default()).into_owned(),
                        IFLA_ADDRESS if data.len() == 6 => mac = Some(format_mac(data)),
                        _ => {}
                    }
                }
                let index = u32::from_ne_bytes(bytes4(&r.body, 4));
                let flags = u32::from_ne_bytes(bytes4(&r.body, 8));
                (index, name, mac, flags & IFF_UP != 0)
            })
            .collect())
    }

    /// Brings a link up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = [0u8; IFINFO];
        msg[4..8].copy_from_slice(&index.to_ne_bytes());
        msg[8..12].copy_from_slice(&IFF_UP.to_ne_bytes());
        msg[12..16].copy_from_slice(&IFF_UP.to_ne_bytes());
        self.request(RTM_SETLINK, NLM_F_ACK, &msg, &[]).with_context(|| format!("bringing up link {index}"))?;
        Ok(())
    }

    /// Adds an address (an existing identical address is fine).
    pub fn add_address(&mut self, index: u32, address: IpAddr, prefix: u8) -> Result<()> {
        let mut msg = [0u8; IFADDR];
        msg[0] = family(address);
        msg[1] = prefix;
        msg[4..8].copy_from_slice(&index.to_ne_bytes());
        let ip = ip_bytes(address);
        let mut attrs = vec![(IFA_LOCAL, &ip[..]), (IFA_ADDRESS, &ip[..])];
        let broadcast;
        if let IpAddr::V4(v4) = address {
            let host_bits = 32u32.saturating_sub(prefix as u32);
            broadcast = if host_bits >= 32 { u32::MAX } else { u32::from(v4) | ((1u32 << host_bits) - 1) }.to_be_bytes();
            attrs.push((IFA_BROADCAST, &broadcast[..]));
        }
        match self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE_EXCL, &msg, &attrs) {
            Err(e) if already_there(&e) => Ok(()),
            r => r.map(drop).with_context(|| format!("adding {address}/{prefix} to link {index}")),
        }
    }

    /// Adds a route in the main table (an existing identical route is fine).
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        let fam_addr = route.gateway.or(route.destination.map(|d| d.0)).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let scope = if route.gateway.is_some() { RT_SCOPE_UNIVERSE } else { RT_SCOPE_LINK };
        let dst_len = route.destination.map_or(0, |d| d.1);
        let msg = [family(fam_addr), dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0, 0, 0, 0];
        let dst = route.destination.map(|d| ip_bytes(d.0));
        let gw = route.gateway.map(ip_bytes);
        let oif = route.oif.map(u32::to_ne_bytes);
        let mut attrs: Vec<(u16, &[u8])> = Vec::new();
        if let Some(d) = &dst {
            attrs.push((RTA_DST, d));
        }
        if let Some(g) = &gw {
            attrs.push((RTA_GATEWAY, g));
        }
        if let Some(o) = &oif {
            attrs.push((RTA_OIF, o));
        }
        match self.request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE_EXCL, &msg, &attrs) {
            Err(e) if already_there(&e) => Ok(()),
            r => r.map(drop).with_context(|| format!("adding route {route:?}")),
        }
    }

    /// Every address of every link.
    pub fn addresses(&mut self) -> Result<Vec<IfAddr>> {
        let replies = self.request(RTM_GETADDR, NLM_F_DUMP, &[0; IFADDR], &[])?;
        Ok(replies
            .iter()
            .filter(|r| r.kind == RTM_NEWADDR)
            .filter_map(|r| {
                let attrs: Vec<_> = attributes(r.body.get(IFADDR..).unwrap_or_default()).collect();
                let find = |want: u16| attrs.iter().find(|(t, _)| *t == want).and_then(|(_, d)| ip_of(d));
                let address = find(IFA_LOCAL).or_else(|| find(IFA_ADDRESS))?;
                Some(IfAddr { index: u32::from_ne_bytes(bytes4(&r.body, 4)), address, prefix: *r.body.get(1)? })
            })
            .collect())
    }

    /// The routes of the main table.
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let replies = self.request(RTM_GETROUTE, NLM_F_DUMP, &[0; RTMSG], &[])?;
        Ok(replies
            .iter()
            .filter(|r| r.kind == RTM_NEWROUTE && r.body.get(4) == Some(&RT_TABLE_MAIN) && r.body.get(7) == Some(&RTN_UNICAST))
            .map(|r| {
                let dst_len = r.body.get(1).copied().unwrap_or(0);
                let mut route = Route { destination: None, gateway: None, oif: None };
                for (t, data) in attributes(r.body.get(RTMSG..).unwrap_or_default()) {
                    match t {
                        RTA_DST => route.destination = ip_of(data).map(|ip| (ip, dst_len)),
                        RTA_GATEWAY => route.gateway = ip_of(data),
                        RTA_OIF if data.len() == 4 => route.oif = Some(u32::from_ne_bytes(bytes4(data, 0))),
                        _ => {}
                    }
                }
                route
            })
            .collect())
    }
}

/// True when the kernel said the address or route exists already (EEXIST).
fn already_there(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error) == Some(rustix::io::Errno::EXIST.raw_os_error())
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// One request: header, fixed part, attributes.
fn encode(kind: u16, flags: u16, seq: u32, fixed: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&[0; 4]); // the length, known at the end
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(fixed);
    msg.resize(align(msg.len()), 0);
    for (t, data) in attrs {
        msg.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        msg.extend_from_slice(&t.to_ne_bytes());
        msg.extend_from_slice(data);
        msg.resize(align(msg.len()), 0);
    }
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
    msg
}

/// The messages of one datagram: (type, sequence, body).
fn messages(buf: &[u8]) -> Result<Vec<(u16, u32, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER <= buf.len() {
        let len = u32::from_ne_bytes(bytes4(buf, at)) as usize;
        let Some(body) = buf.get(at + HEADER..at.saturating_add(len)).filter(|_| len >= HEADER) else {
            bail!("a malformed netlink reply: a message of {len} bytes at offset {at} of {}", buf.len());
        };
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        out.push((kind, u32::from_ne_bytes(bytes4(buf, at + 8)), body));
        at += align(len);
    }
    Ok(out)
}

/// The attributes (type without the nested/byte-order bits, payload) of a message's tail.
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes([*buf.first()?, *buf.get(1)?]) as usize;
        let kind = u16::from_ne_bytes([*buf.get(2)?, *buf.get(3)?]) & NLA_TYPE_MASK;
        let data = buf.get(4..len)?;
        buf = buf.get(align(len)..).unwrap_or_default();
        Some((kind, data))
    })
}

/// Four bytes at `at`, zeros past the end.
fn bytes4(b: &[u8], at: usize) -> [u8; 4] {
    let mut out = [0; 4];
    if let Some(s) = b.get(at..at + 4) {
        out.copy_from_slice(s);
    }
    out
}

fn family(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn ip_of(data: &[u8]) -> Option<IpAddr> {
    match data.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(bytes4(data, 0)))),
        16 => <[u8; 16]>::try_from(data).ok().map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

/// `52:54:00:12:34:56`
pub fn format_mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_laid_out_as_the_kernel_reads_it() {
        let msg = encode(RTM_NEWADDR, 5, 7, &[2, 24, 0, 0, 3, 0, 0, 0], &[(IFA_LOCAL, &[10, 0, 2, 15]), (9, &[1])]);
        assert_eq!(msg.len(), 16 + 8 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(bytes4(&msg, 0)) as usize, msg.len());
        assert_eq!(u32::from_ne_bytes(bytes4(&msg, 8)), 7);
        let got: Vec<_> = attributes(&msg[24..]).collect();
        assert_eq!(got, vec![(IFA_LOCAL, &[10u8, 0, 2, 15][..]), (9, &[1u8][..])]);
    }

    #[test]
    fn truncated_replies_are_errors_or_ignored_never_a_panic() {
        let msg = encode(RTM_NEWLINK, 0, 1, &[0; IFINFO], &[(IFLA_IFNAME, b"eth0\0")]);
        for cut in 0..msg.len() {
            let _ = messages(&msg[..cut]);
            let _ = attributes(&msg[cut..]).count();
        }
        let mut bad = msg.clone();
        bad[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(messages(&bad).is_err());
        let mut long = msg.clone();
        long[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(messages(&long).is_err());
    }

    /// The host's own tables, read unprivileged: loopback is there with 127.0.0.1/8.
    #[test]
    fn the_hosts_loopback_is_listed() {
        let mut nl = Netlink::open().unwrap();
        let links = nl.links().unwrap();
        let lo = links.iter().find(|l| l.1 == "lo").expect("a link named lo");
        let addrs = nl.addresses().unwrap();
        if lo.3 {
            assert!(addrs.iter().any(|a| a.index == lo.0 && a.address == IpAddr::V4(Ipv4Addr::LOCALHOST) && a.prefix == 8), "{addrs:?}");
        }
        nl.routes().unwrap();
    }
}
