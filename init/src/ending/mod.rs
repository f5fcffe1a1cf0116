//! How the init ends: the one failure routine, the rescue state, retry and shutdown, with
//! their two front ends — the rescue console on the serial line ([`console`]) and the
//! event endpoint over the network ([`endpoint`]) — which both act through here.
//!
//! Every error of every step, and every panic, ends in [`fail`]: the error is logged with
//! its step and whole cause chain (secret values redacted), buffers are synced, registered
//! safety hooks run (e.g. to make a half-written disk unbootable), and the init does what
//! `anemos.on_failure` says. It never returns. The state they share is one [`State`].

pub mod console;
pub mod endpoint;
mod shutdown;

use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use installer::event::{emit, Event};

use crate::cmdline::Action;

pub use shutdown::shutdown;

type SafetyHook = Box<dyn Fn() -> anyhow::Result<()> + Send>;
type RescuePrep = Box<dyn Fn() + Send>;

/// Everything the ending's parts share.
struct State {
    /// Set by the first failure: a second one (another thread) is only logged.
    failing: AtomicBool,
    /// What a failure leads to (`anemos.on_failure`, or the plan's).
    action: Mutex<Action>,
    hooks: Mutex<Vec<(String, SafetyHook)>>,
    before_rescue: Mutex<Option<RescuePrep>>,
    /// The last failure (step, error), shown again by the rescue console and the endpoint.
    last: Mutex<Option<(String, String)>>,
    /// Set while the rescue console runs: remote control is allowed only then.
    rescue_active: AtomicBool,
}

static STATE: State = State {
    failing: AtomicBool::new(false),
    action: Mutex::new(Action::Rescue),
    hooks: Mutex::new(Vec::new()),
    before_rescue: Mutex::new(None),
    last: Mutex::new(None),
    rescue_active: AtomicBool::new(false),
};

/// The last failure: (step, error).
pub fn last_failure() -> Option<(String, String)> {
    STATE.last.lock().ok().and_then(|l| l.clone())
}

/// Whether the rescue console runs (after a failure).
pub fn in_rescue() -> bool {
    STATE.rescue_active.load(Ordering::SeqCst)
}

/// Starts over after a failure: unmounts what the failed attempt mounted and executes the
/// init again as PID 1 (execve keeps the PID). The early steps are idempotent: mounts that
/// exist, modules that are loaded and addresses that are configured are accepted as done.
pub fn retry() -> ! {
    rustix::fs::sync();
    shutdown::unmount_targets();
    let err = std::process::Command::new("/init").exec();
    fail("retry", &anyhow::anyhow!("re-executing /init: {err}"))
}

/// Sets what happens after a failure (from `anemos.on_failure`).
pub fn set_action(action: Action) {
    if let Ok(mut a) = STATE.action.lock() {
        *a = action;
    }
}

/// Registers something to do before anything else when a failure happens (named for the log).
pub fn add_safety_hook(name: &str, hook: impl Fn() -> anyhow::Result<()> + Send + 'static) {
    if let Ok(mut h) = STATE.hooks.lock() {
        h.push((name.to_string(), Box::new(hook)));
    }
}

/// Registers what to do just before the rescue console starts after a failure (bring the
/// network and the event endpoint up if the failure came before they were).
pub fn set_before_rescue(prep: impl Fn() + Send + 'static) {
    if let Ok(mut p) = STATE.before_rescue.lock() {
        *p = Some(Box::new(prep));
    }
}

/// Handles a failed step. Never returns.
pub fn fail(step: &str, error: &anyhow::Error) -> ! {
    if STATE.failing.swap(true, Ordering::SeqCst) {
        // A second failure while handling the first (say, a panic in another thread):
        // log it and leave the machine to the routine already running.
        log::error!("while handling a failure, step {step} also failed: {error:#}");
        loop {
            std::thread::park();
        }
    }
    let chain: Vec<String> = error.chain().map(|c| installer::redact::redact(&c.to_string()).into_owned()).collect();
    log::error!("step {step} failed: {}", chain.first().map(String::as_str).unwrap_or("unknown error"));
    for cause in chain.iter().skip(1) {
        log::error!("  caused by: {cause}");
    }
    let action = STATE.action.lock().map(|a| *a).unwrap_or(Action::Rescue);
    emit(Event::Failed { phase: step.to_string(), error: format!("{error:#}"), action: action.name().into() });
    if let Ok(mut last) = STATE.last.lock() {
        *last = Some((step.to_string(), installer::redact::redact(&format!("{error:#}")).into_owned()));
    }
    rustix::fs::sync();
    run_safety_hooks();
    match action {
        Action::Rescue => {
            if let Ok(prep) = STATE.before_rescue.lock() {
                if let Some(prep) = prep.as_ref() {
                    prep();
                }
            }
            console::run()
        }
        Action::Reboot | Action::Kexec => shutdown::shutdown(Action::Reboot),
        Action::Poweroff => shutdown::shutdown(Action::Poweroff),
    }
}

fn run_safety_hooks() {
    let Ok(hooks) = STATE.hooks.lock() else { return };
    for (name, hook) in hooks.iter() {
        match hook() {
            Ok(()) => log::info!("safety step done: {name}"),
            Err(e) => log::error!("safety step {name} failed: {e:#}"),
        }
    }
    rustix::fs::sync();
}

/// Routes panics into the failure routine instead of killing PID 1 (which would panic the
/// kernel).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into());
        fail("panic", &anyhow::anyhow!("internal error{location}: {message}"));
    }));
}
