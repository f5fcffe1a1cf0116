//! A caching HTTP proxy for the Debian archive, for tests and benchmarks (and QEMU guests,
//! which reach it as `http://10.0.2.2:PORT/…`).
//!
//! The upstream mirrors are read from this machine's apt sources (never a host name of ours):
//! each base URI is served under its last path segment, e.g. `http://…/debian-security` as
//! `/debian-security/…`. Files under `pool/` and `by-hash/` never change and are cached
//! forever in `~/.cache/anemos/mirror/` (`$XDG_CACHE_HOME/anemos/mirror/`, or `$ANEMOS_MIRROR_CACHE`); everything else
//! (`dists/*/InRelease`, `Release`, indexes) is fetched again once per process run and then
//! served from the cache (a stale copy is served if the upstream cannot be reached). GET and
//! HEAD, `Range: bytes=N-[M]`, keep-alive, one thread per client connection.
//!
//! ```no_run
//! let proxy = anemos_tests::mirror::MirrorProxy::start(0).unwrap(); // 0: a random port
//! let sources = proxy.sources_for("bookworm").unwrap(); // host sources rewritten to the proxy
//! // … `anemos bootstrap DIR --suite bookworm --mirror "URL SUITE COMPONENTS"` per source
//! ```

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use installer::packages::debian::sources::{host_sources, Source};

/// A running proxy; it serves until the process ends.
pub struct MirrorProxy {
    pub port: u16,
    upstreams: Vec<(String, String)>,
}

struct Shared {
    upstreams: Vec<(String, String)>,
    cache: PathBuf,
    refreshed: Mutex<HashSet<String>>,
    agent: ureq::Agent,
}

impl MirrorProxy {
    /// Starts on 127.0.0.1:`port` (0 picks a free port) with the host's apt sources.
    pub fn start(port: u16) -> Result<MirrorProxy> {
        let sources = host_sources(Path::new("/etc/apt"))?;
        let cache = std::env::var_os("ANEMOS_MIRROR_CACHE").map(PathBuf::from).unwrap_or_else(|| anemos_qemu::cache_dir().join("mirror"));
        Self::start_with(port, &sources, &cache)
    }

    /// Starts with explicit upstream sources and cache directory.
    pub fn start_with(port: u16, sources: &[Source], cache: &Path) -> Result<MirrorProxy> {
        let mut upstreams: Vec<(String, String)> = Vec::new();
        for s in sources {
            if upstreams.iter().any(|(_, u)| u == &s.uri) {
                continue;
            }
            let last = s.uri.rsplit('/').next().filter(|l| !l.is_empty() && !l.contains(':')).unwrap_or("archive");
            let mut prefix = format!("/{last}");
            let mut n = 2;
            while upstreams.iter().any(|(p, _)| p == &prefix) {
                prefix = format!("/{last}-{n}");
                n += 1;
            }
            upstreams.push((prefix, s.uri.clone()));
        }
        if upstreams.is_empty() {
            bail!("the host has no apt sources to proxy");
        }
        std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
        let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let port = listener.local_addr()?.port();
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_connect(Some(Duration::from_secs(20))).timeout_per_read(Some(Duration::from_secs(60))).build().new_agent();
        let shared = Arc::new(Shared { upstreams: upstreams.clone(), cache: cache.to_path_buf(), refreshed: Mutex::new(HashSet::new()), agent });
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(conn, &shared) {
                        eprintln!("mirror proxy: {e:#}");
                    }
                });
            }
        });
        Ok(MirrorProxy { port, upstreams })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The same for a QEMU guest with user networking.
    pub fn guest_base(&self) -> String {
        format!("http://10.0.2.2:{}", self.port)
    }

    /// The local URI that serves `upstream` (a base URI of the host's apt sources).
    pub fn local_uri(&self, upstream: &str) -> Option<String> {
        let up = upstream.trim_end_matches('/');
        self.upstreams.iter().find(|(_, u)| u == up).map(|(p, _)| format!("{}{p}", self.base()))
    }

    /// The host's sources for `suite` (and its -updates/-security companions), pointed at
    /// this proxy.
    pub fn sources_for(&self, suite: &str) -> Result<Vec<Source>> {
        let mut out = installer::packages::debian::sources::host_sources_for(Path::new("/etc/apt"), suite)?;
        for s in &mut out {
            s.uri = self.local_uri(&s.uri).with_context(|| format!("{} is not proxied", s.uri))?;
        }
        Ok(out)
    }
}

struct Request {
    head: bool,
    path: String,
    range: Option<(u64, Option<u64>)>,
    close: bool,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let mut req = Request { head: method == "HEAD", path, range: None, close: false };
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("range:").map(str::trim).and_then(|r| r.strip_prefix("bytes=")) {
            let (a, b) = r.split_once('-').unwrap_or((r, ""));
            req.range = a.parse().ok().map(|a| (a, b.parse().ok()));
        }
        if lower.starts_with("connection:") && lower.contains("close") {
            req.close = true;
        }
    }
    if method != "GET" && method != "HEAD" {
        bail!("unsupported method {method}");
    }
    Ok(Some(req))
}

fn serve(conn: TcpStream, shared: &Shared) -> Result<()> {
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader)? {
        let result = match locate(shared, &req.path) {
            // A first GET of a pool file streams through while it is cached, so a slow
            // client or a big file never waits for the whole download.
            Some(loc) if loc.immutable && !req.head && req.range.is_none() && !loc.file.is_file() => stream_through(shared, &mut out, &loc),
            Some(loc) => cached_file(shared, &req.path, &loc).and_then(|f| match f {
                Some(file) => send_file(&mut out, &req, &file),
                None => not_found(&mut out),
            }),
            None => not_found(&mut out),
        };
        if let Err(e) = result {
            eprintln!("mirror proxy: {}: {e:#}", req.path);
            write!(out, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")?;
        }
        out.flush()?;
        if req.close {
            break;
        }
    }
    Ok(())
}

fn not_found(out: &mut TcpStream) -> Result<()> {
    write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
    Ok(())
}

/// Where a request path is cached and fetched from.
struct Location {
    file: PathBuf,
    url: String,
    immutable: bool,
}

fn locate(shared: &Shared, path: &str) -> Option<Location> {
    let path = path.split('?').next().unwrap_or("");
    if path.split('/').any(|c| c == "..") {
        return None;
    }
    let (prefix, upstream) = shared.upstreams.iter().find(|(p, _)| path.starts_with(&format!("{p}/")))?;
    let rest = &path[prefix.len()..];
    Some(Location {
        file: shared.cache.join(prefix.trim_start_matches('/')).join(rest.trim_start_matches('/')),
        url: format!("{upstream}{rest}"),
        immutable: rest.starts_with("/pool/") || rest.contains("/by-hash/"),
    })
}

/// Answers a GET from upstream while writing the same bytes into the cache.
fn stream_through(shared: &Shared, out: &mut TcpStream, loc: &Location) -> Result<()> {
    let resp = shared.agent.get(&loc.url).call().with_context(|| format!("GET {}", loc.url))?;
    if resp.status() == 404 {
        return not_found(out);
    }
    if !resp.status().is_success() {
        bail!("GET {}: {}", loc.url, resp.status());
    }
    let len: Option<u64> = resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let Some(len) = len else {
        drop(resp);
        fetch(shared, &loc.url, &loc.file)?;
        return send_file(out, &Request { head: false, path: String::new(), range: None, close: false }, &loc.file);
    };
    write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nContent-Type: application/octet-stream\r\n\r\n")?;
    let (tmp, mut cache) = temp_file(&loc.file)?;
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    let mut client_ok = true;
    loop {
        let n = body.read(&mut buf).with_context(|| format!("downloading {}", loc.url))?;
        if n == 0 {
            break;
        }
        cache.write_all(&buf[..n])?;
        // A client that went away does not stop the caching.
        client_ok = client_ok && out.write_all(&buf[..n]).is_ok();
        total += n as u64;
    }
    if total != len {
        let _ = std::fs::remove_file(&tmp);
        bail!("GET {}: {total} of {len} bytes", loc.url);
    }
    std::fs::rename(&tmp, &loc.file)?;
    Ok(())
}

fn temp_file(file: &Path) -> Result<(PathBuf, std::fs::File)> {
    let dir = file.parent().context("cache path without parent")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}-{:?}", std::process::id(), std::thread::current().id()));
    let f = std::fs::File::create(&tmp)?;
    Ok((tmp, f))
}

fn send_file(out: &mut TcpStream, req: &Request, path: &Path) -> Result<()> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let (start, end) = match req.range {
        Some((a, b)) if a < len => (a, b.map(|b| b.min(len - 1)).unwrap_or(len - 1)),
        Some(_) => {
            write!(out, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\r\n")?;
            return Ok(());
        }
        None => (0, len.saturating_sub(1)),
    };
    let n = if len == 0 { 0 } else { end - start + 1 };
    if req.range.is_some() {
        write!(out, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end}/{len}\r\n")?;
    } else {
        write!(out, "HTTP/1.1 200 OK\r\n")?;
    }
    write!(out, "Content-Length: {n}\r\nAccept-Ranges: bytes\r\nContent-Type: application/octet-stream\r\n\r\n")?;
    if !req.head {
        f.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut f.take(n), out)?;
    }
    Ok(())
}

/// The cache file for a request path, fetched from upstream when needed; `None` for 404.
fn cached_file(shared: &Shared, path: &str, loc: &Location) -> Result<Option<PathBuf>> {
    if loc.immutable && loc.file.is_file() {
        return Ok(Some(loc.file.clone()));
    }
    if !loc.immutable {
        let fresh = shared.refreshed.lock().map(|r| r.contains(path)).unwrap_or(false);
        if fresh {
            return Ok(loc.file.is_file().then(|| loc.file.clone()));
        }
    }
    match fetch(shared, &loc.url, &loc.file) {
        Ok(found) => {
            if let Ok(mut r) = shared.refreshed.lock() {
                r.insert(path.to_string());
            }
            if !found {
                let _ = std::fs::remove_file(&loc.file);
            }
            Ok(found.then(|| loc.file.clone()))
        }
        Err(e) if loc.file.is_file() => {
            eprintln!("mirror proxy: {e:#}; serving the cached copy");
            Ok(Some(loc.file.clone()))
        }
        Err(e) => Err(e),
    }
}

/// Downloads `url` to `file` (atomically); `Ok(false)` on 404.
fn fetch(shared: &Shared, url: &str, file: &Path) -> Result<bool> {
    let resp = shared.agent.get(url).call().with_context(|| format!("GET {url}"))?;
    if resp.status() == 404 {
        return Ok(false);
    }
    if !resp.status().is_success() {
        bail!("GET {url}: {}", resp.status());
    }
    let (tmp, mut out) = temp_file(file)?;
    std::io::copy(&mut resp.into_body().into_reader(), &mut out).with_context(|| format!("downloading {url}"))?;
    std::fs::rename(&tmp, file)?;
    Ok(true)
}
