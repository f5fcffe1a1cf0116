//! Download progress for the console and the event stream: items n/N, bytes, rate and ETA,
//! reported at most once per interval (a serial console at 115200 baud must not be flooded)
//! and once at the end. Shared by all download threads (atomics, one mutex for the clock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::{emit, Event};

pub struct Progress {
    phase: String,
    total_items: u64,
    total_bytes: u64,
    items: AtomicU64,
    bytes: AtomicU64,
    /// Nanoseconds the workers spent waiting for the mirror (requests and body reads).
    wait_ns: AtomicU64,
    /// Nanoseconds the workers spent on whole items (waiting, verifying, unpacking).
    work_ns: AtomicU64,
    start: Instant,
    last: Mutex<Instant>,
    interval: Duration,
}

impl Progress {
    /// `phase` names the event phase (e.g. `packages`).
    pub fn new(phase: &str, total_items: u64, total_bytes: u64) -> Progress {
        let now = Instant::now();
        Progress {
            phase: phase.to_string(),
            total_items,
            total_bytes,
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            wait_ns: AtomicU64::new(0),
            work_ns: AtomicU64::new(0),
            start: now,
            last: Mutex::new(now),
            interval: Duration::from_secs(2),
        }
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.maybe_report(false);
    }

    /// One item finished; the last one always reports.
    pub fn item_done(&self) {
        let done = self.items.fetch_add(1, Ordering::Relaxed) + 1;
        self.maybe_report(done == self.total_items);
    }

    /// Time a worker spent waiting for the mirror.
    pub fn add_wait(&self, d: Duration) {
        self.wait_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Time a worker spent on one item, start to end.
    pub fn add_work(&self, d: Duration) {
        self.work_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Where the workers' time went, once all items are done: `streamed 90 packages (24.1
    /// MiB) in 12.0 s: the workers waited for the mirror 3.1 s of 20.5 s (15%)`. Download and
    /// unpacking overlap, so this share is how the wall time splits between them.
    pub fn summary(&self) -> String {
        let (items, bytes) = self.counts();
        let secs = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        let (wait, work) = (secs(&self.wait_ns), secs(&self.work_ns));
        format!(
            "streamed {items} {} ({:.1} MiB) in {:.1} s: the workers waited for the mirror {wait:.1} s of {work:.1} s ({:.0}%)",
            self.phase,
            bytes as f64 / 1048576.0,
            self.start.elapsed().as_secs_f64(),
            if work > 0.0 { 100.0 * wait / work } else { 0.0 }
        )
    }

    /// `(items, bytes)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.items.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }

    fn maybe_report(&self, force: bool) {
        let now = Instant::now();
        {
            let Ok(mut last) = self.last.lock() else { return };
            if !force && now.duration_since(*last) < self.interval {
                return;
            }
            *last = now;
        }
        let (items, bytes) = self.counts();
        log::info!("{}", self.line(items, bytes, now.duration_since(self.start)));
        emit(Event::Progress { phase: self.phase.clone(), done: items, total: self.total_items, unit: "packages".into() });
        emit(Event::Progress { phase: self.phase.clone(), done: bytes, total: self.total_bytes, unit: "bytes".into() });
    }

    /// `packages 12/90, 10.2/24.1 MiB, 5.1 MiB/s, ETA 3 s`
    pub fn line(&self, items: u64, bytes: u64, elapsed: Duration) -> String {
        let mib = |b: u64| b as f64 / 1048576.0;
        let rate = bytes as f64 / elapsed.as_secs_f64().max(0.001);
        let eta = if rate > 0.0 && self.total_bytes > bytes { format!("ETA {:.0} s", (self.total_bytes - bytes) as f64 / rate) } else { "ETA -".to_string() };
        format!("{} {items}/{}, {:.1}/{:.1} MiB, {:.1} MiB/s, {eta}", self.phase, self.total_items, mib(bytes), mib(self.total_bytes), rate / 1048576.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_counts_rate_and_eta() {
        let p = Progress::new("packages", 90, 20 * 1048576);
        assert_eq!(p.line(12, 10 * 1048576, Duration::from_secs(2)), "packages 12/90, 10.0/20.0 MiB, 5.0 MiB/s, ETA 2 s");
        assert!(p.line(0, 0, Duration::ZERO).ends_with("ETA -"));
    }

    #[test]
    fn summary_splits_worker_time_into_waiting_and_the_rest() {
        let p = Progress::new("packages", 2, 2 * 1048576);
        p.add_bytes(2 * 1048576);
        p.item_done();
        p.item_done();
        p.add_wait(Duration::from_millis(500));
        p.add_work(Duration::from_millis(1500));
        p.add_work(Duration::from_millis(500));
        let s = p.summary();
        assert!(s.starts_with("streamed 2 packages (2.0 MiB) in "), "{s}");
        assert!(s.ends_with("waited for the mirror 0.5 s of 2.0 s (25%)"), "{s}");
    }
}
