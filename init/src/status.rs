//! The event endpoint: a small HTTP server that lets `anemos deploy` and `anemos rescue`
//! follow an install and act on a failed one. Every request must carry the per-deploy token
//! from the payload (`Authorization: Bearer TOKEN`); without a token the server never starts.
//!
//! - `GET /events?after=N&wait=S` — events numbered above N as JSON lines
//!   `{"seq":N,"event":{…}}`, waiting up to S seconds (at most 30) for the first one.
//! - `GET /log` — the init's whole log as text.
//! - `POST /control/reboot`, `/control/poweroff`, `/control/retry` — only while the rescue
//!   console is active (after a failure).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use installer::event;

use crate::cmdline::Action;
use crate::{logger, shutdown};

/// Set while the rescue console runs: remote control is allowed only then.
pub static RESCUE_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Where the payload keeps the per-deploy token.
pub const TOKEN_FILE: &str = "/anemos/payload/token"; // installer::payload::{DIR, TOKEN_FILE}

/// Starts the server on `port` if the payload carries a token. Returns whether it runs.
pub fn start(port: u16) -> Result<bool> {
    let token = match std::fs::read_to_string(TOKEN_FILE) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            log::info!("no deploy token in the payload ({TOKEN_FILE}): the event endpoint stays off");
            return Ok(false);
        }
    };
    let listener = TcpListener::bind(("::", port))
        .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
        .with_context(|| format!("listening on port {port} for the event endpoint"))?;
    std::thread::Builder::new()
        .name("status".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let token = token.clone();
                let _ = std::thread::Builder::new().name("status-conn".into()).spawn(move || {
                    if let Err(e) = serve(conn, &token) {
                        log::debug!("event endpoint: {e:#}");
                    }
                });
            }
        })
        .context("starting the event endpoint thread")?;
    log::info!("event endpoint listening on port {port}");
    Ok(true)
}

struct Request {
    method: String,
    path: String,
    query: String,
    authorized: bool,
}

fn read_request(conn: &TcpStream, token: &str) -> Result<Request> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.take(16 * 1024));
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

fn serve(mut conn: TcpStream, token: &str) -> Result<()> {
    let req = read_request(&conn, token)?;
    if !req.authorized {
        return respond(&mut conn, 401, "text/plain", b"a valid deploy token is required\n");
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/events") => {
            let after = param(&req.query, "after").unwrap_or(0);
            let wait = Duration::from_secs(param(&req.query, "wait").unwrap_or(0).min(30));
            let mut body = String::new();
            for (seq, ev) in event::since(after, wait) {
                let json = serde_json::json!({ "seq": seq, "event": ev });
                body.push_str(&json.to_string());
                body.push('\n');
            }
            respond(&mut conn, 200, "application/x-ndjson", body.as_bytes())
        }
        ("GET", "/log") => respond(&mut conn, 200, "text/plain; charset=utf-8", logger::memory().as_bytes()),
        ("POST", path) if path.starts_with("/control/") => control(&mut conn, &path["/control/".len()..]),
        _ => respond(&mut conn, 404, "text/plain", b"unknown endpoint\n"),
    }
}

fn control(conn: &mut TcpStream, what: &str) -> Result<()> {
    if !RESCUE_ACTIVE.load(Ordering::SeqCst) {
        return respond(conn, 409, "text/plain", b"not in the rescue console: an install is running or none failed\n");
    }
    let action = match what {
        "reboot" => Action::Reboot,
        "poweroff" => Action::Poweroff,
        "retry" => {
            respond(conn, 202, "text/plain", b"retrying the install\n")?;
            log::info!("retry requested over the event endpoint");
            crate::retry::restart();
        }
        _ => return respond(conn, 404, "text/plain", b"control actions: reboot, poweroff, retry\n"),
    };
    respond(conn, 202, "text/plain", format!("{}\n", action.name()).as_bytes())?;
    log::info!("{} requested over the event endpoint", action.name());
    shutdown::shutdown(action)
}

fn respond(conn: &mut TcpStream, code: u16, kind: &str, body: &[u8]) -> Result<()> {
    let reason = match code {
        200 => "OK",
        202 => "Accepted",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
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

#[cfg(test)]
mod tests {
    #[test]
    fn query_parameters_and_token_comparison() {
        assert_eq!(super::param("after=12&wait=5", "wait"), Some(5));
        assert_eq!(super::param("after=x", "after"), None);
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
