//! Following one installer's events from the workstation, and what came of a host's deploy.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use installer::event::Event;

use super::http::Endpoint;
use super::say;

/// What happened to one host.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub host: String,
    /// Phase name and milliseconds, in order, as the installer reported them.
    pub phases: Vec<(String, u64)>,
    /// Since the deploy started: the installer was loaded and started; it reported ready;
    /// the install was done.
    pub kexec_at: Option<Duration>,
    pub ready_at: Option<Duration>,
    pub installed_at: Option<Duration>,
    pub total: Duration,
    pub note: Option<String>,
    pub result: std::result::Result<(), String>,
    started: Instant,
}

impl Outcome {
    pub fn new(host: &str) -> Outcome {
        Outcome { host: host.to_string(), phases: Vec::new(), kexec_at: None, ready_at: None, installed_at: None, total: Duration::ZERO, note: None, result: Ok(()), started: Instant::now() }
    }
}

/// Polls the endpoint until the install is done (Ok) or failed (Err, saying what the
/// installer does now and what the user can do), or `timeout` passes.
pub fn follow(endpoint: &Endpoint, outcome: &mut Outcome, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let first_contact = Instant::now() + FIRST_CONTACT;
    let mut after = 0;
    let mut done = false;
    let mut connected = false;
    let mut progress = crate::progress::ProgressLines::default();
    loop {
        if Instant::now() > deadline {
            bail!("no end of the install within {} s (last event #{after}); `anemos rescue {}` shows its log", timeout.as_secs(), outcome.host);
        }
        if !connected && Instant::now() > first_contact {
            bail!(
                "the installer never answered on {} within {} s of the kexec: look at the server's console (or the firewall in between: --events names another address)",
                endpoint.addr,
                FIRST_CONTACT.as_secs()
            );
        }
        // Until the installer first answers, short polls: a connection made while the old
        // system goes down or the installer boots must not hold the next try.
        let batch = match endpoint.events(after, if connected { 25 } else { 0 }) {
            Ok(b) => b,
            // Done, and the installer went down to boot the new system: that is the end.
            Err(_) if done => return Ok(()),
            Err(e) => {
                if connected {
                    log::debug!("{}: event endpoint: {e:#}", outcome.host);
                }
                std::thread::sleep(Duration::from_secs(if connected { 2 } else { 1 }));
                continue;
            }
        };
        if !connected {
            connected = true;
            say(&outcome.host, &format!("connected to the installer at {}", endpoint.addr));
        }
        for (seq, ev) in batch {
            after = after.max(seq);
            match on_event(outcome, ev, &mut progress)? {
                Step::Go => {}
                Step::Done => done = true,
                Step::End if done => return Ok(()),
                Step::End => {}
            }
        }
    }
}

/// How long after the kexec the installer must have answered once.
const FIRST_CONTACT: Duration = Duration::from_secs(600);

enum Step {
    Go,
    Done,
    End,
}

fn on_event(outcome: &mut Outcome, ev: Event, progress: &mut crate::progress::ProgressLines) -> Result<Step> {
    let host = outcome.host.clone();
    match ev {
        Event::Ready { network, .. } => {
            outcome.ready_at = Some(outcome.started.elapsed());
            say(&host, &format!("installer ready ({})", if network.is_empty() { "no network?".to_string() } else { network.join(", ") }));
        }
        Event::PlanLoaded { imgname, target, packages, .. } => say(&host, &format!("plan: {imgname} ({target}, {packages} packages)")),
        Event::PhaseStarted { phase } => say(&host, &format!("{phase} …")),
        Event::PhaseFinished { phase, ms } => {
            say(&host, &format!("{phase} done in {:.1} s", ms as f64 / 1000.0));
            outcome.phases.push((phase, ms));
        }
        Event::Progress { phase, done, total, unit } => {
            if let Some(line) = progress.line(&phase, done, total, &unit) {
                say(&host, &format!("{phase}: {line}"));
            }
        }
        Event::Failed { phase, error, action } => bail!("{}", failure_message(&host, &phase, &error, &action)),
        Event::Log { level, message } if level == "ERROR" || level == "WARN" => say(&host, &format!("{}: {message}", level.to_lowercase())),
        Event::Done { ms } => {
            say(&host, &format!("install done in {:.1} s", ms as f64 / 1000.0));
            return Ok(Step::Done);
        }
        Event::Shutdown { action } => {
            say(&host, &format!("installer: {action}"));
            return Ok(Step::End);
        }
        Event::Rescue | Event::Log { .. } => {}
    }
    Ok(Step::Go)
}

fn failure_message(host: &str, phase: &str, error: &str, action: &str) -> String {
    let disk = if installer::install::Phase::from_name(phase).is_some_and(|p| p.writes_disk()) {
        "the disk was being written (its partition table is invalidated so the half-installed system never boots)"
    } else {
        "the disk was not touched"
    };
    let next = match action {
        "rescue" => format!("the installer waits in its rescue console: `anemos rescue {host}` shows the log; add --retry, --reboot or --poweroff"),
        "reboot" => "the machine reboots (into its old system if the disk was not touched)".to_string(),
        other => format!("the machine does: {other}"),
    };
    format!("the install failed in phase {phase}: {error}\n  {disk}; {next}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_what_happened_to_the_disk_and_what_to_do() {
        let m = failure_message("srv", "indexes", "no package foo", "reboot");
        assert!(m.contains("not touched") && m.contains("old system"), "{m}");
        let m = failure_message("srv", "provision", "exit 1", "rescue");
        assert!(m.contains("invalidated") && m.contains("anemos rescue srv"), "{m}");
        // The image phases: its check comes before the wipe, the image itself after.
        assert!(failure_message("srv", "image-check", "404", "reboot").contains("not touched"));
        assert!(failure_message("srv", "image", "SHA-256", "rescue").contains("invalidated"));
        assert!(failure_message("srv", "kexec", "x", "rescue").contains("invalidated"), "kexec comes after the install wrote the disk");
        let mut o = Outcome::new("srv");
        let mut t = crate::progress::ProgressLines::default();
        assert!(matches!(on_event(&mut o, Event::PhaseFinished { phase: "disks".into(), ms: 1500 }, &mut t).unwrap(), Step::Go));
        assert_eq!(o.phases, vec![("disks".to_string(), 1500)]);
        assert!(matches!(on_event(&mut o, Event::Done { ms: 1 }, &mut t).unwrap(), Step::Done));
        assert!(on_event(&mut o, Event::Failed { phase: "x".into(), error: "e".into(), action: "rescue".into() }, &mut t).is_err());
    }
}
