//! The fetcher against a loopback server that misbehaves on purpose.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

#[derive(Clone, Copy, Debug)]
enum Behave {
    Ok,
    Status(u16),
    /// Promise the whole body, send this many bytes, close.
    Truncate(usize),
    /// Send this many bytes, then go silent.
    Stall(usize),
    /// Answer 200 with the whole body even to a Range request.
    IgnoreRange,
    /// Answer this status with this `Date` header and no body.
    Dated(u16, &'static str),
}

/// Serves `body` at any path; each request takes the next behaviour (the last one repeats).
/// Returns the base URL and the log of (range start) per request.
fn server(body: Vec<u8>, plan: Vec<Behave>) -> (String, Arc<Mutex<Vec<u64>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let behave = plan[n.min(plan.len() - 1)];
            let body = body.clone();
            let log = log2.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let (mut start, mut head) = (0u64, false);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head |= line.starts_with("HEAD ");
                    if let Some(r) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        start = r.trim().trim_end_matches('-').parse().unwrap();
                    }
                }
                log.lock().unwrap().push(start);
                let send = |c: &mut std::net::TcpStream, status: &str, extra: &str, data: &[u8], len: usize| {
                    let _ = write!(c, "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n");
                    if !head {
                        let _ = c.write_all(data);
                    }
                };
                let rest = &body[start as usize..];
                let range_hdr = format!("Content-Range: bytes {start}-{}/{}\r\n", body.len() - 1, body.len());
                let (status, extra) = if start > 0 { ("206 Partial Content", range_hdr.as_str()) } else { ("200 OK", "") };
                match behave {
                    Behave::Ok => send(&mut conn, status, extra, rest, rest.len()),
                    Behave::Status(s) => send(&mut conn, &format!("{s} Oops"), "", b"", 0),
                    Behave::Truncate(k) => send(&mut conn, status, extra, &rest[..k.min(rest.len())], rest.len()),
                    Behave::Stall(k) => {
                        send(&mut conn, status, extra, &rest[..k.min(rest.len())], rest.len());
                        let _ = conn.flush();
                        std::thread::sleep(Duration::from_secs(3));
                    }
                    Behave::IgnoreRange => send(&mut conn, "200 OK", "", &body, body.len()),
                    Behave::Dated(s, date) => send(&mut conn, &format!("{s} Whatever"), &format!("Date: {date}\r\n"), b"", 0),
                }
            });
        }
    });
    (url, log)
}

fn fetcher() -> Fetcher {
    Fetcher::new(FetchConfig {
        proxy: Some(String::new()),
        read_timeout: Duration::from_millis(400),
        connect_timeout: Duration::from_secs(2),
        retries: 3,
        backoff: Duration::from_millis(10),
        ..FetchConfig::default()
    })
    .unwrap()
}

fn body() -> (Vec<u8>, String) {
    let b: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b));
    (b, sha)
}

fn fetch(url: &str, b: &[u8], sha: &str) -> Result<Vec<u8>> {
    let f = fetcher();
    let mut r = f.open(&format!("{url}/pool/x.deb"), Expected { size: Some(b.len() as u64), sha256: Some(sha.into()), limit: None })?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn retries_server_errors_then_succeeds() {
    let (b, sha) = body();
    let (url, log) = server(b.clone(), vec![Behave::Status(500), Behave::Status(503), Behave::Ok]);
    assert_eq!(fetch(&url, &b, &sha).unwrap(), b);
    assert_eq!(log.lock().unwrap().len(), 3);
}

#[test]
fn resumes_truncated_and_stalled_bodies_with_range() {
    let (b, sha) = body();
    let (url, log) = server(b.clone(), vec![Behave::Truncate(70_000), Behave::Stall(50_000), Behave::Ok]);
    assert_eq!(fetch(&url, &b, &sha).unwrap(), b);
    let starts = log.lock().unwrap().clone();
    assert_eq!(starts[0], 0);
    assert!(starts[1] > 0 && starts[2] > starts[1], "{starts:?}");
}

#[test]
fn a_server_ignoring_ranges_is_skipped_forward() {
    let (b, sha) = body();
    let (url, _) = server(b.clone(), vec![Behave::Truncate(90_000), Behave::IgnoreRange]);
    assert_eq!(fetch(&url, &b, &sha).unwrap(), b);
}

#[test]
fn gives_up_naming_the_url() {
    let (b, sha) = body();
    let (url, _) = server(b.clone(), vec![Behave::Status(500)]);
    let err = format!("{:#}", fetch(&url, &b, &sha).unwrap_err());
    assert!(err.contains("/pool/x.deb") && err.contains("500"), "{err}");
    let (url, _) = server(b.clone(), vec![Behave::Stall(1000)]);
    let err = format!("{:#}", fetch(&url, &b, &sha).unwrap_err());
    assert!(err.contains("/pool/x.deb") && err.contains("broke"), "{err}");
    let (url, _) = server(b.clone(), vec![Behave::Status(404)]);
    let err = format!("{:#}", fetch(&url, &b, &sha).unwrap_err());
    assert!(err.contains("404"), "{err}");
}

#[test]
fn checksum_and_size_mismatches_are_refused() {
    let (b, sha) = body();
    let (url, _) = server(b.clone(), vec![Behave::Ok]);
    let bad = "0".repeat(64);
    let err = format!("{:#}", fetch(&url, &b, &bad).unwrap_err());
    assert!(err.contains("SHA-256 mismatch") && err.contains(&sha), "{err}");
    let f = fetcher();
    let mut r = f.open(&format!("{url}/y"), Expected { size: Some(10), sha256: None, limit: None }).unwrap();
    assert!(r.read_to_end(&mut Vec::new()).is_err());
    assert!(f.get_bytes(&format!("{url}/z"), 100).is_err());
}

#[test]
fn probe_reports_length() {
    let (b, _) = body();
    let (url, _) = server(b.clone(), vec![Behave::Ok]);
    let p = fetcher().probe(&format!("{url}/pool/x.deb")).unwrap();
    assert_eq!(p.length, Some(b.len() as u64));
    let (url, _) = server(b, vec![Behave::Status(404)]);
    assert!(fetcher().probe(&format!("{url}/pool/x.deb")).unwrap_err().to_string().contains("404"));
}

#[test]
fn server_date_reads_the_date_header_of_any_answer() {
    let config = fetcher().config.clone();
    let (url, _) = server(b"x".to_vec(), vec![Behave::Dated(404, "Wed, 02 Jan 2030 03:04:05 GMT")]);
    assert_eq!(server_date(&config, &url).unwrap(), Some(crate::clock::from_unix(1_893_553_445)));
    let (url, _) = server(b"x".to_vec(), vec![Behave::Dated(200, "the day after tomorrow")]);
    assert_eq!(server_date(&config, &url).unwrap(), None);
    let (url, _) = server(b"x".to_vec(), vec![Behave::Ok]);
    assert_eq!(server_date(&config, &url).unwrap(), None, "no Date header");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert!(server_date(&config, &format!("http://127.0.0.1:{port}/")).unwrap_err().to_string().contains("HEAD http://127.0.0.1"));
}

#[test]
fn origin_keeps_scheme_host_and_port() {
    assert_eq!(origin("http://10.0.2.2:3142/debian").as_deref(), Some("http://10.0.2.2:3142/"));
    assert_eq!(origin("https://mirror.example/archlinux/$repo/os/$arch").as_deref(), Some("https://mirror.example/"));
    assert_eq!(origin("http://[::1]:80").as_deref(), Some("http://[::1]:80/"));
    assert_eq!(origin("http://h?x=1").as_deref(), Some("http://h/"));
    assert_eq!(origin("/srv/mirror"), None);
    assert_eq!(origin("http:///debian"), None);
}

/// HTTPS against `openssl s_server` with a certificate from our own CA: refused with the
/// bundled roots only, accepted once the CA is added.
#[test]
fn https_needs_and_accepts_a_custom_ca() {
    let dir = std::env::temp_dir().join(format!("anemos-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = "set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=anemos-test-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext 2>/dev/null
        echo hello > file";
    let st = std::process::Command::new("sh").arg("-c").arg(script).current_dir(&dir).status().unwrap();
    assert!(st.success(), "openssl could not make the test certificates");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-accept", &format!("127.0.0.1:{port}"), "-cert", "srv.pem", "-key", "srv.key", "-WWW"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://localhost:{port}/file");
    let plain = fetcher();
    let refused = plain.get_bytes(&url, 100);
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let with_ca = Fetcher::new(FetchConfig { extra_ca_pem: vec![ca], ..plain.config.clone() }).unwrap();
    let got = with_ca.get_bytes(&url, 100);
    // The clock probe talks to it without the CA: certificates cannot be judged yet. (s_server
    // -WWW does not answer HEAD, so the probe times out after the handshake.)
    let date = server_date(&plain.config, &url).map_err(|e| format!("{e:#}"));
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(refused.is_err(), "a certificate of an unknown CA was accepted");
    assert_eq!(got.unwrap(), b"hello\n");
    assert!(refused.as_ref().unwrap_err().chain().any(|e| e.to_string().contains("certificate")), "{refused:?}");
    assert!(date.as_ref().is_ok_and(Option::is_none) || date.as_ref().is_err_and(|e| e.contains("timeout") && !e.contains("certificate")), "{date:?}");
    assert!(Fetcher::new(FetchConfig { extra_ca_pem: vec![b"not a pem".to_vec()], ..FetchConfig::default() }).is_err());
}
