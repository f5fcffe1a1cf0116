//! Structured events: the machine-readable record of what an install is doing. The init
//! prints each as one line `ANEMOS-EVENT {json}` on the console (and later serves them over
//! HTTP); the host side (QEMU harness, `anemos deploy`) parses those lines back.

use std::sync::{Mutex, OnceLock};

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
    },
    PhaseStarted { phase: String },
    PhaseFinished { phase: String, ms: u64 },
    /// Progress inside a phase (e.g. packages n/N).
    Progress { phase: String, done: u64, total: u64, unit: String },
    /// A step failed; `action` is what the init does about it (rescue, reboot, poweroff).
    Failed { phase: String, error: String, action: String },
    /// The init found and validated the payload's plan.
    PlanLoaded { imgname: String, target: String, packages: usize, partitions: usize },
    /// The rescue console is waiting for commands.
    Rescue,
    /// The init is about to reboot, power off or kexec.
    Shutdown { action: String },
    /// The install completed.
    Done { ms: u64 },
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
        serde_json::from_str(line[start..].trim_end()).ok()
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

/// Hands `event` to every sink (and to the debug log).
pub fn emit(event: Event) {
    log::debug!("event: {event:?}");
    if let Ok(s) = sinks().lock() {
        for sink in s.iter() {
            sink(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let ev = Event::PhaseFinished { phase: "modules".into(), ms: 12 };
        let line = format!("[    1.234] {}", ev.to_line());
        assert_eq!(Event::parse_line(&line), Some(ev));
        assert_eq!(Event::parse_line("nothing here"), None);
    }
}
