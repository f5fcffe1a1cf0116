//! Structured events: the machine-readable record of what an install is doing. The init
//! prints each as one line `ANEMOS-EVENT {json}` on the console (and later serves them over
//! HTTP); the host side (QEMU harness, `anemos deploy`) parses those lines back.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The prefix of an event line on the console.
pub const PREFIX: &str = "ANEMOS-EVENT ";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The init finished bring-up: pseudo filesystems, console, modules, devices.
    Ready {
        uptime_ms: u64,
        kernel: String,
        mode: String,
        modules_loaded: usize,
        block_devices: Vec<String>,
        /// Addresses configured, e.g. `eth0: 10.0.2.15/24 (DHCP from 10.0.2.2)`.
        #[serde(default)]
        network: Vec<String>,
    },
    PhaseStarted {
        phase: String,
    },
    PhaseFinished {
        phase: String,
        ms: u64,
    },
    /// Progress inside a phase (e.g. packages n/N).
    Progress {
        phase: String,
        done: u64,
        total: u64,
        unit: String,
    },
    /// A step failed; `action` is what the init does about it (rescue, reboot, poweroff).
    Failed {
        phase: String,
        error: String,
        action: String,
    },
    /// The init found and validated the payload's plan.
    PlanLoaded {
        imgname: String,
        target: String,
        packages: usize,
        partitions: usize,
    },
    /// The rescue console is waiting for commands.
    Rescue,
    /// The init is about to reboot, power off or kexec.
    Shutdown {
        action: String,
    },
    /// The install completed.
    Done {
        ms: u64,
    },
    /// A log line (info and above), for remote viewers; not printed on the console again.
    Log {
        level: String,
        message: String,
    },
}

impl Event {
    /// The console line for this event, without a newline.
    pub fn to_line(&self) -> String {
        // Serialising these plain structs cannot fail; fall back to a debug string anyway.
        let json = serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"event\":\"invalid\",\"error\":\"{e}\"}}"));
        format!("{PREFIX}{json}")
    }

    /// Parses an event out of a console line (anything before the prefix is ignored, so
    /// kernel timestamps or serial noise do not matter).
    pub fn parse_line(line: &str) -> Option<Event> {
        let start = line.find(PREFIX)? + PREFIX.len();
        serde_json::from_slice(line[start..].trim_end().as_bytes()).ok()
    }
}

type Sink = Box<dyn Fn(&Event) + Send + Sync>;

fn sinks() -> &'static Mutex<Vec<Sink>> {
    static SINKS: OnceLock<Mutex<Vec<Sink>>> = OnceLock::new();
    SINKS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Registers a receiver of every event emitted from now on.
pub fn add_sink(sink: impl Fn(&Event) + Send + Sync + 'static) {
    if let Ok(mut s) = sinks().lock() {
        s.push(Box::new(sink));
    }
}

/// The events emitted so far, numbered from 1, for remote viewers that poll.
struct History {
    events: Mutex<VecDeque<(u64, Event)>>,
    next: Mutex<u64>,
    changed: Condvar,
}

/// At most this many events are kept; older ones are dropped (log lines dominate).
const HISTORY_LIMIT: usize = 20_000;

fn history() -> &'static History {
    static HISTORY: OnceLock<History> = OnceLock::new();
    HISTORY.get_or_init(|| History { events: Mutex::new(VecDeque::new()), next: Mutex::new(1), changed: Condvar::new() })
}

impl Event {
    /// The event with every registered secret value replaced ([`crate::redact`]) in its
    /// free text (log messages and error chains; the other fields are ours).
    pub fn redacted(self) -> Event {
        if !crate::redact::active() {
            return self;
        }
        let r = |s: String| crate::redact::redact(&s).into_owned();
        match self {
            Event::Log { level, message } => Event::Log { level, message: r(message) },
            Event::Failed { phase, error, action } => Event::Failed { phase, error: r(error), action },
            other => other,
        }
    }
}

/// Hands `event` (its secrets redacted) to every sink and records it in the history.
pub fn emit(event: Event) {
    let event = event.redacted();
    if !matches!(event, Event::Log { .. }) {
        log::debug!("event: {event:?}");
    }
    if let Ok(s) = sinks().lock() {
        for sink in s.iter() {
            sink(&event);
        }
    }
    let h = history();
    if let (Ok(mut events), Ok(mut next)) = (h.events.lock(), h.next.lock()) {
        events.push_back((*next, event));
        *next += 1;
        while events.len() > HISTORY_LIMIT {
            events.pop_front();
        }
    }
    h.changed.notify_all();
}

/// The number of the last event emitted (0 before the first).
pub fn last_seq() -> u64 {
    history().next.lock().map(|n| *n - 1).unwrap_or(0)
}

/// The recorded events numbered above `after`, waiting up to `wait` for one to arrive.
pub fn since(after: u64, wait: Duration) -> Vec<(u64, Event)> {
    let h = history();
    let deadline = std::time::Instant::now() + wait;
    let Ok(mut events) = h.events.lock() else { return Vec::new() };
    loop {
        let found: Vec<(u64, Event)> = events.iter().filter(|(n, _)| *n > after).cloned().collect();
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !found.is_empty() || left.is_zero() {
            return found;
        }
        match h.changed.wait_timeout(events, left) {
            Ok((guard, _)) => events = guard,
            Err(_) => return Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_numbered_and_waits() {
        emit(Event::PhaseStarted { phase: "test-history".into() });
        let all = since(0, Duration::ZERO);
        let (n, _) = all.iter().find(|(_, e)| matches!(e, Event::PhaseStarted { phase } if phase == "test-history")).unwrap();
        assert!(since(*n, Duration::from_millis(10)).iter().all(|(m, _)| m > n));
        let t = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            emit(Event::Rescue);
        });
        let last = since(0, Duration::ZERO).last().unwrap().0;
        let got = since(last, Duration::from_secs(5));
        t.join().unwrap();
        assert!(got.iter().any(|(_, e)| *e == Event::Rescue));
    }

    #[test]
    fn lines_round_trip() {
        let ev = Event::PhaseFinished { phase: "modules".into(), ms: 12 };
        let line = format!("[    1.234] {}", ev.to_line());
        assert_eq!(Event::parse_line(&line), Some(ev));
        assert_eq!(Event::parse_line("nothing here"), None);
    }
}
