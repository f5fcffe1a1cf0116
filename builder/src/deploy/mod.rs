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

/// Where the files go on the server: a fresh private directory (`mktemp -d`, mode 0700,
/// owned by the ssh user) in a persistent, executable place (`/run` and `/tmp` are often
/// `noexec`), so that no other local user can read the payload or swap the binary between
/// the copy and its execution. The payload is removed again as soon as the kernel holds
/// it, and the whole directory when the load fails.
pub const REMOTE_PARENT: &str = "/var/tmp";
const REMOTE_PREFIX: &str = "anemos-deploy.";

/// Packs one host's payload: with its token and, when the image is served from this
/// workstation, the address that host reaches the workstation at.
pub type Packer<'a> = &'a (dyn Fn(&str, Option<&str>) -> Result<Vec<u8>> + Sync);

/// Everything one host's deploy needs.
pub struct Job<'a> {
    pub ssh: Ssh,
    pub anemos: PathBuf,
    pub pack: Packer<'a>,
    /// Whether the payload needs the address this host reaches the workstation at (a local
    /// image served from here): read from the host's own view of the ssh connection.
    pub serves_image: bool,
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
        let binary = std::fs::read(&job.anemos).with_context(|| format!("reading {}", job.anemos.display()))?;
        let seen_as = if job.serves_image { Some(workstation_address(&job.ssh)?) } else { None };
        let payload = (job.pack)(&job.token, seen_as.as_deref())?;
        let made = job.ssh.run(MKDIR_SCRIPT, None, &mut |l| say(&host, l)).context("making a private directory on the server")?;
        let dir = remote_dir(&made)?;
        say(&host, &format!("copying anemos and the payload ({}) to {dir}", size(payload.len())));
        job.ssh.put(&format!("{dir}/anemos"), 0o700, &binary)?;
        job.ssh.put(&format!("{dir}/payload.cpio"), 0o600, &payload)?;
        state::save_token(&host, &job.token, &events)?;
        say(&host, "loading the installer with kexec (the plan is checked against this host's disks first)");
        let shown = job.ssh.run(&load_script(job, &dir), None, &mut |l| say(&host, l)).context("anemos kexec on the server refused or failed; nothing was changed there")?;
        for line in shown.lines() {
            say(&host, line);
        }
        job.ssh.run(&exec_script(job, &dir), None, &mut |l| say(&host, l))?;
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

/// The address this host's ssh connection came from, as the host sees it
/// (`$SSH_CONNECTION`): where its installer reaches this workstation's image server.
fn workstation_address(ssh: &Ssh) -> Result<String> {
    let out = ssh.run("echo \"$SSH_CONNECTION\"", None, &mut |_| {})?;
    let addr = out.split_whitespace().next().unwrap_or("").to_string();
    if addr.parse::<std::net::IpAddr>().is_err() {
        bail!("{} did not say which address this workstation connects from ($SSH_CONNECTION is {:?}): serve the image at a URL (--image http://…) instead", ssh.host, out.trim());
    }
    Ok(addr)
}

/// Makes the private directory and prints its path.
const MKDIR_SCRIPT: &str = "umask 077 && mktemp -d /var/tmp/anemos-deploy.XXXXXXXXXX";

/// The path `mktemp -d` printed, checked to be the fresh directory asked for (it is used
/// unquoted nowhere, but a surprise here means the remote shell is not what we think).
fn remote_dir(printed: &str) -> Result<String> {
    let dir = printed.trim();
    let name = dir.strip_prefix(REMOTE_PARENT).and_then(|r| r.strip_prefix('/')).and_then(|r| r.strip_prefix(REMOTE_PREFIX)).unwrap_or("");
    if name.len() < 6 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("mktemp -d on the server printed {dir:?}, not a fresh {REMOTE_PARENT}/{REMOTE_PREFIX}XXXXXXXXXX directory");
    }
    Ok(dir.to_string())
}

/// `anemos kexec --load-only` on the server, as root. The payload goes once the kernel
/// holds it; if the load fails, the binary and the directory go too.
fn load_script(job: &Job, dir: &str) -> String {
    let mut cmd = format!("{}{dir}/anemos kexec --yes --load-only", sudo(job));
    if job.dhcp {
        cmd.push_str(" --dhcp");
    }
    if !job.append.trim().is_empty() {
        cmd.push_str(&format!(" --append {}", quote(&job.append)));
    }
    format!("{cmd} {dir}/payload.cpio; rc=$?; rm -f {dir}/payload.cpio; [ $rc = 0 ] || rm -rf {dir}; exit $rc")
}

/// Boots the loaded installer a moment after ssh returns, detached from the session
/// (which the shutdown ends).
fn exec_script(job: &Job, dir: &str) -> String {
    format!("nohup sh -c 'sleep 2; exec {}{dir}/anemos kexec --exec-loaded' </dev/null >/dev/null 2>&1 & echo started", sudo(job))
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
    installer::units::human_size(n as u64)
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_scripts_quote() {
        assert_eq!(bracket("fe80::1"), "[fe80::1]");
        assert_eq!(bracket("10.0.2.2"), "10.0.2.2");
        let job = Job {
            ssh: Ssh { host: "h".into(), options: vec![] },
            anemos: "anemos".into(),
            pack: &|_, _| Ok(Vec::new()),
            serves_image: false,
            token: String::new(),
            events: None,
            status_port: 7777,
            sudo: true,
            dhcp: true,
            append: "anemos.log=debug it's".into(),
            install_timeout: Duration::from_secs(1),
            ssh_timeout: Duration::from_secs(1),
        };
        let dir = "/var/tmp/anemos-deploy.Ab12Cd34Ef";
        let s = load_script(&job, dir);
        assert!(s.starts_with("sudo -n /var/tmp/anemos-deploy.Ab12Cd34Ef/anemos kexec --yes --load-only --dhcp --append 'anemos.log=debug it'\\''s' "), "{s}");
        assert!(s.contains("rm -f /var/tmp/anemos-deploy.Ab12Cd34Ef/payload.cpio") && s.contains("|| rm -rf /var/tmp/anemos-deploy.Ab12Cd34Ef"), "{s}");
        assert_eq!(remote_dir("/var/tmp/anemos-deploy.Ab12Cd34Ef\n").unwrap(), dir);
        for bad in ["/var/tmp/anemos-deploy", "/var/tmp/anemos-deploy.", "/tmp/anemos-deploy.Ab12Cd34Ef", "/var/tmp/anemos-deploy.a b;c", ""] {
            assert!(remote_dir(bad).is_err(), "{bad:?}");
        }
    }

    /// The directory script, run by a real shell: a fresh 0700 directory each time, even
    /// where another user made `anemos-deploy` (the old fixed name) first.
    #[test]
    fn the_remote_directory_is_fresh_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let run = || {
            let out = std::process::Command::new("sh").arg("-c").arg(MKDIR_SCRIPT).output().unwrap();
            assert!(out.status.success());
            remote_dir(&String::from_utf8_lossy(&out.stdout)).unwrap()
        };
        let (a, b) = (run(), run());
        assert_ne!(a, b);
        for d in [&a, &b] {
            assert_eq!(std::fs::metadata(d).unwrap().permissions().mode() & 0o7777, 0o700, "{d}");
            std::fs::remove_dir(d).unwrap();
        }
    }
}
