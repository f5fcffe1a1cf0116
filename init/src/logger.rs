//! The init's logger: every record goes to the consoles (timestamped, human readable), to
//! `/dev/kmsg` (so `dmesg` and the kernel's own buffer have it) and into memory, so the whole
//! log can be shown by the rescue console and saved into the installed system.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The in-memory copy stops growing here; a note in the log says so.
const MEMORY_LIMIT: usize = 64 << 20;

pub struct Logger {
    console_level: Mutex<LevelFilter>,
    consoles: Mutex<Vec<File>>,
    kmsg: Mutex<Option<File>>,
    memory: Mutex<Vec<u8>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger (before anything is mounted it writes to stderr only).
pub fn install() {
    let logger = LOGGER.get_or_init(|| Logger { console_level: Mutex::new(LevelFilter::Info), consoles: Mutex::new(Vec::new()), kmsg: Mutex::new(None), memory: Mutex::new(Vec::new()) });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
}

fn get() -> Option<&'static Logger> {
    LOGGER.get()
}

/// Points the logger at the devices, once /dev exists: every console named on the command
/// line (or /dev/console) and /dev/kmsg.
pub fn attach(consoles: &[String], level: LevelFilter) {
    let Some(l) = get() else { return };
    if let Ok(mut lvl) = l.console_level.lock() {
        *lvl = level;
    }
    log::set_max_level(level.max(LevelFilter::Debug));
    let mut files = Vec::new();
    let mut names: Vec<String> = consoles.iter().map(|c| format!("/dev/{c}")).collect();
    if names.is_empty() {
        names.push("/dev/console".into());
    }
    names.dedup();
    for name in &names {
        match OpenOptions::new().write(true).open(name) {
            Ok(f) => files.push(f),
            Err(e) => eprintln!("anemos: cannot open console {name}: {e}"),
        }
    }
    if let Ok(mut c) = l.consoles.lock() {
        *c = files;
    }
    if let Ok(mut k) = l.kmsg.lock() {
        *k = OpenOptions::new().write(true).open("/dev/kmsg").ok();
    }
}

/// The whole in-memory log.
pub fn memory() -> String {
    get().and_then(|l| l.memory.lock().ok().map(|m| String::from_utf8_lossy(&m).into_owned())).unwrap_or_default()
}

/// Writes a line to the consoles only (events, prompts, command output), unfiltered.
pub fn console_line(line: &str) {
    let Some(l) = get() else {
        eprintln!("{line}");
        return;
    };
    let ok = l.consoles.lock().map(|mut cs| {
        for c in cs.iter_mut() {
            let _ = writeln!(c, "{line}");
        }
        !cs.is_empty()
    });
    if !matches!(ok, Ok(true)) {
        eprintln!("{line}");
    }
}

/// Seconds since boot, the clock the kernel's own log timestamps use.
pub fn uptime() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn kmsg_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Every copy — memory, consoles, kmsg, the event stream — gets the redacted line.
        let msg = installer::redact::redact(&record.args().to_string()).into_owned();
        let line = format!("[{:>10.3}] {:<5} {msg}", uptime(), record.level());
        if let Ok(mut m) = self.memory.lock() {
            if m.len() < MEMORY_LIMIT {
                m.extend_from_slice(line.as_bytes());
                m.push(b'\n');
            }
        }
        if record.level() <= Level::Info {
            installer::event::emit(installer::event::Event::Log { level: record.level().to_string(), message: msg.clone() });
        }
        let console_level = self.console_level.lock().map(|l| *l).unwrap_or(LevelFilter::Info);
        if record.level() <= console_level {
            console_line(&line);
            if let Ok(mut k) = self.kmsg.lock() {
                if let Some(k) = k.as_mut() {
                    // One kmsg record per line; the kernel truncates records near 1 KiB.
                    for part in msg.lines() {
                        let part: String = part.chars().take(900).collect();
                        let _ = writeln!(k, "<{}>anemos: {part}", kmsg_priority(record.level()));
                    }
                }
            }
        }
    }

    fn flush(&self) {}
}
