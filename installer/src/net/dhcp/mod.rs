//! A DHCPv4 client (RFC 2131): DISCOVER → OFFER → REQUEST → ACK on one interface, through a
//! UDP socket bound to the device with the broadcast flag set (so replies come back even
//! though the interface has no address yet). The lease is renewed in the background. The
//! messages are read and written in [`wire`].

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

mod wire;
use wire::{Reply, Request};

/// What the server gave us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub lease_secs: u32,
}

struct Client {
    socket: UdpSocket,
    mac: [u8; 6],
    xid: u32,
}

impl Client {
    fn new(ifname: &str, mac: [u8; 6]) -> Result<Client> {
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).context("binding UDP port 68 for DHCP")?;
        crate::sys::bind_to_device(&socket, ifname).with_context(|| format!("binding the DHCP socket to {ifname}"))?;
        rustix::net::sockopt::set_socket_broadcast(&socket, true).context("allowing broadcasts on the DHCP socket")?;
        let mut xid = [0u8; 4];
        rustix::rand::getrandom(&mut xid, rustix::rand::GetRandomFlags::empty()).context("choosing a DHCP transaction id")?;
        Ok(Client { socket, mac, xid: u32::from_ne_bytes(xid) })
    }

    /// Sends a message of `kind` (DISCOVER, REQUEST) with `extra` options to `to`.
    fn send(&self, kind: u8, ciaddr: Ipv4Addr, extra: &[(u8, &[u8])], to: Ipv4Addr) -> Result<()> {
        let mut client_id = vec![1u8]; // hardware type Ethernet, then the MAC
        client_id.extend_from_slice(&self.mac);
        let kind = [kind];
        let mut options: Vec<(u8, &[u8])> = vec![(wire::MESSAGE_TYPE, &kind), (wire::CLIENT_ID, &client_id), (wire::PARAMETERS, &[wire::SUBNET_MASK, wire::ROUTER, wire::DNS, wire::LEASE_TIME])];
        options.extend_from_slice(extra);
        let packet = Request { xid: self.xid, mac: self.mac, ciaddr, options: &options }.encode();
        self.socket.send_to(&packet, SocketAddrV4::new(to, 67)).context("sending a DHCP message")?;
        Ok(())
    }

    /// Waits for a reply of one of `kinds` to our transaction.
    fn receive(&self, kinds: &[u8], timeout: Duration) -> Result<Option<Reply>> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 1500];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left)).context("setting the DHCP timeout")?;
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Ok(None),
                Err(e) => return Err(e).context("receiving DHCP replies"),
            };
            let Some(m) = buf.get(..n).and_then(Reply::decode) else { continue };
            if m.xid == self.xid && m.op == wire::BOOTREPLY && m.message_type().is_some_and(|t| kinds.contains(&t)) {
                return Ok(Some(m));
            }
        }
    }
}

/// Obtains a lease on `ifname`, retrying with backoff until `timeout`.
pub fn acquire(ifname: &str, mac: [u8; 6], timeout: Duration) -> Result<Lease> {
    let client = Client::new(ifname, mac)?;
    let deadline = Instant::now() + timeout;
    let mut wait = Duration::from_secs(2);
    while Instant::now() < deadline {
        client.send(wire::DISCOVER, Ipv4Addr::UNSPECIFIED, &[], Ipv4Addr::BROADCAST)?;
        let Some(offer) = client.receive(&[wire::OFFER], wait)? else {
            wait = (wait * 2).min(Duration::from_secs(8));
            continue;
        };
        let server = server_id(&offer);
        let asked = [(wire::REQUESTED_IP, &offer.yiaddr.octets()[..]), (wire::SERVER_ID, &server.octets()[..])];
        client.send(wire::REQUEST, Ipv4Addr::UNSPECIFIED, &asked, Ipv4Addr::BROADCAST)?;
        match client.receive(&[wire::ACK, wire::NAK], wait)? {
            Some(ack) if ack.message_type() == Some(wire::ACK) => return lease_of(&ack, server),
            Some(_) => log::warn!("DHCP server {server} refused the offered address {}; starting over", offer.yiaddr),
            None => {}
        }
    }
    bail!("no DHCP lease on {ifname} within {} s: is a DHCP server on this network? (configure a static address in the IMGBUILD's network=)", timeout.as_secs())
}

/// Renews `lease` (REQUEST from the leased address, unicast to the server).
pub fn renew(ifname: &str, mac: [u8; 6], lease: &Lease) -> Result<Lease> {
    let client = Client::new(ifname, mac)?;
    client.send(wire::REQUEST, lease.address, &[], lease.server)?;
    match client.receive(&[wire::ACK, wire::NAK], Duration::from_secs(10))? {
        Some(ack) if ack.message_type() == Some(wire::ACK) => lease_of(&ack, lease.server),
        Some(_) => bail!("the DHCP server refused to renew {}", lease.address),
        None => bail!("no answer from DHCP server {} to the renewal of {}", lease.server, lease.address),
    }
}

/// Keeps renewing at half the lease time, in a background thread.
pub fn keep_renewing(ifname: String, mac: [u8; 6], mut lease: Lease) {
    let spawned = std::thread::Builder::new().name("dhcp-renew".into()).spawn(move || loop {
        std::thread::sleep(Duration::from_secs(u64::from(lease.lease_secs.max(60)) / 2));
        match renew(&ifname, mac, &lease) {
            Ok(new) => {
                log::debug!("DHCP lease of {} on {ifname} renewed for {} s", new.address, new.lease_secs);
                lease = new;
            }
            Err(e) => log::warn!("{e:#}"),
        }
    });
    if let Err(e) = spawned {
        log::warn!("cannot start the DHCP renewal thread: {e}");
    }
}

fn server_id(m: &Reply) -> Ipv4Addr {
    m.addresses(wire::SERVER_ID).first().copied().unwrap_or(m.siaddr)
}

fn lease_of(ack: &Reply, server: Ipv4Addr) -> Result<Lease> {
    let mask = ack.addresses(wire::SUBNET_MASK).first().copied().unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
    if ack.yiaddr.is_unspecified() {
        bail!("the DHCP server {server} acknowledged without an address");
    }
    Ok(Lease {
        address: ack.yiaddr,
        prefix: u32::from(mask).count_ones() as u8,
        router: ack.addresses(wire::ROUTER).first().copied(),
        dns: ack.addresses(wire::DNS),
        server,
        lease_secs: ack.u32(wire::LEASE_TIME).unwrap_or(3600),
    })
}
