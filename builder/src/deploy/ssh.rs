//! The user's own `ssh`: their config, agent, keys and jump hosts apply to every command
//! here. Files travel through `ssh HOST 'cat > FILE'`, so nothing beyond a POSIX shell is
//! needed on the server (no scp or sftp subsystem).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// How to reach one host.
#[derive(Debug, Clone)]
pub struct Ssh {
    /// The host as the user names it (an alias from their ssh config works).
    pub host: String,
    /// Options put before the host on every ssh command line (`-F FILE`, `-o K=V`, `-p N`).
    pub options: Vec<String>,
}

/// What `ssh -G` resolved the host to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub hostname: String,
    pub port: u16,
    pub user: String,
}

impl Ssh {
    fn command(&self) -> Command {
        let mut c = Command::new("ssh");
        c.args(&self.options).arg(&self.host);
        c
    }

    /// The host name, port and user ssh would use (`ssh -G`), for the event endpoint and
    /// the final reachability probe.
    pub fn resolve(&self) -> Result<Resolved> {
        let out = Command::new("ssh").args(&self.options).arg("-G").arg(&self.host).output().context("running ssh -G (is OpenSSH's client installed?)")?;
        if !out.status.success() {
            bail!("ssh -G {} failed: {}", self.host, String::from_utf8_lossy(&out.stderr).trim());
        }
        parse_g(&String::from_utf8_lossy(&out.stdout)).with_context(|| format!("reading ssh -G {}", self.host))
    }

    /// Runs `script` on the host with `input` on its stdin; returns its stdout. Stderr lines
    /// are handed to `on_line` as they come (so the user sees the remote plan and progress).
    pub fn run(&self, script: &str, input: Option<&[u8]>, on_line: &mut dyn FnMut(&str)) -> Result<String> {
        let mut child = self
            .command()
            .arg("--")
            .arg(script)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting ssh {}", self.host))?;
        let writer = input.map(|bytes| {
            let mut stdin = child.stdin.take();
            let bytes = bytes.to_vec();
            std::thread::spawn(move || stdin.as_mut().map(|s| s.write_all(&bytes)).transpose().map(|_| ()))
        });
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut s) = stdout {
                let _ = std::io::Read::read_to_string(&mut s, &mut text);
            }
            text
        });
        if let Some(err) = child.stderr.take() {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                on_line(&line);
            }
        }
        let status = child.wait().with_context(|| format!("waiting for ssh {}", self.host))?;
        let stdout = reader.join().unwrap_or_default();
        if let Some(w) = writer {
            match w.join() {
                Ok(Err(e)) if status.success() => return Err(e).with_context(|| format!("sending data to {}", self.host)),
                _ => {}
            }
        }
        if !status.success() {
            bail!("on {}: `{}` failed ({status})", self.host, first_line(script));
        }
        Ok(stdout)
    }

    /// Writes `bytes` to `path` on the host with `mode`, through a temporary name.
    pub fn put(&self, path: &str, mode: u32, bytes: &[u8]) -> Result<()> {
        let q = quote(path);
        let tmp = quote(&format!("{path}.anemos-new"));
        let script = format!("umask 077 && cat > {tmp} && chmod {mode:o} {tmp} && mv -f {tmp} {q}");
        self.run(&script, Some(bytes), &mut |l| log::warn!("{}: {l}", self.host)).with_context(|| format!("copying {} to {}:{path}", crate::deploy::size(bytes.len()), self.host))?;
        Ok(())
    }

    /// Whether the host answers on ssh: a login that succeeds, or one the server refuses
    /// (the reinstalled system has new host keys and may hold other user keys). Host keys
    /// are not checked for this probe only, so nothing of the user's is offered to the
    /// host beyond the login itself: no agent, no forwarded ports; nothing is run but `true`.
    pub fn answers(&self) -> Probe {
        match self.probe_command().output() {
            Ok(o) if o.status.success() => Probe::LoggedIn,
            Ok(o) if String::from_utf8_lossy(&o.stderr).contains("Permission denied") => Probe::Refused,
            _ => Probe::NoAnswer,
        }
    }
}

impl Ssh {
    /// The probe's command line. The options come first: ssh takes the first value of an
    /// option, so the user's config or `-o` cannot turn agent forwarding back on.
    fn probe_command(&self) -> Command {
        let mut c = Command::new("ssh");
        c.args(PROBE_OPTIONS.iter().flat_map(|o| ["-o", o]));
        c.args(&self.options).arg(&self.host).arg("true").stdin(Stdio::null());
        c
    }
}

/// The new system's host key is unknown (it was just made), so it is not checked; the
/// connection then carries nothing but the login: no agent (a host that is not yet
/// trusted could use it), no port forwards.
const PROBE_OPTIONS: &[&str] =
    &["ForwardAgent=no", "ClearAllForwardings=yes", "ForwardX11=no", "BatchMode=yes", "ConnectTimeout=10", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probe {
    LoggedIn,
    Refused,
    NoAnswer,
}

fn parse_g(text: &str) -> Result<Resolved> {
    let get = |key: &str| text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')).map(str::trim).map(String::from));
    Ok(Resolved { hostname: get("hostname").context("no hostname line")?, port: get("port").and_then(|p| p.parse().ok()).unwrap_or(22), user: get("user").unwrap_or_else(|| "root".into()) })
}

/// Single-quotes a word for the remote POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_g_output_and_quoting() {
        let r = parse_g("user demo\nhostname 127.0.0.1\nport 2222\nhostkeyalias x\n").unwrap();
        assert_eq!(r, Resolved { hostname: "127.0.0.1".into(), port: 2222, user: "demo".into() });
        assert!(parse_g("port 22\n").is_err());
        assert_eq!(quote("/var/tmp/it's"), r"'/var/tmp/it'\''s'");
    }

    #[test]
    fn the_unverified_probe_forwards_nothing() {
        let ssh = Ssh { host: "server".into(), options: vec!["-o".into(), "ForwardAgent=yes".into()] };
        let args: Vec<String> = ssh.probe_command().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let pos = |s: &str| args.iter().position(|a| a == s).unwrap_or_else(|| panic!("{s} missing: {args:?}"));
        assert!(pos("ForwardAgent=no") < pos("ForwardAgent=yes"), "the first value wins in ssh: ours must come first: {args:?}");
        pos("ClearAllForwardings=yes");
        assert_eq!(&args[args.len() - 2..], ["server", "true"]);
    }
}
