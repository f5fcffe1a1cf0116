//! Hostile and broken input for the Debian installer, end to end through prepare + install:
//! a signed test repository (`tests/fixtures/fake-repo.sh`: real dpkg-deb packages and
//! hostile ones made with GNU tar and ar) served by a loopback mirror that misbehaves on
//! purpose. Each case either recovers (retries, resumption) or stops with an error naming the
//! URL and the package, and nothing is ever written outside the target root (the hostile
//! packages aim at /tmp/anemos-canary).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anemos_tests::{scratch, sh, workspace};
use anyhow::Result;
use installer::packages::debian::{self, Config, InstallOptions, Source, Variant};

const CANARY: &str = "/tmp/anemos-canary";

/// The fixture repository, generated once per test run.
fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("debian-hostile-fixture");
        sh(&format!("sh {}/tests/fixtures/fake-repo.sh {}", workspace().display(), dir.display())).unwrap();
        dir
    })
}

/// Serves the fixture under `/MODE/…`: `ok`, `badsig` and `unsigned` (other InRelease files),
/// `flaky` (every pool file fails twice with 500), `stall` (the first answer of each pool file
/// stops mid-body), `corrupt` (pool files with a flipped byte), `trunc` (pool files always cut),
/// `tamper` (another valid package in place of the indexed one), `oversize` (indexes with a
/// megabyte more than the Release signed), `replay` (the older suite's correctly signed
/// InRelease in place of the one asked for).
fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let repo = fixture().join("repo");
        let hits: &'static Mutex<HashMap<String, usize>> = Box::leak(Box::new(Mutex::new(HashMap::new())));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let repo = repo.clone();
                std::thread::spawn(move || {
                    let _ = answer(conn, &repo, hits);
                });
            }
        });
        url
    })
}

fn answer(conn: std::net::TcpStream, repo: &Path, hits: &Mutex<HashMap<String, usize>>) -> std::io::Result<()> {
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
    let (mode, rest) = path.trim_start_matches('/').split_once('/').unwrap_or(("", ""));
    let mut file = rest.to_string();
    if file.ends_with("/InRelease") && mode == "badsig" {
        file.push_str(".bad");
    } else if file.ends_with("/InRelease") && mode == "unsigned" {
        file.push_str(".unsigned");
    } else if file == "dists/test/InRelease" && mode == "replay" {
        file = "dists/old/InRelease".into();
    }
    let evil = repo.join(format!("{file}.evil"));
    let Ok(mut body) = std::fs::read(repo.join(&file)) else {
        return write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    if mode == "tamper" && evil.is_file() {
        // The other package, padded after its last member to the indexed size, so that
        // only the digest can tell.
        let mut other = std::fs::read(&evil)?;
        other.resize(other.len().max(body.len()), b'\n');
        body = other;
    }
    let pool = file.starts_with("pool/");
    let n = {
        let mut h = hits.lock().unwrap();
        let c = h.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    if pool && mode == "flaky" && n <= 2 && !head {
        return write!(out, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    if pool && mode == "corrupt" {
        let mid = body.len() / 2;
        body[mid] ^= 0x55;
    }
    if file.ends_with("/Packages") && mode == "oversize" {
        body.extend(std::iter::repeat_n(b'\n', 1 << 20));
    }
    let total = body.len();
    let part = &body[start.min(total)..];
    let status = if start > 0 { format!("206 Partial\r\nContent-Range: bytes {start}-{}/{total}", total - 1) } else { "200 OK".into() };
    write!(out, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", part.len())?;
    if head {
        return Ok(());
    }
    let cut = part.len() / 2;
    if pool && (mode == "trunc" || (mode == "stall" && n == 1)) {
        out.write_all(&part[..cut])?;
        out.flush()?;
        if mode == "stall" {
            std::thread::sleep(Duration::from_secs(3));
        }
        return Ok(());
    }
    out.write_all(part)
}

fn config(mode: &str, include: &[&str]) -> Config {
    config_suite(mode, "test", include)
}

fn config_suite(mode: &str, suite: &str, include: &[&str]) -> Config {
    let source = Source::parse(&format!("{}/{mode} {suite} main", server()), suite).unwrap();
    let mut c = Config::new(vec![source], fixture().join("keys/good.gpg"));
    c.arch = "amd64".into();
    c.variant = Variant::Essential;
    c.include = include.iter().map(|s| s.to_string()).collect();
    c.fetch.read_timeout = Duration::from_millis(700);
    c.fetch.backoff = Duration::from_millis(20);
    c.fetch.retries = 3;
    c
}

/// prepare + install (unpack and register only) into a fresh root.
fn run(name: &str, mode: &str, include: &[&str]) -> (PathBuf, Result<()>) {
    let root = scratch(&format!("debian-hostile-{name}")).join("root");
    let r = debian::prepare(&config(mode, include)).and_then(|p| debian::install(&p, &root, &InstallOptions { configure: false, ..InstallOptions::default() }).map(|_| ()));
    (root, r)
}

fn canary_untouched() {
    assert!(!Path::new(CANARY).exists(), "something was written to {CANARY}");
}

#[test]
fn a_clean_install_registers_what_dpkg_then_configures() {
    let (root, r) = run("ok", "ok", &["world"]);
    r.unwrap();
    assert_eq!(std::fs::read_to_string(root.join("etc/hello.conf.dpkg-new")).unwrap(), "setting=1\n");
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains("Package: hello\nStatus: install ok unpacked\n"), "{status}");
    assert!(status.contains(" /etc/hello.conf newconffile"), "{status}");
    // The real dpkg takes over from our registration (no maintainer scripts: --root works).
    let r = root.display();
    sh(&format!("dpkg --root={r} --force-script-chrootless --configure -a")).unwrap();
    assert_eq!(sh(&format!("dpkg --root={r} --audit")).unwrap(), "");
    assert_eq!(sh(&format!("dpkg --root={r} -V hello world")).unwrap(), "");
    assert_eq!(std::fs::read_to_string(root.join("etc/hello.conf")).unwrap(), "setting=1\n");
    let list = std::fs::read_to_string(root.join("var/lib/dpkg/info/hello.list")).unwrap();
    assert!(list.starts_with("/.\n") && list.contains("/usr/share/hello/link\n"), "{list}");
    assert!(sh(&format!("dpkg --root={r} -s hello")).unwrap().contains("Status: install ok installed"));
}

#[test]
fn server_errors_and_stalls_are_retried_and_resumed() {
    for mode in ["flaky", "stall"] {
        let (root, r) = run(mode, mode, &["world"]);
        r.unwrap_or_else(|e| panic!("{mode}: {e:#}"));
        assert!(root.join("usr/share/world/file").is_file());
    }
}

#[test]
fn corrupt_and_truncated_downloads_stop_naming_url_and_package() {
    for (mode, what) in [("corrupt", "SHA-256 mismatch"), ("trunc", "broke")] {
        let (root, r) = run(mode, mode, &["hello"]);
        let err = format!("{:#}", r.unwrap_err());
        assert!(err.contains("package hello 1.0") && err.contains("/pool/main/hello_1.0_amd64.deb") && err.contains(what), "{mode}: {err}");
        assert!(!root.join("usr/share/hello").exists(), "{mode}: part of the package was unpacked before it was verified");
    }
}

/// A mirror that serves another, perfectly valid package under the indexed name: it is
/// refused by its SHA-256 before any byte of it is unpacked.
#[test]
fn a_tampered_package_is_refused_before_a_byte_is_unpacked() {
    let (root, r) = run("tamper", "tamper", &["hello"]);
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("package hello 1.0") && err.contains("/tamper/pool/main/hello_1.0_amd64.deb") && err.contains("SHA-256 mismatch"), "{err}");
    assert!(!root.join("usr/share/hello/EVIL").exists() && !root.join("usr/share/hello").exists(), "the tampered package was unpacked");
    // A signed index whose entry does not match the package: the same, from the other side.
    let root = scratch("debian-hostile-badhash").join("root");
    let r = debian::prepare(&config_suite("ok", "badhash", &["hello"])).and_then(|p| debian::install(&p, &root, &InstallOptions { configure: false, ..InstallOptions::default() }));
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("package hello 1.0") && err.contains("SHA-256 mismatch") && err.contains("0000000000"), "{err}");
    assert!(!root.join("usr/share/hello").exists());
}

#[test]
fn a_decompression_bomb_is_cut_off() {
    let (root, r) = run("bomb", "ok", &["bomb"]);
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("package bomb 1.0") && err.contains("/pool/main/bomb_1.0_amd64.deb") && err.contains("decompression bomb"), "{err}");
    let written = std::fs::metadata(root.join("zeros")).map(|m| m.len()).unwrap_or(0);
    assert!(written <= 32 << 20, "{written} bytes of the bomb were written");
    canary_untouched();
}

/// Indexes: longer than the Release signed, or a correctly signed Release of another suite
/// (an older one replayed): both stop prepare, which runs before any disk is touched.
#[test]
fn oversized_indexes_and_replayed_suites_stop_prepare() {
    let err = format!("{:#}", debian::prepare(&config("oversize", &["hello"])).unwrap_err());
    assert!(err.contains("/oversize/dists/test/main/binary-amd64/Packages") && err.contains("more than the expected"), "{err}");
    let err = format!("{:#}", debian::prepare(&config("replay", &["hello"])).unwrap_err());
    assert!(err.contains("/replay/dists/test/InRelease") && err.contains("signed for suite \"old\"") && err.contains("\"test\""), "{err}");
}

#[test]
fn bad_and_missing_signatures_stop_prepare() {
    for (mode, what) in [("badsig", "BAD signature"), ("unsigned", "not a clearsigned")] {
        let err = format!("{:#}", debian::prepare(&config(mode, &["hello"])).unwrap_err());
        assert!(err.contains(what) && err.contains("/dists/test/InRelease"), "{mode}: {err}");
    }
    let mut c = config("ok", &["hello"]);
    c.keyring = fixture().join("keys/sub.gpg");
    let err = format!("{:#}", debian::prepare(&c).unwrap_err());
    assert!(err.contains("no signature by a key of"), "{err}");
    let err = format!("{:#}", debian::prepare(&config("ok", &["nonexistent"])).unwrap_err());
    assert!(err.contains("no package provides nonexistent"), "{err}");
}

#[test]
fn hostile_packages_never_write_outside_the_root() {
    for (pkg, what) in [("dotdot", "`..`"), ("absolute", "absolute path")] {
        let (_, r) = run(pkg, "ok", &[pkg]);
        let err = format!("{:#}", r.unwrap_err());
        assert!(err.contains(what) && err.contains(&format!("package {pkg} 1.0")), "{pkg}: {err}");
        canary_untouched();
    }
    // The planted symlink to / is followed only inside the root.
    let (root, r) = run("escape", "ok", &["escape"]);
    r.unwrap();
    assert!(root.join("tmp/anemos-canary/pwned").is_file());
    canary_untouched();
}

#[test]
fn device_nodes_and_fifos_are_real() {
    use std::os::unix::fs::FileTypeExt;
    let (root, r) = run("devices", "ok", &["devices"]);
    r.unwrap();
    assert!(std::fs::symlink_metadata(root.join("dev/null")).unwrap().file_type().is_char_device());
    assert!(std::fs::symlink_metadata(root.join("dev/fifo")).unwrap().file_type().is_fifo());
}
