//! `anemos deploy HOST…`: check and pack once on this workstation, then reinstall every
//! host concurrently (see `crate::deploy`), and print a summary with each host's phases.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use installer::payload::new_token;

use crate::cli::DeployArgs;
use crate::deploy::follow::Outcome;
use crate::deploy::ssh::Ssh;
use crate::deploy::{deploy_one, Job};
use crate::project::check_project;

pub fn run(args: DeployArgs) -> Result<()> {
    let checked = check_project(&args.project())?;
    let events = events_by_host(&args.events, &args.hosts)?;
    print!("{}", installer::plan::render_human(&checked.plan));
    confirm(&args)?;
    let mut project = checked.reveal()?;
    // A local image is served from here; each host's plan gets the URL it reaches it by.
    let served = project.serve_image("0.0.0.0:0".parse()?)?;
    if let Some(s) = &served {
        eprintln!("serving the image {} ({}) to the installers on port {}", s.path, installer::units::human_size(s.size), s.addr.port());
    }
    let anemos = match &args.anemos {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding this program to copy it to the servers")?,
    };
    let mut ssh_options = Vec::new();
    if let Some(f) = &args.ssh_config {
        ssh_options.extend(["-F".to_string(), f.display().to_string()]);
    }
    for o in &args.ssh_options {
        ssh_options.extend(["-o".to_string(), o.clone()]);
    }
    // One token per host: a token sniffed on one host's network controls that installer
    // only. The payload carries it, so each host gets its own payload.
    let pack = |token: &str, seen_as: Option<&str>| -> Result<Vec<u8>> {
        let plan = match (&served, seen_as) {
            (Some(s), Some(addr)) => project.with_image_at(s.url_via(addr)),
            _ => project.plan.clone(),
        };
        project.payload_of(&plan, Some(token.to_string()))
    };
    let jobs = args
        .hosts
        .iter()
        .map(|h| {
            Ok(Job {
                ssh: Ssh { host: h.clone(), options: ssh_options.clone() },
                anemos: anemos.clone(),
                pack: &pack,
                serves_image: served.is_some(),
                token: new_token()?,
                events: events.get(h).cloned(),
                status_port: project.plan.status_port,
                sudo: args.sudo,
                dhcp: args.dhcp,
                append: args.append.clone(),
                install_timeout: Duration::from_secs(args.timeout),
                ssh_timeout: Duration::from_secs(args.ssh_timeout),
            })
        })
        .collect::<Result<Vec<Job>>>()?;
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs.iter().map(|j| s.spawn(move || deploy_one(j))).collect();
        handles.into_iter().zip(&jobs).map(|(h, j)| h.join().unwrap_or_else(|_| failed_outcome(&j.ssh.host))).collect()
    });
    print_summary(&outcomes);
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {} host{} did not deploy", outcomes.len(), if outcomes.len() == 1 { "" } else { "s" });
    }
    Ok(())
}

fn failed_outcome(host: &str) -> Outcome {
    let mut o = Outcome::new(host);
    o.result = Err("the deploy thread crashed".into());
    o
}

/// `--events` values by host: `HOST=ADDR:PORT`, or a bare `ADDR:PORT` with one host.
fn events_by_host(specs: &[String], hosts: &[String]) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for spec in specs {
        match spec.split_once('=') {
            Some((h, addr)) if hosts.iter().any(|x| x == h) => {
                map.insert(h.to_string(), addr.to_string());
            }
            Some((h, _)) => bail!("--events {spec}: {h} is not one of the hosts deployed ({})", hosts.join(", ")),
            None if hosts.len() == 1 => {
                map.insert(hosts[0].clone(), spec.clone());
            }
            None => bail!("--events {spec}: with several hosts, say which: HOST=ADDR:PORT"),
        }
    }
    Ok(map)
}

fn confirm(args: &DeployArgs) -> Result<()> {
    if args.yes {
        return Ok(());
    }
    let want = args.hosts.join(" ");
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").context("no terminal to confirm on: pass --yes")?;
    let mut w = tty.try_clone()?;
    write!(w, "This WIPES the target disk of: {want}\nType the host names to go on: ")?;
    let mut answer = String::new();
    std::io::BufReader::new(tty).read_line(&mut answer)?;
    if answer.split_whitespace().collect::<Vec<_>>().join(" ") != want {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

fn print_summary(outcomes: &[Outcome]) {
    let secs = |d: Option<Duration>| d.map(|d| format!("{:.0} s", d.as_secs_f64())).unwrap_or_else(|| "-".into());
    println!("\nhost summary:");
    for o in outcomes {
        let verdict = match &o.result {
            Ok(()) => "deployed".to_string(),
            Err(e) => format!("FAILED: {e}"),
        };
        println!("  {}: {verdict}", o.host);
        println!("    kexec at {}, installer ready at {}, installed at {}, total {:.0} s", secs(o.kexec_at), secs(o.ready_at), secs(o.installed_at), o.total.as_secs_f64());
        if !o.phases.is_empty() {
            let phases: Vec<String> = o.phases.iter().map(|(p, ms)| format!("{p} {:.1} s", *ms as f64 / 1000.0)).collect();
            println!("    phases: {}", phases.join(", "));
        }
        if let Some(n) = &o.note {
            println!("    {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn events_addresses_map_to_hosts() {
        let hosts = vec!["a".to_string(), "b".to_string()];
        let m = super::events_by_host(&["a=127.0.0.1:1".into()], &hosts).unwrap();
        assert_eq!(m.get("a").map(String::as_str), Some("127.0.0.1:1"));
        assert!(super::events_by_host(&["127.0.0.1:1".into()], &hosts).is_err());
        assert!(super::events_by_host(&["c=x:1".into()], &hosts).is_err());
        let one = vec!["a".to_string()];
        assert_eq!(super::events_by_host(&["x:2".into()], &one).unwrap()["a"], "x:2");
    }
}
