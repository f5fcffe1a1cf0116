//! DHCPv4 messages on the wire (RFC 2131 §2, RFC 2132): the 236-byte BOOTP header, the magic
//! cookie, then options as code, length, data. Only what the client sends and reads is
//! modelled. Replies come from the network, so every read is bounds-checked and a malformed
//! packet is `None`, never a panic.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const BOOTREQUEST: u8 = 1;
pub const BOOTREPLY: u8 = 2;

/// Option 53's values.
pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

/// Option codes (RFC 2132).
pub const SUBNET_MASK: u8 = 1;
pub const ROUTER: u8 = 3;
pub const DNS: u8 = 6;
pub const REQUESTED_IP: u8 = 50;
pub const LEASE_TIME: u8 = 51;
pub const MESSAGE_TYPE: u8 = 53;
pub const SERVER_ID: u8 = 54;
pub const PARAMETERS: u8 = 55;
pub const CLIENT_ID: u8 = 61;
const PAD: u8 = 0;
const END: u8 = 255;

const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Where the options start: the fixed header, then the cookie.
const OPTIONS_AT: usize = 236 + 4;
/// BOOTP relays and some servers drop anything shorter (RFC 1542 §2.1).
const MIN_LEN: usize = 300;
/// The broadcast flag: replies come back broadcast while we have no address.
const BROADCAST: u16 = 0x8000;

/// A message the client sends.
pub struct Request<'a> {
    pub xid: u32,
    pub mac: [u8; 6],
    pub ciaddr: Ipv4Addr,
    pub options: &'a [(u8, &'a [u8])],
}

impl Request<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut m = vec![0u8; OPTIONS_AT];
        m[..4].copy_from_slice(&[BOOTREQUEST, 1, 6, 0]); // Ethernet, 6-byte addresses, no hops
        m[4..8].copy_from_slice(&self.xid.to_be_bytes());
        m[10..12].copy_from_slice(&BROADCAST.to_be_bytes());
        m[12..16].copy_from_slice(&self.ciaddr.octets());
        m[28..34].copy_from_slice(&self.mac);
        m[236..240].copy_from_slice(&COOKIE);
        for (code, data) in self.options {
            // Longer values are split into several options of the same code (RFC 3396).
            for chunk in data.chunks(255) {
                m.push(*code);
                m.push(chunk.len() as u8);
                m.extend_from_slice(chunk);
            }
        }
        m.push(END);
        m.resize(m.len().max(MIN_LEN), PAD);
        m
    }
}

/// A message a server sent, as far as the client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub op: u8,
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    /// Each option's data; repeated codes are concatenated (RFC 3396).
    pub options: BTreeMap<u8, Vec<u8>>,
}

impl Reply {
    pub fn decode(b: &[u8]) -> Option<Reply> {
        if b.get(236..240)? != COOKIE {
            return None;
        }
        let ip = |at: usize| -> Option<Ipv4Addr> { Some(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(at..at + 4)?).ok()?)) };
        let xid = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
        let mut options: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        let mut at = OPTIONS_AT;
        while let Some(&code) = b.get(at) {
            match code {
                PAD => at += 1,
                END => break,
                _ => {
                    let len = *b.get(at + 1)? as usize;
                    options.entry(code).or_default().extend_from_slice(b.get(at + 2..at + 2 + len)?);
                    at += 2 + len;
                }
            }
        }
        Some(Reply { op: *b.first()?, xid, yiaddr: ip(16)?, siaddr: ip(20)?, options })
    }

    pub fn message_type(&self) -> Option<u8> {
        self.options.get(&MESSAGE_TYPE).and_then(|v| v.first().copied())
    }

    /// The addresses an option lists (router, DNS), or the one it holds.
    pub fn addresses(&self, code: u8) -> Vec<Ipv4Addr> {
        self.options.get(&code).map(|v| v.chunks_exact(4).map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3])).collect()).unwrap_or_default()
    }

    pub fn u32(&self, code: u8) -> Option<u32> {
        Some(u32::from_be_bytes(self.options.get(&code)?.as_slice().try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a server lays it out: a request's bytes turned around.
    fn reply(kind: u8, extra: &[(u8, &[u8])]) -> Vec<u8> {
        let kind = [kind];
        let mut opts = vec![(MESSAGE_TYPE, &kind[..])];
        opts.extend_from_slice(extra);
        let mut b = Request { xid: 0x1234_5678, mac: [2, 0, 0, 0, 0, 1], ciaddr: Ipv4Addr::UNSPECIFIED, options: &opts }.encode();
        b[0] = BOOTREPLY;
        b[16..20].copy_from_slice(&[10, 0, 2, 15]);
        b
    }

    #[test]
    fn a_request_has_the_layout_rfc_2131_gives() {
        let b = Request { xid: 7, mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], ciaddr: Ipv4Addr::new(10, 0, 2, 15), options: &[(MESSAGE_TYPE, &[DISCOVER]), (PARAMETERS, &[1, 3, 6, 51])] }.encode();
        assert_eq!(b.len(), MIN_LEN);
        assert_eq!(&b[..4], &[1, 1, 6, 0]);
        assert_eq!(&b[4..8], &[0, 0, 0, 7]);
        assert_eq!(&b[10..12], &[0x80, 0]);
        assert_eq!(&b[12..16], &[10, 0, 2, 15]);
        assert_eq!(&b[28..34], &[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(&b[236..240], &COOKIE);
        assert_eq!(&b[240..249], &[53, 1, 1, 55, 4, 1, 3, 6, 51]);
        assert_eq!(b[249], END);
    }

    #[test]
    fn a_reply_is_read_and_split_options_are_joined() {
        let b = reply(ACK, &[(ROUTER, &[10, 0, 2, 2]), (DNS, &[10, 0, 2, 3]), (DNS, &[1, 1, 1, 1]), (LEASE_TIME, &[0, 1, 81, 128]), (SUBNET_MASK, &[255, 255, 255, 0])]);
        let r = Reply::decode(&b).unwrap();
        assert_eq!((r.op, r.xid, r.yiaddr), (BOOTREPLY, 0x1234_5678, Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!(r.message_type(), Some(ACK));
        assert_eq!(r.addresses(ROUTER), vec![Ipv4Addr::new(10, 0, 2, 2)]);
        assert_eq!(r.addresses(DNS), vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]);
        assert_eq!(r.u32(LEASE_TIME), Some(86_400));
        assert_eq!(r.addresses(SUBNET_MASK), vec![Ipv4Addr::new(255, 255, 255, 0)]);
    }

    #[test]
    fn malformed_replies_are_none_never_a_panic() {
        let b = reply(OFFER, &[(ROUTER, &[10, 0, 2, 2])]);
        for cut in 0..b.len() {
            let _ = Reply::decode(&b[..cut]);
        }
        assert!(Reply::decode(&b[..100]).is_none());
        let mut bad = b.clone();
        bad[236] = 0;
        assert!(Reply::decode(&bad).is_none(), "no magic cookie");
        let mut long = b.clone();
        long[OPTIONS_AT + 1] = 200; // an option running past the end
        long.truncate(OPTIONS_AT + 20);
        assert!(Reply::decode(&long).is_none());
    }
}
