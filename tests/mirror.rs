//! The caching mirror proxy against a counting upstream on loopback: pool files are fetched
//! once ever (streamed through on the first request), index files once per proxy process;
//! HEAD, Range, 404 and concurrent clients.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use anemos_tests::mirror::MirrorProxy;
use anemos_tests::scratch;
use installer::packages::debian::Source;

type Hits = Arc<Mutex<HashMap<String, usize>>>;

fn upstream(files: HashMap<&'static str, Vec<u8>>) -> (String, Hits) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits: Hits = Arc::default();
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut out = conn.try_clone().unwrap();
            let mut reader = BufReader::new(conn);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            while reader.read_line(&mut String::new()).map(|n| n > 2).unwrap_or(false) {}
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            *h.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
            match files.get(path.as_str()) {
                Some(body) => {
                    let _ = write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = out.write_all(body);
                }
                None => {
                    let _ = write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        }
    });
    (url, hits)
}

fn get(url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let mut req = agent.get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.call().unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().read_to_vec().unwrap())
}

#[test]
fn caches_pool_forever_and_indexes_per_run() {
    let deb: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let files = HashMap::from([("/debian/pool/main/x.deb", deb.clone()), ("/debian/dists/s/InRelease", b"release".to_vec())]);
    let (up, hits) = upstream(files);
    let cache = scratch("mirror-cache");
    let source = Source { uri: format!("{up}/debian"), suite: "s".into(), components: vec!["main".into()] };
    let proxy = MirrorProxy::start_with(0, std::slice::from_ref(&source), &cache).unwrap();
    let base = proxy.local_uri(&source.uri).unwrap();
    assert_eq!(base, format!("{}/debian", proxy.base()));

    let threads: Vec<_> = (0..4)
        .map(|_| {
            let u = format!("{base}/pool/main/x.deb");
            std::thread::spawn(move || get(&u, None))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), (200, deb.clone()));
    }
    assert_eq!(get(&format!("{base}/pool/main/x.deb"), Some("bytes=1000-")), (206, deb[1000..].to_vec()));
    assert_eq!(get(&format!("{base}/pool/main/x.deb"), Some("bytes=10-19")), (206, deb[10..20].to_vec()));
    let pool_hits = hits.lock().unwrap()["/debian/pool/main/x.deb"];
    assert!((1..=4).contains(&pool_hits), "{pool_hits}");
    assert_eq!(get(&format!("{base}/dists/s/InRelease"), None), (200, b"release".to_vec()));
    assert_eq!(get(&format!("{base}/dists/s/InRelease"), None).1, b"release");
    assert_eq!(hits.lock().unwrap()["/debian/dists/s/InRelease"], 1);
    assert_eq!(get(&format!("{base}/dists/s/missing"), None).0, 404);
    assert_eq!(get(&format!("{}/elsewhere/x", proxy.base()), None).0, 404);

    // HEAD answers the length without a body.
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let head = agent.head(&format!("{base}/pool/main/x.deb")).call().unwrap();
    assert_eq!(head.headers().get("content-length").unwrap().to_str().unwrap(), deb.len().to_string());

    // A new proxy process (same cache): indexes are fetched again, pool files are not.
    let proxy2 = MirrorProxy::start_with(0, std::slice::from_ref(&source), &cache).unwrap();
    let base2 = proxy2.local_uri(&source.uri).unwrap();
    assert_eq!(get(&format!("{base2}/pool/main/x.deb"), None).1, deb);
    assert_eq!(get(&format!("{base2}/dists/s/InRelease"), None).1, b"release");
    let h = hits.lock().unwrap();
    assert_eq!(h["/debian/pool/main/x.deb"], pool_hits);
    assert_eq!(h["/debian/dists/s/InRelease"], 2);
}
