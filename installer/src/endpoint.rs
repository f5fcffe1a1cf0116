//! The installer's event endpoint: a small HTTP/1.1 server that lets `anemos deploy` and
//! `anemos rescue` follow an install and act on a failed one. Every request must carry
//! the per-host token from the payload (`Authorization: Bearer TOKEN`).
//!
//! - `GET /events?after=N&wait=S` — events numbered above N as JSON lines
//!   `{"seq":N,"event":{…}}`, waiting up to S seconds (at most 30) for the first one.
//! - `GET /log` — the init's whole log as text (secret values already redacted).
//! - `POST /control/reboot`, `/control/poweroff`, `/control/retry` — only when the
//!   [`Handler`] accepts them (the init: only while its rescue console runs; 409 otherwise).
//!
//! It is plain HTTP: the token travels in the clear, so it is one per host and grants only
//! this (the log has no secrets; control only after a failure). The network in front of
//! it is not trusted to keep it alive either: it listens only on the installer's own
//! addresses, a fixed pool of [`WORKERS`] threads serves at most that many connections
//! (the rest get 503 at once, from the accepting thread, without a thread of their own),
//! a request must arrive whole within [`REQUEST_DEADLINE`], and no thread is ever spawned
//! per connection — so a slow or hostile client cannot hold the installer's memory or
//! threads, and nothing here can stop an install.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::event;

/// How many connections are served at once, and how long a request may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait in no queue: they are answered 503.
    pub workers: usize,
    /// The whole request line and headers must arrive within this.
    pub request_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { workers: 4, request_deadline: Duration::from_secs(10) }
    }
}
/// One write may block at most this long (a client that stops reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A running endpoint: what its clients have received.
#[derive(Debug, Default)]
pub struct Delivery {
    /// The highest event number an authorized client has received.
    delivered: AtomicU64,
    /// Whether any authorized client has asked for events.
    contacted: AtomicBool,
}

impl Delivery {
    /// Before the installer reboots or powers off: waits until a client (the workstation
    /// that follows the deploy) has received every event so far — the failure or the end
    /// — so that it learns what happened instead of waiting for an installer that is gone.
    /// At most `if_followed` when a client has been in contact, else `if_not` (one may be
    /// on its way, its first poll delayed by the reboot into the installer).
    pub fn wait_delivered(&self, if_followed: Duration, if_not: Duration) {
        let last = event::last_seq();
        let limit = if self.contacted.load(Ordering::SeqCst) { if_followed } else { if_not };
        let deadline = Instant::now() + limit;
        if self.delivered.load(Ordering::SeqCst) < last {
            log::info!("waiting up to {} s for the workstation to collect the last events", limit.as_secs());
        }
        while self.delivered.load(Ordering::SeqCst) < last && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The longest `wait=` of a long poll.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Request line plus headers, at most.
const MAX_HEAD: u64 = 16 * 1024;

/// What a control request gets.
pub enum Answer {
    /// Refused with this status and text (409 outside the rescue console, 404 unknown).
    Refuse(u16, String),
    /// Accepted (202 with this text); `then` runs after the answer was sent.
    Accept(String, Box<dyn FnOnce() + Send>),
}

/// The installer side: its log, and what a control action does.
pub trait Handler: Send + Sync + 'static {
    fn log(&self) -> String;
    fn control(&self, action: &str) -> Answer;
}

/// A started endpoint: the addresses it listens on, and what its clients received.
pub struct Started {
    pub bound: Vec<SocketAddr>,
    pub delivery: Arc<Delivery>,
}

/// Starts listening on `port` of each address in `addrs` (the installer's own; an empty
/// list is an error) with a pool of workers.
pub fn start(addrs: &[IpAddr], port: u16, token: &str, handler: Arc<dyn Handler>, limits: Limits) -> Result<Started> {
    if addrs.is_empty() {
        anyhow::bail!("the event endpoint has no address of this machine to listen on");
    }
    let mut workers = 0;
    let (tx, rx) = sync_channel::<TcpStream>(limits.workers);
    let rx = Arc::new(Mutex::new(rx));
    let busy = Arc::new(AtomicUsize::new(0));
    let delivery = Arc::new(Delivery::default());
    for _ in 0..limits.workers {
        let (rx, token, handler, busy, delivery) = (rx.clone(), token.to_string(), handler.clone(), busy.clone(), delivery.clone());
        // A thread that cannot be made is one worker fewer, not a failed install.
        if std::thread::Builder::new().name("endpoint".into()).spawn(move || work(&rx, &token, handler.as_ref(), limits.request_deadline, &busy, &delivery)).is_ok() {
            workers += 1;
        }
    }
    if workers == 0 {
        anyhow::bail!("no thread could be started for the event endpoint");
    }
    let mut bound = Vec::new();
    for addr in addrs {
        let (tx, busy) = (tx.clone(), busy.clone());
        let serve = move |listener: TcpListener| accept(listener, tx, &busy, workers);
        match TcpListener::bind((*addr, port)) {
            Ok(listener) => {
                bound.push(listener.local_addr()?);
                std::thread::Builder::new().name("endpoint-accept".into()).spawn(move || serve(listener)).context("starting the event endpoint")?;
            }
            // A new IPv6 address is "tentative" until duplicate detection ends (a second
            // or two): not bindable yet. Keep trying for a while, without holding the start.
            Err(e) => {
                log::info!("the event endpoint will listen on {addr} port {port} once it can ({e})");
                let addr = *addr;
                let _ = std::thread::Builder::new().name("endpoint-bind".into()).spawn(move || {
                    for _ in 0..BIND_RETRIES {
                        std::thread::sleep(Duration::from_secs(1));
                        if let Ok(listener) = TcpListener::bind((addr, port)) {
                            log::info!("event endpoint listening on {addr} port {port}");
                            return serve(listener);
                        }
                    }
                    log::warn!("the event endpoint could not listen on {addr} port {port}");
                });
            }
        }
    }
    Ok(Started { bound, delivery })
}

/// How many seconds an address that cannot be bound yet is retried.
const BIND_RETRIES: usize = 30;

/// Hands each connection to the workers while fewer than `workers` are in flight, or
/// answers 503 itself.
fn accept(listener: TcpListener, tx: SyncSender<TcpStream>, busy: &AtomicUsize, workers: usize) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        if busy.fetch_add(1, Ordering::SeqCst) >= workers {
            busy.fetch_sub(1, Ordering::SeqCst);
            refuse_busy(&mut conn);
            continue;
        }
        if tx.send(conn).is_err() {
            return;
        }
    }
}

/// 503, then what the client sent so far is read and dropped (briefly), so that closing
/// does not reset the connection before the client has read the answer.
fn refuse_busy(conn: &mut TcpStream) {
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = respond(conn, 503, "text/plain", b"busy: too many connections to the event endpoint\n");
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = io::copy(&mut (&*conn).take(MAX_HEAD), &mut io::sink());
}

fn work(rx: &Mutex<Receiver<TcpStream>>, token: &str, handler: &dyn Handler, deadline: Duration, busy: &AtomicUsize, delivery: &Delivery) {
    loop {
        let conn = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(conn) = conn else { return };
        if let Err(e) = serve(conn, token, handler, deadline, delivery) {
            log::debug!("event endpoint: {e:#}");
        }
        busy.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    authorized: bool,
}

/// A reader that gives up once `deadline` has passed, however slowly bytes trickle in.
struct Deadline<'a> {
    conn: &'a TcpStream,
    deadline: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the request did not arrive in time"));
        }
        self.conn.set_read_timeout(Some(left))?;
        (&mut &*self.conn).read(buf)
    }
}

fn read_request(conn: &TcpStream, token: &str, deadline: Duration) -> Result<Request> {
    let mut reader = BufReader::new(Deadline { conn, deadline: Instant::now() + deadline }.take(MAX_HEAD));
    let mut line = String::new();
    reader.read_line(&mut line).context("reading the request line")?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').map(|(p, q)| (p.to_string(), q.to_string())).unwrap_or((target, String::new()));
    let mut authorized = false;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).context("reading headers")? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.trim().eq_ignore_ascii_case("authorization") {
                let given = value.trim().strip_prefix("Bearer ").unwrap_or("").trim();
                authorized = constant_time_eq(given.as_bytes(), token.as_bytes());
            }
        }
    }
    Ok(Request { method, path, query, authorized })
}

fn serve(mut conn: TcpStream, token: &str, handler: &dyn Handler, deadline: Duration, delivery: &Delivery) -> Result<()> {
    conn.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let req = read_request(&conn, token, deadline)?;
    if !req.authorized {
        return respond(&mut conn, 401, "text/plain", b"a valid deploy token is required\n");
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/events") => {
            let after = param(&req.query, "after").unwrap_or(0);
            let wait = Duration::from_secs(param(&req.query, "wait").unwrap_or(0)).min(MAX_WAIT);
            delivery.contacted.store(true, Ordering::SeqCst);
            let mut body = String::new();
            let mut highest = after;
            for (seq, ev) in event::since(after, wait) {
                body.push_str(&serde_json::json!({ "seq": seq, "event": ev }).to_string());
                body.push('\n');
                highest = highest.max(seq);
            }
            respond(&mut conn, 200, "application/x-ndjson", body.as_bytes())?;
            // Delivered: the client asks for more after what it has (`after`), or has this.
            delivery.delivered.fetch_max(highest, Ordering::SeqCst);
            Ok(())
        }
        ("GET", "/log") => respond(&mut conn, 200, "text/plain; charset=utf-8", handler.log().as_bytes()),
        ("POST", path) if path.starts_with("/control/") => match handler.control(&path["/control/".len()..]) {
            Answer::Refuse(code, text) => respond(&mut conn, code, "text/plain", format!("{text}\n").as_bytes()),
            Answer::Accept(text, then) => {
                respond(&mut conn, 202, "text/plain", format!("{text}\n").as_bytes())?;
                drop(conn);
                then();
                Ok(())
            }
        },
        _ => respond(&mut conn, 404, "text/plain", b"unknown endpoint\n"),
    }
}

fn respond(conn: &mut TcpStream, code: u16, kind: &str, body: &[u8]) -> Result<()> {
    let reason = match code {
        200 => "OK",
        202 => "Accepted",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Error",
    };
    write!(conn, "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    conn.write_all(body)?;
    conn.flush()?;
    Ok(())
}

fn param(query: &str, name: &str) -> Option<u64> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).and_then(|(_, v)| v.parse().ok()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The addresses to listen on: this machine's configured ones, less loopback and IPv6
/// link-local (which cannot be bound without an interface).
pub fn own_addresses() -> Result<Vec<IpAddr>> {
    let mut nl = crate::net::Netlink::open()?;
    let mut addrs: Vec<IpAddr> = nl.addresses()?.into_iter().map(|a| a.address).filter(|a| !a.is_loopback() && !matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)).collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

#[cfg(test)]
mod tests;
