//! Shared helpers: running commands, the built binaries, scratch space, host apt sources.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is in the workspace").to_path_buf()
}

pub fn anemos_bin() -> PathBuf {
    workspace().join("target/x86_64-unknown-linux-musl/release/anemos")
}

pub fn init_bin() -> PathBuf {
    workspace().join("target/x86_64-unknown-linux-musl/release/anemos-init")
}

/// A scratch directory under target/bench/NAME (emptied first).
pub fn scratch(name: &str) -> Result<PathBuf> {
    let dir = workspace().join("target/bench").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs a shell command, returning stdout; failure carries stderr.
pub fn sh(cmd: &str) -> Result<String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!("`{cmd}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The host's apt sources in deb822 form, the mirror baseline tools are pointed at (never a
/// host name of our own).
pub fn host_apt_sources() -> Result<PathBuf> {
    for p in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("no apt sources on this host (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)")
}

/// The `--measure` wrapper: runs `cmd`, waits, prints `ANEMOS-BENCH-MAXRSS-KIB N` (the
/// largest RSS of any process of its tree, from getrusage(RUSAGE_CHILDREN)) on stderr and
/// exits with the command's status.
pub fn measure_child(cmd: &[String]) -> std::process::ExitCode {
    let Some((prog, args)) = cmd.split_first() else { return std::process::ExitCode::FAILURE };
    let status = match Command::new(prog).args(args).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("running {prog}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let rss = installer::sys::children_max_rss_kib().unwrap_or(0);
    eprintln!("ANEMOS-BENCH-MAXRSS-KIB {rss}");
    if status.success() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Wall time and peak RSS (KiB) of a command run through the `--measure` wrapper; its
/// output goes to `log`.
pub fn measured(cmd: &[&str], log: &Path) -> Result<(f64, u64)> {
    let me = std::env::current_exe().context("finding the bench binary")?;
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let t = std::time::Instant::now();
    let res = Command::new(me)
        .arg("--measure")
        .args(cmd)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .stdout(out.try_clone()?)
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", cmd.join(" ")))?;
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&res.stderr);
    std::fs::write(log.with_extension("err"), err.as_bytes())?;
    if !res.status.success() {
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        bail!("`{}` failed; see {}:\n{}", cmd.join(" "), log.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    let rss = err.lines().find_map(|l| l.strip_prefix("ANEMOS-BENCH-MAXRSS-KIB ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    Ok((secs, rss))
}
