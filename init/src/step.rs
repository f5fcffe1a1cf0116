//! Named steps: each logs its start and end with timing, emits phase events, honours
//! `anemos.fail=STEP`, and sends any error to the failure routine.

use std::time::Instant;

use installer::event::{emit, Event};

use crate::cmdline::Options;
use crate::ending;

/// Runs a step; on error, never returns.
pub fn run<T>(opts: &Options, name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> T {
    if opts.fail.as_deref() == Some(name) {
        log::info!("[started] {name}");
        ending::fail(name, &anyhow::anyhow!("failure injected by anemos.fail={name} on the kernel command line"));
    }
    timed(name, f)
}

/// Runs a step before the command line is known (no failure injection).
pub fn run_unconfigured<T>(name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> T {
    timed(name, f)
}

fn timed<T>(name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> T {
    let start = Instant::now();
    log::info!("[started] {name}");
    emit(Event::PhaseStarted { phase: name.to_string() });
    match f() {
        Ok(v) => {
            let ms = start.elapsed().as_millis() as u64;
            log::info!("[finished] {name} in {:.2} s", ms as f64 / 1000.0);
            emit(Event::PhaseFinished { phase: name.to_string(), ms });
            v
        }
        Err(e) => ending::fail(name, &e),
    }
}
