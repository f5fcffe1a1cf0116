//! Running child processes, also as PID 1.
//!
//! An init must reap every orphan the kernel hands it, but a blanket `waitpid(-1)` would
//! also steal the exit status of the children we wait for ourselves. So when running as
//! PID 1 one reaper thread owns *all* waiting: it reaps every child and hands the status of
//! the ones we started to whoever waits for them. Outside PID 1 (host tools, tests) children
//! are waited for the ordinary way. Either way callers use [`run`] or [`output`].

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustix::io::Errno;
use rustix::process::{waitpid, WaitOptions};

struct Reaper {
    waiters: Mutex<HashMap<i32, Sender<ExitStatus>>>,
    spawned: Condvar,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

/// Starts the reaper thread. Call once, early, when running as PID 1.
pub fn start_reaper() -> Result<()> {
    if REAPER.set(Reaper { waiters: Mutex::new(HashMap::new()), spawned: Condvar::new() }).is_err() {
        return Ok(());
    }
    std::thread::Builder::new().name("reaper".into()).spawn(reap_forever).context("starting the child reaper thread")?;
    Ok(())
}

fn reap_forever() {
    let Some(reaper) = REAPER.get() else { return };
    loop {
        match waitpid(None, WaitOptions::empty()) {
            Ok(Some((pid, status))) => {
                let status = ExitStatus::from_raw(status.as_raw());
                let waiter = reaper.waiters.lock().ok().and_then(|mut w| w.remove(&pid.as_raw_nonzero().get()));
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(status);
                    }
                    None => log::debug!("reaped orphan process {} ({status})", pid.as_raw_nonzero()),
                }
            }
            Ok(None) | Err(Errno::INTR) => {}
            Err(Errno::CHILD) => {
                // No children at all: sleep until something is spawned. Orphans only come
                // from our own descendants, so nothing can be missed meanwhile.
                if let Ok(guard) = reaper.waiters.lock() {
                    let _ = reaper.spawned.wait_timeout(guard, Duration::from_secs(1));
                }
            }
            Err(e) => {
                log::warn!("waitpid failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// What to do with a child's standard streams.
#[derive(Default)]
struct Io<'a> {
    capture: bool,
    /// Written to stdin (then closed).
    input: Option<&'a [u8]>,
    /// Stdout handed over line by line as it comes (and not returned).
    on_line: Option<&'a mut dyn FnMut(&str)>,
}

/// Spawns `cmd` and waits for it, cooperating with the reaper if there is one.
fn spawn_wait(cmd: &mut Command, io: Io<'_>) -> Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
    let Io { capture, input, on_line } = io;
    if capture {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let describe = format!("{cmd:?}");
    let describe = || describe.clone();
    let (mut child, rx) = match REAPER.get() {
        Some(reaper) => {
            let mut waiters = reaper.waiters.lock().map_err(|_| anyhow::anyhow!("reaper lock poisoned"))?;
            let child = cmd.spawn().with_context(|| format!("starting {}", describe()))?;
            let (tx, rx) = channel();
            waiters.insert(child.id() as i32, tx);
            reaper.spawned.notify_all();
            (child, Some(rx))
        }
        None => (cmd.spawn().with_context(|| format!("starting {}", describe()))?, None),
    };
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
    }
    let err_thread = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            buf
        })
    });
    let mut stdout = Vec::new();
    if let Some(s) = child.stdout.take() {
        match on_line {
            Some(f) => {
                for line in std::io::BufReader::new(s).lines() {
                    match line {
                        Ok(l) => f(&l),
                        Err(_) => break,
                    }
                }
            }
            None => {
                let mut s = s;
                let _ = s.read_to_end(&mut stdout);
            }
        }
    }
    let stderr = err_thread.map(|t| t.join().unwrap_or_default()).unwrap_or_default();
    let status = match rx {
        Some(rx) => rx.recv().context("the reaper thread stopped")?,
        None => child.wait().with_context(|| format!("waiting for {}", describe()))?,
    };
    Ok((status, stdout, stderr))
}

/// Runs `cmd` with inherited stdio; a non-zero exit is an error naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    let (status, _, _) = spawn_wait(cmd, Io::default())?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` and returns its exit status with stdout and stderr captured.
pub fn output(cmd: &mut Command) -> Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
    spawn_wait(cmd, Io { capture: true, ..Io::default() })
}

/// Like [`output`], feeding `input` to the command's stdin.
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
    spawn_wait(cmd, Io { capture: true, input: Some(input), on_line: None })
}

/// Runs `cmd`, handing each stdout line to `on_line` as it arrives (for progress), and
/// returns its exit status and captured stderr.
pub fn output_lines(cmd: &mut Command, on_line: &mut dyn FnMut(&str)) -> Result<(ExitStatus, Vec<u8>)> {
    let (status, _, stderr) = spawn_wait(cmd, Io { capture: true, input: None, on_line: Some(on_line) })?;
    Ok((status, stderr))
}

/// Runs `cmd`, captures its output, and fails with its stderr if it exits non-zero.
pub fn checked_output(cmd: &mut Command) -> Result<Vec<u8>> {
    let (status, stdout, stderr) = output(cmd)?;
    if !status.success() {
        bail!("{cmd:?} failed ({status}): {}", String::from_utf8_lossy(&stderr).trim());
    }
    Ok(stdout)
}

/// The process IDs of every process except the caller and kernel threads, from /proc.
pub fn other_processes() -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        // Kernel threads have an empty command line.
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| !c.is_empty()).unwrap_or(false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_streams_stdout_and_keeps_stderr() {
        let mut lines = Vec::new();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo a; echo b >&2; echo c; exit 3"]);
        let (status, stderr) = output_lines(&mut cmd, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(lines, ["a", "c"]);
        assert_eq!(stderr, b"b\n");
        assert_eq!(status.code(), Some(3));
    }
}
