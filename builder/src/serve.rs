//! Serving a local image file to installers over HTTP, for `--image FILE` with the
//! commands that install (`image`, `test`, `deploy`): GET and HEAD of one path, with byte
//! ranges (an installer resumes a broken transfer where it broke). The path carries a
//! random part so that nothing else on the port is guessable; the image itself is
//! protected by the SHA-256 the payload pins, not by this server.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// A running server of one file.
pub struct ImageServer {
    pub addr: SocketAddr,
    /// `/RANDOM/NAME`.
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

impl ImageServer {
    /// Hashes `file` (checking it against `pin` if given) and serves it on `bind` (port 0:
    /// any free one) until the process ends.
    pub fn start(file: &Path, pin: Option<&str>, bind: SocketAddr) -> Result<ImageServer> {
        let (sha256, size) = hash_file(file)?;
        if let Some(p) = pin.filter(|p| !p.eq_ignore_ascii_case(&sha256)) {
            anyhow::bail!("{} has the SHA-256 {sha256}, not the pinned {p}", file.display());
        }
        let listener = TcpListener::bind(bind).with_context(|| format!("listening on {bind} to serve {}", file.display()))?;
        let addr = listener.local_addr()?;
        let mut r = [0u8; 12];
        rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::empty())?;
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        let path = format!("/{}/{}", hex::encode(r), name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-' && c != '_', "_"));
        let (file, served) = (file.to_path_buf(), path.clone());
        std::thread::Builder::new().name("image-server".into()).spawn(move || {
            for conn in listener.incoming().flatten() {
                let (file, served) = (file.clone(), served.clone());
                let _ = std::thread::Builder::new().spawn(move || {
                    if let Err(e) = answer(conn, &file, &served) {
                        log::debug!("serving the image: {e:#}");
                    }
                });
            }
        })?;
        log::info!("serving {} ({} bytes, SHA-256 {sha256}) on {addr}", path, size);
        Ok(ImageServer { addr, path, sha256, size })
    }

    /// The URL under which `host` (an address the installer reaches this machine at) finds it.
    pub fn url_via(&self, host: &str) -> String {
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
        format!("http://{host}:{}{}", self.addr.port(), self.path)
    }
}

/// The SHA-256 (hex) and size of a file, read once.
pub fn hash_file(file: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(file).with_context(|| format!("opening the image {}", file.display()))?;
    let mut h = Sha256::new();
    let size = std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", file.display()))?;
    Ok((hex::encode(h.finalize()), size))
}

fn answer(conn: TcpStream, file: &PathBuf, served: &str) -> Result<()> {
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn.take(16 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let mut start = 0u64;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some(r) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            start = r.trim().split('-').next().and_then(|s| s.parse().ok()).unwrap_or(0);
        }
    }
    if path != served || !(method == "GET" || method == "HEAD") {
        write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let mut f = std::fs::File::open(file)?;
    let total = f.metadata()?.len();
    let start = start.min(total);
    let date = httpdate_now();
    let status = if start > 0 { format!("206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}", total.saturating_sub(1)) } else { "200 OK".into() };
    write!(out, "HTTP/1.1 {status}\r\nDate: {date}\r\nAccept-Ranges: bytes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", total - start)?;
    if method == "GET" {
        f.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut f, &mut out)?;
    }
    Ok(())
}

/// Now as an HTTP date: the installer may set its clock forward from it.
fn httpdate_now() -> String {
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let text = installer::clock::format(installer::clock::from_unix(secs));
    // `2026-12-04 16:00:00 UTC` → an IMF-fixdate.
    let days = secs / 86_400;
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let (date, time) = text.split_once(' ').unwrap_or(("1970-01-01", "00:00:00 UTC"));
    let mut d = date.split('-');
    let (y, m, dd) = (d.next().unwrap_or("1970"), d.next().unwrap_or("01"), d.next().unwrap_or("01"));
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][m.parse::<usize>().unwrap_or(1).clamp(1, 12) - 1];
    format!("{wd}, {dd} {month} {y} {} GMT", time.trim_end_matches(" UTC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_file_whole_and_in_ranges_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("anemos-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.image.tar.zst");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &data).unwrap();
        let s = ImageServer::start(&file, None, "127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(s.size, 100_000);
        assert!(ImageServer::start(&file, Some(&"0".repeat(64)), "127.0.0.1:0".parse().unwrap()).is_err(), "a wrong pin");
        let get = |path: &str, range: Option<u64>| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            let r = range.map(|n| format!("Range: bytes={n}-\r\n")).unwrap_or_default();
            write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n{r}\r\n").unwrap();
            let mut all = Vec::new();
            c.read_to_end(&mut all).unwrap();
            let at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            (String::from_utf8_lossy(&all[..at]).into_owned(), all[at + 4..].to_vec())
        };
        let (head, body) = get(&s.path, None);
        assert!(head.starts_with("HTTP/1.1 200") && head.contains(" GMT\r\n"), "{head}");
        assert!(body == data);
        let (head, body) = get(&s.path, Some(99_990));
        assert!(head.contains("206") && head.contains("bytes 99990-99999/100000"), "{head}");
        assert_eq!(body, &data[99_990..]);
        assert!(get("/other/x.image.tar.zst", None).0.contains("404"));
        assert_eq!(installer::clock::parse_http_date(&httpdate_now()).map(|_| ()), Some(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
