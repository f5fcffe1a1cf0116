//! rtnetlink requests: links up, addresses and routes added, and the current addresses and
//! routes listed (for the rescue console and for capturing a server's configuration).

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

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

/// A route netlink socket.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("opening a route netlink socket")?;
        socket.bind_auto().context("binding the netlink socket")?;
        socket.connect(&SocketAddr::new(0, 0)).context("connecting the netlink socket")?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request and collects the replies until the ACK or the end of the dump.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf[..]);
        self.socket.send(&buf, 0).context("sending a netlink request")?;
        let mut replies = Vec::new();
        let mut rx = vec![0u8; 64 * 1024];
        loop {
            let size = self.socket.recv(&mut &mut rx[..], 0).context("receiving a netlink reply")?;
            let mut offset = 0;
            while offset < size {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[offset..size]).map_err(|e| anyhow::anyhow!("decoding a netlink reply: {e}"))?;
                let len = reply.header.length as usize;
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(replies),
                        Some(code) => bail!("{}", std::io::Error::from_raw_os_error(-code.get())),
                    },
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                offset += len;
            }
            if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
                return Ok(replies);
            }
        }
    }

    /// Every link: (index, name, MAC address, up).
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        let replies = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let mut name = String::new();
                    let mut mac = None;
                    for a in &l.attributes {
                        match a {
                            LinkAttribute::IfName(n) => name = n.clone(),
                            LinkAttribute::Address(b) if b.len() == 6 => mac = Some(format_mac(b)),
                            _ => {}
                        }
                    }
                    Some((l.header.index, name, mac, l.header.flags.contains(LinkFlags::Up)))
                }
                _ => None,
            })
            .collect())
    }

    /// Brings a link up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK).with_context(|| format!("bringing up link {index}"))?;
        Ok(())
    }

    /// Adds an address (an existing identical address is fine).
    pub fn add_address(&mut self, index: u32, address: IpAddr, prefix: u8) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = prefix;
        msg.header.family = family(address);
        msg.attributes.push(AddressAttribute::Local(address));
        msg.attributes.push(AddressAttribute::Address(address));
        if let IpAddr::V4(v4) = address {
            let host_bits = 32 - prefix as u32;
            let bcast = if host_bits >= 32 { u32::MAX } else { u32::from(v4) | ((1u32 << host_bits) - 1) };
            msg.attributes.push(AddressAttribute::Broadcast(bcast.into()));
        }
        match self.request(RouteNetlinkMessage::NewAddress(msg), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("exists") => Ok(()),
            Err(e) => Err(e).with_context(|| format!("adding {address}/{prefix} to link {index}")),
        }
    }

    /// Adds a route in the main table (an existing identical route is fine).
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        let mut msg = RouteMessage::default();
        let fam_addr = route.gateway.or(route.destination.map(|d| d.0)).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        msg.header.address_family = family(fam_addr);
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = if route.gateway.is_some() { RouteScope::Universe } else { RouteScope::Link };
        if let Some((dst, len)) = route.destination {
            msg.header.destination_prefix_length = len;
            msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(dst)));
        }
        if let Some(gw) = route.gateway {
            msg.attributes.push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(oif) = route.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        match self.request(RouteNetlinkMessage::NewRoute(msg), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("exists") => Ok(()),
            Err(e) => Err(e).with_context(|| format!("adding route {route:?}")),
        }
    }

    /// Every address of every link.
    pub fn addresses(&mut self) -> Result<Vec<IfAddr>> {
        let replies = self.request(RouteNetlinkMessage::GetAddress(AddressMessage::default()), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => {
                    let addr = a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let addr = addr.or_else(|| {
                        a.attributes.iter().find_map(|x| match x {
                            AddressAttribute::Address(ip) => Some(*ip),
                            _ => None,
                        })
                    })?;
                    Some(IfAddr { index: a.header.index, address: addr, prefix: a.header.prefix_len })
                }
                _ => None,
            })
            .collect())
    }

    /// The routes of the main table.
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let replies = self.request(RouteNetlinkMessage::GetRoute(RouteMessage::default()), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) if r.header.table == RouteHeader::RT_TABLE_MAIN && r.header.kind == RouteType::Unicast => {
                    let mut route = Route { destination: None, gateway: None, oif: None };
                    for a in &r.attributes {
                        match a {
                            RouteAttribute::Destination(d) => route.destination = ip_of(d).map(|ip| (ip, r.header.destination_prefix_length)),
                            RouteAttribute::Gateway(g) => route.gateway = ip_of(g),
                            RouteAttribute::Oif(o) => route.oif = Some(*o),
                            _ => {}
                        }
                    }
                    Some(route)
                }
                _ => None,
            })
            .collect())
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// `52:54:00:12:34:56`
pub fn format_mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}
