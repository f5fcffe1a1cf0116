//! anemos-init: PID 1 of the anemos initramfs.
//!
//! Bring-up, in order: early mounts, logging, command line, reaper, modules, devices, the
//! ready event; then the mode: install the payload, the rescue console, or a probe that
//! reports and stops. Every failure goes to `ending::fail`, which never returns.

mod bringup;
mod cmdline;
mod early;
mod ending;
mod install;
mod kmsg;
mod logger;
mod step;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use installer::event::{emit, Event};

use cmdline::{Action, Mode, Options};

fn main() {
    // The kernel starts PID 1 with umask 0: every file made without an explicit mode would
    // be world-writable. 022 is what a system's own init gives its children.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    ending::install_panic_hook();
    logger::install();
    installer::event::add_sink(|ev| {
        if !matches!(ev, Event::Log { .. }) {
            logger::console_line(&ev.to_line());
        }
    });
    step::run_unconfigured("mounts", early::apply_all);
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let opts = cmdline::parse(&cmdline);
    logger::attach(&opts.consoles, opts.log);
    ending::set_action(opts.on_failure);
    quiet_kernel_console(&cmdline, &opts);
    let kernel = rustix::system::uname().release().to_string_lossy().into_owned();
    log::info!("anemos init {} on Linux {kernel}", env!("CARGO_PKG_VERSION"));
    log::info!("command line: {}", cmdline.trim());
    for w in &opts.warnings {
        log::warn!("{w}");
    }
    step::run(&opts, "reaper", installer::exec::start_reaper);
    let loaded = step::run(&opts, "modules", || bringup::modules(&opts));
    step::run(&opts, "devices", || bringup::wait_for_devices(&opts));
    let rescue_opts = opts.clone();
    ending::set_before_rescue(move || rescue_network(&rescue_opts));
    let payload = (opts.mode == Mode::Install).then(|| step::run(&opts, "payload", load_payload));
    let plan = payload.as_ref().map(|p| &p.plan);
    if let Some(action) = plan.map(|p| p.on_failure) {
        if opts.on_failure_default {
            ending::set_action(match action {
                installer::plan::OnFailure::Rescue => Action::Rescue,
                installer::plan::OnFailure::Reboot => Action::Reboot,
                installer::plan::OnFailure::Poweroff => Action::Poweroff,
            });
        }
    }
    let network = match bringup::network_config(&opts, plan) {
        Some(cfg) => step::run(&opts, "network", || bringup::network(&cfg)),
        None => Vec::new(),
    };
    NETWORK_TRIED.store(true, Ordering::SeqCst);
    if !network.is_empty() {
        let port = opts.status_port.or(plan.map(|p| p.status_port)).unwrap_or(7777);
        step::run(&opts, "status", || ending::endpoint::start(port));
    }
    emit(Event::Ready {
        uptime_ms: (logger::uptime() * 1000.0) as u64,
        kernel,
        mode: format!("{:?}", opts.mode).to_lowercase(),
        modules_loaded: loaded,
        block_devices: bringup::block_devices(),
        network,
    });
    match opts.mode {
        Mode::Rescue => ending::console::run(),
        Mode::Probe => {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            for d in installer::disk::inventory(Path::new("/sys"), &mountinfo).unwrap_or_default() {
                log::info!("disk {}", installer::disk::describe(&d));
            }
            ending::shutdown(opts.done.unwrap_or(Action::Poweroff))
        }
        Mode::Install => match payload {
            Some(payload) => install::run(&opts, payload),
            None => ending::fail("payload", &anyhow::anyhow!("no payload was loaded")),
        },
    }
}

/// Set once the main path has configured the network (or decided there is none).
static NETWORK_TRIED: AtomicBool = AtomicBool::new(false);

/// A failure before the network step (a bad payload, a missing disk) still leaves a
/// reachable rescue: the network from the command line or the captured configuration, and
/// the event endpoint if the payload carries a token. Errors here are logged, not fatal.
fn rescue_network(opts: &Options) {
    if NETWORK_TRIED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Some(cfg) = bringup::network_config(opts, None) else { return };
    match bringup::network(&cfg) {
        Ok(links) if !links.is_empty() => {
            let _ = ending::endpoint::start(opts.status_port.unwrap_or(7777));
        }
        Ok(_) => log::warn!("rescue: no network link came up"),
        Err(e) => log::warn!("rescue: the network did not come up: {e:#}"),
    }
}

/// Loads and validates the payload the kernel unpacked at `/anemos/payload`, and logs the
/// plan a person would read before the install starts.
fn load_payload() -> anyhow::Result<installer::payload::Payload> {
    let Some(payload) = installer::payload::Payload::load(Path::new("/"))? else {
        anyhow::bail!(
            "this initramfs carries no payload (/anemos/payload/plan.json is missing): build one with `anemos pack DIR -o FILE` and `anemos initramfs --payload FILE`, or boot with anemos.mode=rescue"
        )
    };
    // From here on no log line or event carries a secret's value (installer::redact).
    for (name, value) in payload.secrets()? {
        installer::redact::register(&name, &value);
    }
    if let Ok(token) = std::fs::read(ending::endpoint::TOKEN_FILE) {
        installer::redact::register("deploy token", &token);
    }
    for line in installer::payload::summary(&payload.plan) {
        log::info!("{line}");
    }
    // The RTC may be wrong; when the payload was packed is a floor for the clock. A failure
    // here is not fatal: the mirror's Date may still move the clock forward later.
    match payload.clock_floor() {
        Ok(Some(built)) => {
            if let Err(e) = installer::clock::raise_to_floor(built) {
                log::warn!("{e:#}");
            }
        }
        Ok(None) => log::info!("the payload records no packing time: the clock keeps the RTC's time until the mirror answers"),
        Err(e) => log::warn!("{e:#}"),
    }
    emit(Event::PlanLoaded {
        imgname: payload.plan.imgname.clone(),
        target: payload.plan.target.name().to_string(),
        packages: payload.plan.packages.len(),
        partitions: payload.plan.layout.partitions.len(),
    });
    Ok(payload)
}

/// Our log lines already reach the console directly; keep the kernel from echoing the
/// /dev/kmsg copies a second time, unless the user asked for kernel verbosity.
fn quiet_kernel_console(cmdline: &str, opts: &Options) {
    let user_chose = cmdline.split_whitespace().any(|w| w.starts_with("loglevel=") || w == "debug" || w == "ignore_loglevel");
    if user_chose || opts.log >= log::LevelFilter::Debug {
        return;
    }
    if let Err(e) = std::fs::write("/proc/sys/kernel/printk", "2") {
        log::debug!("could not lower the kernel console log level: {e}");
    }
}
