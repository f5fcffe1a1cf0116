//! `anemos deploy HOST…`: reinstall running servers in place. On this workstation the
//! project is checked, its secrets revealed and one payload packed with a fresh deploy
//! token; then, for every host at once: the static `anemos` and the payload go over the
//! user's own ssh, `anemos kexec` loads the installer there (re-checking the plan against
//! that host's disks), the host boots into it, and its event endpoint is followed until the
//! install is done and the new system answers on ssh.

pub mod follow;
pub mod http;
pub mod ssh;
pub mod state;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use self::follow::Outcome;
use self::ssh::{quote, Ssh};

/// Where the files go on the server: a persistent, executable place (`/run` and `/tmp`
/// are often `noexec`). The payload is removed again as soon as the kernel holds it.
pub const REMOTE_DIR: &str = "/var/tmp/anemos-deploy";

/// Everything one host's deploy needs.
#[derive(Debug, Clone)]
pub struct Job {
    pub ssh: Ssh,
    pub anemos: PathBuf,
    pub payload: std::sync::Arc<Vec<u8>>,
    pub token: String,
    /// Where the installer's event endpoint will answer (None: the ssh host name and the
    /// plan's status port).
    pub events: Option<String>,
    pub status_port: u16,
    pub sudo: bool,
    pub dhcp: bool,
    pub append: String,
    pub install_timeout: Duration,
    pub ssh_timeout: Duration,
}

/// Runs one host's deploy from the copy to the new system answering on ssh.
pub fn deploy_one(job: &Job) -> Outcome {
    let started = Instant::now();
    let host = job.ssh.host.clone();
    let mut outcome = Outcome::new(&host);
    let result = (|| -> Result<()> {
        let resolved = job.ssh.resolve()?;
        let events = job.events.clone().unwrap_or_else(|| format!("{}:{}", bracket(&resolved.hostname), job.status_port));
        say(&host, &format!("copying anemos and the payload ({}) to {REMOTE_DIR}", size(job.payload.len())));
        job.ssh.run(&format!("umask 077 && mkdir -p {0} && chmod 700 {0}", quote(REMOTE_DIR)), None, &mut |l| say(&host, l))?;
        let binary = std::fs::read(&job.anemos).with_context(|| format!("reading {}", job.anemos.display()))?;
        job.ssh.put(&format!("{REMOTE_DIR}/anemos"), 0o700, &binary)?;
        job.ssh.put(&format!("{REMOTE_DIR}/payload.cpio"), 0o600, &job.payload)?;
        state::save_token(&host, &job.token, &events)?;
        say(&host, "loading the installer with kexec (the plan is checked against this host's disks first)");
        let shown = job.ssh.run(&load_script(job), None, &mut |l| say(&host, l)).context("anemos kexec on the server refused or failed; nothing was changed there")?;
        for line in shown.lines() {
            say(&host, line);
        }
        job.ssh.run(&exec_script(job), None, &mut |l| say(&host, l))?;
        outcome.kexec_at = Some(started.elapsed());
        say(&host, &format!("booting the installer; following its events on {events}"));
        let endpoint = http::Endpoint { addr: events, token: job.token.clone() };
        follow::follow(&endpoint, &mut outcome, job.install_timeout)?;
        outcome.installed_at = Some(started.elapsed());
        say(&host, "installed; waiting for the new system to answer on ssh");
        wait_for_ssh(job, &mut outcome)
    })();
    outcome.total = started.elapsed();
    outcome.result = result.map_err(|e| format!("{e:#}"));
    outcome
}

/// `anemos kexec --load-only` on the server, as root.
fn load_script(job: &Job) -> String {
    let mut cmd = format!("{}{REMOTE_DIR}/anemos kexec --yes --load-only", sudo(job));
    if job.dhcp {
        cmd.push_str(" --dhcp");
    }
    if !job.append.trim().is_empty() {
        cmd.push_str(&format!(" --append {}", quote(&job.append)));
    }
    format!("{cmd} {REMOTE_DIR}/payload.cpio; rc=$?; rm -f {REMOTE_DIR}/payload.cpio; exit $rc")
}

/// Boots the loaded installer a moment after ssh returns, detached from the session
/// (which the shutdown ends).
fn exec_script(job: &Job) -> String {
    format!("nohup sh -c 'sleep 2; exec {}{REMOTE_DIR}/anemos kexec --exec-loaded' </dev/null >/dev/null 2>&1 & echo started", sudo(job))
}

fn sudo(job: &Job) -> &'static str {
    if job.sudo {
        "sudo -n "
    } else {
        ""
    }
}

fn wait_for_ssh(job: &Job, outcome: &mut Outcome) -> Result<()> {
    let deadline = Instant::now() + job.ssh_timeout;
    // The old system's sshd may still answer for a moment before the reboot.
    std::thread::sleep(Duration::from_secs(5));
    loop {
        match job.ssh.answers() {
            ssh::Probe::LoggedIn => {
                outcome.note = Some("the new system answers on ssh (host keys changed: `ssh-keygen -R` the old ones)".into());
                return Ok(());
            }
            ssh::Probe::Refused => {
                outcome.note = Some("the new system answers on ssh but refused this key: check the IMGBUILD's authorized_keys".into());
                return Ok(());
            }
            ssh::Probe::NoAnswer if Instant::now() > deadline => {
                bail!("the install finished but the new system did not answer on ssh within {} s: look at its console", job.ssh_timeout.as_secs())
            }
            ssh::Probe::NoAnswer => std::thread::sleep(Duration::from_secs(5)),
        }
    }
}

/// One line of a host's progress, prefixed so concurrent hosts stay readable.
pub fn say(host: &str, line: &str) {
    eprintln!("{host}: {line}");
}

pub fn size(n: usize) -> String {
    installer::disk::human_size(n as u64)
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// A fresh deploy token: 32 random bytes, hex.
pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        filled += rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()).context("reading random bytes for the deploy token")?;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_scripts_quote() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(bracket("fe80::1"), "[fe80::1]");
        assert_eq!(bracket("10.0.2.2"), "10.0.2.2");
        let job = Job {
            ssh: Ssh { host: "h".into(), options: vec![] },
            anemos: "anemos".into(),
            payload: Default::default(),
            token: String::new(),
            events: None,
            status_port: 7777,
            sudo: true,
            dhcp: true,
            append: "anemos.log=debug it's".into(),
            install_timeout: Duration::from_secs(1),
            ssh_timeout: Duration::from_secs(1),
        };
        let s = load_script(&job);
        assert!(s.starts_with("sudo -n /var/tmp/anemos-deploy/anemos kexec --yes --load-only --dhcp --append 'anemos.log=debug it'\\''s' "), "{s}");
        assert!(s.contains("rm -f /var/tmp/anemos-deploy/payload.cpio"));
    }
}
