//! A loopback HTTP server for package-repository fixtures that misbehaves on request, so
//! the real fetch path (retries, resumption, verification) runs in the tests. A request for
//! `/MODE/PATH` serves `DIR/PATH`; for package files (as the caller's predicate says) the
//! mode decides: `ok`; `flaky` (500 twice per file, then the file); `stall` (the first answer
//! stops mid-body for 3 s and closes); `corrupt` (a byte flipped); `trunc` (always cut in
//! half); `missing` (404). HEAD and `Range: bytes=N-` are supported. `rename` maps a
//! requested file name to another one for a mode (e.g. a wrong signature file).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Rename = dyn Fn(&str, &str) -> Option<String> + Send + Sync;

/// Starts a server for `dir` and returns its base URL (`http://127.0.0.1:PORT`). It runs
/// until the test process ends.
pub fn start(dir: PathBuf, is_package: fn(&str) -> bool, rename: Box<Rename>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("a local address"));
    let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let rename: Arc<Rename> = Arc::from(rename);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (dir, hits, rename) = (dir.clone(), hits.clone(), rename.clone());
            std::thread::spawn(move || {
                let _ = answer(conn, &dir, &hits, is_package, &*rename);
            });
        }
    });
    url
}

fn answer(conn: std::net::TcpStream, dir: &Path, hits: &Mutex<HashMap<String, usize>>, is_package: fn(&str) -> bool, rename: &Rename) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let head = line.starts_with("HEAD");
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut start = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some(r) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            start = r.trim().trim_end_matches('-').parse().unwrap_or(0);
        }
    }
    let path = percent_decode(&path);
    let (mode, rest) = path.trim_start_matches('/').split_once('/').unwrap_or(("", ""));
    let file = rename(mode, rest).unwrap_or_else(|| rest.to_string());
    let package = is_package(&file);
    let not_found = |out: &mut std::net::TcpStream| write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if file.contains("..") || (package && mode == "missing") {
        return not_found(&mut out);
    }
    let Ok(mut body) = std::fs::read(dir.join(&file)) else { return not_found(&mut out) };
    let n = {
        let mut h = hits.lock().unwrap_or_else(|e| e.into_inner());
        let c = h.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    if package && mode == "flaky" && n <= 2 && !head {
        return write!(out, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    if package && mode == "corrupt" {
        let mid = body.len() / 2;
        body[mid] ^= 0x55;
    }
    let total = body.len();
    let part = &body[start.min(total)..];
    let status = if start > 0 { format!("206 Partial\r\nContent-Range: bytes {start}-{}/{total}", total - 1) } else { "200 OK".into() };
    write!(out, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n", part.len())?;
    if head {
        return Ok(());
    }
    if package && (mode == "trunc" || (mode == "stall" && n == 1)) {
        out.write_all(&part[..part.len() / 2])?;
        out.flush()?;
        if mode == "stall" {
            std::thread::sleep(Duration::from_secs(3));
        }
        return Ok(());
    }
    out.write_all(part)
}

/// `%3A` → `:` (pacman escapes the epoch colon in package URLs).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
