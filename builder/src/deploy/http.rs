//! The client side of the init's event endpoint (`init/src/status.rs`): plain HTTP/1.1 with
//! `Connection: close`, a bearer token, and JSON-lines events. Small enough that a general
//! HTTP client would add more than it saves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use installer::event::Event;

/// One installer's endpoint: where it listens and the deploy token it wants.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: String,
    pub token: String,
}

impl Endpoint {
    /// Events numbered above `after`, waiting up to `wait_s` seconds on the server for one.
    pub fn events(&self, after: u64, wait_s: u64) -> Result<Vec<(u64, Event)>> {
        // A long poll gets its wait and a margin; a short one, little more than a round trip.
        let timeout = Duration::from_secs(if wait_s == 0 { 5 } else { wait_s + 20 });
        let (code, body) = self.request("GET", &format!("/events?after={after}&wait={wait_s}"), timeout)?;
        if code != 200 {
            bail!("GET /events on {} answered {code}: {}", self.addr, body.trim());
        }
        Ok(parse_events(&body))
    }

    /// The init's whole log.
    pub fn log(&self) -> Result<String> {
        let (code, body) = self.request("GET", "/log", Duration::from_secs(30))?;
        if code != 200 {
            bail!("GET /log on {} answered {code}: {}", self.addr, body.trim());
        }
        Ok(body)
    }

    /// Asks a failed installer to `reboot`, `poweroff` or `retry`.
    pub fn control(&self, action: &str) -> Result<String> {
        let (code, body) = self.request("POST", &format!("/control/{action}"), Duration::from_secs(30))?;
        match code {
            202 => Ok(body.trim().to_string()),
            409 => bail!("{} refused {action}: {}", self.addr, body.trim()),
            _ => bail!("POST /control/{action} on {} answered {code}: {}", self.addr, body.trim()),
        }
    }

    fn request(&self, method: &str, path: &str, timeout: Duration) -> Result<(u16, String)> {
        let addr = resolve(&self.addr)?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).with_context(|| format!("connecting to the event endpoint {}", self.addr))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.addr, self.token)
            .with_context(|| format!("sending {method} {path} to {}", self.addr))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).with_context(|| format!("reading the answer to {method} {path} from {}", self.addr))?;
        parse_response(&raw).with_context(|| format!("the answer to {method} {path} from {}", self.addr))
    }
}

fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs().with_context(|| format!("resolving {addr}"))?.next().with_context(|| format!("{addr} resolves to no address"))
}

/// Status and body of a complete `Connection: close` response.
fn parse_response(raw: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").context("the connection closed before a complete HTTP header")?;
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no HTTP status line")?;
    let length = head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.trim().parse::<usize>().ok()));
    if let Some(n) = length {
        if body.len() < n {
            bail!("the body ended after {} of {n} bytes", body.len());
        }
    }
    Ok((code, body.to_string()))
}

/// The `{"seq":N,"event":{…}}` lines of an events answer; lines that do not parse (a newer
/// init's event kinds) are skipped.
pub fn parse_events(body: &str) -> Vec<(u64, Event)> {
    body.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|mut v| {
            let seq = v.get("seq")?.as_u64()?;
            let event = serde_json::from_value::<Event>(v.get_mut("event")?.take()).ok()?;
            Some((seq, event))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_and_event_lines_parse() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: 74\r\n\r\n{\"seq\":3,\"event\":{\"event\":\"phase_started\",\"phase\":\"disks\"}}\n{\"seq\":4,bad}\n";
        let (code, body) = parse_response(raw).unwrap();
        assert_eq!(code, 200);
        let events = parse_events(&body);
        assert_eq!(events, vec![(3, Event::PhaseStarted { phase: "disks".into() })]);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert_eq!(parse_response(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n").unwrap().0, 401);
    }
}
