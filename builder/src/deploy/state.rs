//! What a deploy leaves on the workstation for `anemos rescue HOST`: the host's deploy
//! token and event endpoint address, in `$XDG_STATE_HOME/anemos/deploy/HOST` (default
//! `~/.local/state`), mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

fn dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("anemos/deploy"));
    }
    let home = std::env::var_os("HOME").context("neither XDG_STATE_HOME nor HOME is set: cannot keep the deploy token")?;
    Ok(PathBuf::from(home).join(".local/state/anemos/deploy"))
}

fn file(host: &str) -> Result<PathBuf> {
    if host.is_empty() || host.contains('/') || host.starts_with('.') {
        bail!("{host:?} cannot name a state file");
    }
    Ok(dir()?.join(host))
}

/// Records `token` and `events` (the endpoint address) for `host`.
pub fn save_token(host: &str, token: &str, events: &str) -> Result<()> {
    let path = file(host)?;
    let parent = path.parent().context("state dir")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path).with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "token={token}\nevents={events}").with_context(|| format!("writing {}", path.display()))
}

/// The token and endpoint address of `host`'s last deploy.
pub fn load(host: &str) -> Result<(String, String)> {
    let path = file(host)?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("no deploy of {host} is recorded ({} is missing): pass --token and --events", path.display()))?;
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
    match (get("token="), get("events=")) {
        (Some(t), Some(e)) => Ok((t, e)),
        _ => bail!("{} is damaged: pass --token and --events", path.display()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_round_trip_and_host_names_stay_inside() {
        let dir = std::env::temp_dir().join(format!("anemos-state-{}", std::process::id()));
        std::env::set_var("XDG_STATE_HOME", &dir);
        super::save_token("srv1", "abc", "127.0.0.1:7777").unwrap();
        assert_eq!(super::load("srv1").unwrap(), ("abc".into(), "127.0.0.1:7777".into()));
        assert!(super::load("other").is_err());
        assert!(super::save_token("../x", "t", "e").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
