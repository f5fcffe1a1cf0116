//! The ending's network front end: the init's side of the event endpoint (`installer::endpoint`): the per-host token from
//! the payload, the installer's own addresses to listen on, its log, and remote control
//! that is accepted only while the rescue console runs (after a failure): 409 otherwise.

use std::sync::Arc;

use installer::endpoint::{self, Answer, Handler, Limits};

use super::shutdown;
use crate::cmdline::Action;
use crate::logger;

/// Where the payload keeps the per-host token.
pub const TOKEN_FILE: &str = "/anemos/payload/token"; // installer::payload::{DIR, TOKEN_FILE}

struct Init;

impl Handler for Init {
    fn log(&self) -> String {
        logger::memory()
    }

    fn control(&self, what: &str) -> Answer {
        if !super::in_rescue() {
            return Answer::Refuse(409, "not in the rescue console: an install is running or none failed".into());
        }
        let action = match what {
            "reboot" => Action::Reboot,
            "poweroff" => Action::Poweroff,
            "retry" => {
                return Answer::Accept(
                    "retrying the install".into(),
                    Box::new(|| {
                        log::info!("retry requested over the event endpoint");
                        super::retry()
                    }),
                )
            }
            _ => return Answer::Refuse(404, "control actions: reboot, poweroff, retry".into()),
        };
        Answer::Accept(
            action.name().into(),
            Box::new(move || {
                log::info!("{} requested over the event endpoint", action.name());
                shutdown::asked(action)
            }),
        )
    }
}

/// What the endpoint's clients have received (set once it runs).
static DELIVERY: std::sync::OnceLock<Arc<endpoint::Delivery>> = std::sync::OnceLock::new();

/// Before a reboot or power-off: lets a following deploy collect how the install ended.
pub fn let_the_workstation_know() {
    if let Some(d) = DELIVERY.get() {
        d.wait_delivered(std::time::Duration::from_secs(60), std::time::Duration::from_secs(20));
    }
}

/// Starts the endpoint on `port` of this machine's addresses if the payload carries a
/// token. Never fails the install: a problem here is logged and the install goes on
/// without remote progress.
pub fn start(port: u16) -> anyhow::Result<()> {
    let token = match std::fs::read_to_string(TOKEN_FILE) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            log::info!("no deploy token in the payload ({TOKEN_FILE}): the event endpoint stays off");
            return Ok(());
        }
    };
    let started = endpoint::own_addresses().and_then(|addrs| endpoint::start(&addrs, port, &token, Arc::new(Init), Limits::default()));
    match started {
        Ok(started) => {
            log::info!("event endpoint listening on {}", started.bound.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
            let _ = DELIVERY.set(started.delivery);
        }
        Err(e) => log::warn!("the event endpoint did not start ({e:#}); the install goes on without remote progress"),
    }
    Ok(())
}
