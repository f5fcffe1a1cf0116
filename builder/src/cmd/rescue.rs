//! `anemos rescue HOST`: reach an installer that failed and waits in its rescue console,
//! through its token-guarded event endpoint: show the failure (and the log with --log),
//! then retry the install, reboot or power off when asked.

use anyhow::{Context, Result};
use installer::event::Event;

use crate::cli::RescueArgs;
use crate::deploy::http::Endpoint;
use crate::deploy::state;

pub fn run(args: RescueArgs) -> Result<()> {
    let (token, events) = match (&args.token, &args.events) {
        (Some(t), Some(e)) => (t.clone(), e.clone()),
        _ => {
            let (t, e) = state::load(&args.host)?;
            (args.token.clone().unwrap_or(t), args.events.clone().unwrap_or(e))
        }
    };
    let endpoint = Endpoint { addr: events, token };
    let all = endpoint.events(0, 0).with_context(|| format!("asking {}'s installer for its events", args.host))?;
    let failure = all.iter().rev().find_map(|(_, e)| match e {
        Event::Failed { phase, error, action } => Some(format!("failed in phase {phase}: {error} (then: {action})")),
        _ => None,
    });
    let in_rescue = all.iter().rev().find(|(_, e)| !matches!(e, Event::Log { .. })).is_some_and(|(_, e)| matches!(e, Event::Rescue));
    println!("{}: {}", args.host, failure.as_deref().unwrap_or("no failure reported (the install may still be running)"));
    if in_rescue {
        println!("{}: the installer waits in its rescue console", args.host);
    }
    if args.log {
        print!("{}", endpoint.log()?);
    }
    let action = if args.retry {
        Some("retry")
    } else if args.reboot {
        Some("reboot")
    } else if args.poweroff {
        Some("poweroff")
    } else {
        None
    };
    if let Some(a) = action {
        let answer = endpoint.control(a)?;
        println!("{}: {a} accepted ({answer})", args.host);
    }
    Ok(())
}
