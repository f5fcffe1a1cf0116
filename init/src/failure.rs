//! The one failure routine. Every error of every step, and every panic, ends here: the error
//! is logged with its step and whole cause chain, buffers are synced, registered safety
//! hooks run (e.g. to make a half-written disk unbootable), and the init does what
//! `anemos.on_failure` says. It never returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use installer::event::{emit, Event};

use crate::cmdline::Action;
use crate::{rescue, shutdown};

static FAILING: AtomicBool = AtomicBool::new(false);
static ON_FAILURE: Mutex<Action> = Mutex::new(Action::Rescue);
type SafetyHook = Box<dyn Fn() -> anyhow::Result<()> + Send>;
static SAFETY_HOOKS: Mutex<Vec<(String, SafetyHook)>> = Mutex::new(Vec::new());
type RescuePrep = Box<dyn Fn() + Send>;
static BEFORE_RESCUE: Mutex<Option<RescuePrep>> = Mutex::new(None);

/// The last failure, shown again by the rescue console.
pub static LAST: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Sets what happens after a failure (from `anemos.on_failure`).
pub fn set_action(action: Action) {
    if let Ok(mut a) = ON_FAILURE.lock() {
        *a = action;
    }
}

/// Registers something to do before anything else when a failure happens (named for the log).
pub fn add_safety_hook(name: &str, hook: impl Fn() -> anyhow::Result<()> + Send + 'static) {
    if let Ok(mut h) = SAFETY_HOOKS.lock() {
        h.push((name.to_string(), Box::new(hook)));
    }
}

/// Registers what to do just before the rescue console starts after a failure (bring the
/// network and the event endpoint up if the failure came before they were).
pub fn set_before_rescue(prep: impl Fn() + Send + 'static) {
    if let Ok(mut p) = BEFORE_RESCUE.lock() {
        *p = Some(Box::new(prep));
    }
}

/// Handles a failed step. Never returns.
pub fn fail(step: &str, error: &anyhow::Error) -> ! {
    if FAILING.swap(true, Ordering::SeqCst) {
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
    let action = ON_FAILURE.lock().map(|a| *a).unwrap_or(Action::Rescue);
    emit(Event::Failed { phase: step.to_string(), error: format!("{error:#}"), action: action.name().into() });
    if let Ok(mut last) = LAST.lock() {
        *last = Some((step.to_string(), installer::redact::redact(&format!("{error:#}")).into_owned()));
    }
    rustix::fs::sync();
    run_safety_hooks();
    match action {
        Action::Rescue => {
            if let Ok(prep) = BEFORE_RESCUE.lock() {
                if let Some(prep) = prep.as_ref() {
                    prep();
                }
            }
            rescue::run()
        }
        Action::Reboot | Action::Kexec => shutdown::shutdown(Action::Reboot),
        Action::Poweroff => shutdown::shutdown(Action::Poweroff),
    }
}

fn run_safety_hooks() {
    let Ok(hooks) = SAFETY_HOOKS.lock() else { return };
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
