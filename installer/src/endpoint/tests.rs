//! The endpoint against hostile and ordinary clients, on loopback.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{start, Answer, Handler, Limits};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A handler whose control is refused (409) until `rescue` is set.
struct Fake {
    rescue: AtomicBool,
    done: Arc<AtomicUsize>,
}

impl Handler for Fake {
    fn log(&self) -> String {
        "the log\n".into()
    }
    fn control(&self, action: &str) -> Answer {
        if !self.rescue.load(Ordering::SeqCst) {
            return Answer::Refuse(409, "not in the rescue console: an install is running or none failed".into());
        }
        let done = self.done.clone();
        Answer::Accept(
            action.to_string(),
            Box::new(move || {
                done.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }
}

fn server(limits: Limits) -> (SocketAddr, Arc<Fake>) {
    let (addr, fake, _) = server_with_delivery(limits);
    (addr, fake)
}

fn server_with_delivery(limits: Limits) -> (SocketAddr, Arc<Fake>, Arc<super::Delivery>) {
    let fake = Arc::new(Fake { rescue: AtomicBool::new(false), done: Arc::new(AtomicUsize::new(0)) });
    let started = start(&[IpAddr::V4(Ipv4Addr::LOCALHOST)], 0, TOKEN, fake.clone(), limits).unwrap();
    (started.bound[0], fake, started.delivery)
}

/// One request; returns the status code and body.
fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(c, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn tokens_and_control_outside_the_rescue_console() {
    let (addr, fake) = server(Limits::default());
    assert_eq!(request(addr, "GET", "/events", None).0, 401);
    assert_eq!(request(addr, "GET", "/events", Some("0123456789abcdef0123456789abcdeX")).0, 401);
    assert_eq!(request(addr, "GET", "/log", Some(&TOKEN[..31])).0, 401, "a prefix of the token");
    crate::event::emit(crate::event::Event::PhaseStarted { phase: "endpoint-test".into() });
    let (code, body) = request(addr, "GET", "/events?after=0", Some(TOKEN));
    assert_eq!(code, 200);
    assert!(body.contains("\"phase\":\"endpoint-test\""), "{body}");
    assert_eq!(request(addr, "GET", "/log", Some(TOKEN)), (200, "the log\n".into()));
    // During an install, control requests are refused.
    let (code, body) = request(addr, "POST", "/control/reboot", Some(TOKEN));
    assert_eq!(code, 409, "{body}");
    assert_eq!(fake.done.load(Ordering::SeqCst), 0);
    fake.rescue.store(true, Ordering::SeqCst);
    assert_eq!(request(addr, "POST", "/control/reboot", Some(TOKEN)), (202, "reboot\n".into()));
    let t = Instant::now();
    while fake.done.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fake.done.load(Ordering::SeqCst), 1, "the accepted action did not run after the answer");
    assert_eq!(request(addr, "GET", "/nothing", Some(TOKEN)).0, 404);
}

#[test]
fn slow_and_idle_clients_cannot_hold_the_workers() {
    let limits = Limits { workers: 2, request_deadline: Duration::from_millis(1500) };
    let (addr, _) = server(limits);
    // Two clients that trickle a byte now and then take both workers…
    let mut slow: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // …so a third is answered 503 at once, by the accepting thread.
    let t = Instant::now();
    assert_eq!(request(addr, "GET", "/events", Some(TOKEN)).0, 503);
    assert!(t.elapsed() < Duration::from_secs(1), "the busy answer took {:?}", t.elapsed());
    // The slow ones are cut off at the deadline, however steadily they trickle.
    let t = Instant::now();
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    for _ in 0..6 {
        for c in &mut slow {
            let _ = c.write_all(b"G");
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    for c in &mut slow {
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty(), "a request that never completed was answered: {}", String::from_utf8_lossy(&rest));
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    // And the workers serve again.
    assert_eq!(request(addr, "GET", "/log", Some(TOKEN)).0, 200);
}

#[test]
fn many_concurrent_clients_are_served_or_told_busy() {
    let (addr, _) = server(Limits::default());
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..24).map(|_| s.spawn(move || request(addr, "GET", "/log", Some(TOKEN)).0)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|c| *c == 200 || *c == 503), "{answers:?}");
    assert!(answers.contains(&200));
    // The endpoint is still there afterwards.
    assert_eq!(request(addr, "GET", "/log", Some(TOKEN)).0, 200);
}

#[test]
fn no_addresses_no_endpoint() {
    let fake = Arc::new(Fake { rescue: AtomicBool::new(false), done: Arc::new(AtomicUsize::new(0)) });
    assert!(start(&[], 0, TOKEN, fake, Limits::default()).is_err());
}

/// Before it reboots, the installer waits for the workstation to have the last events,
/// and no longer than that.
#[test]
fn the_end_waits_until_the_workstation_has_it() {
    let (addr, _, delivery) = server_with_delivery(Limits::default());
    crate::event::emit(crate::event::Event::PhaseStarted { phase: "end-test".into() });
    let t = Instant::now();
    let d = delivery.clone();
    let waiter = std::thread::spawn(move || d.wait_delivered(Duration::from_secs(20), Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!waiter.is_finished(), "it did not wait for the events to be fetched");
    let (code, body) = request(addr, "GET", "/events?after=0", Some(TOKEN));
    assert!(code == 200 && body.contains("end-test"), "{body}");
    waiter.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "it waited {:?} after the events were fetched", t.elapsed());
}
