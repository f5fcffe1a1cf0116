//! A running VM: its console captured into a log file and a buffer that tests wait on.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use installer::event::Event;

use crate::{Config, Firmware};

/// Where the serial console goes.
pub enum Console {
    /// Captured: written to this log file and kept for [`Vm::expect`].
    Capture(PathBuf),
    /// The caller's terminal (interactive boots).
    Inherit,
}

#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    /// Readers still attached (stdout and stderr); the VM's output ended when this is 0.
    open: usize,
    closed: bool,
    /// Also copy the console to this process's stdout as it arrives.
    tee: bool,
}

/// A QEMU process. Dropping it kills QEMU.
pub struct Vm {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<(Mutex<Output>, Condvar)>,
    /// How much of the output `expect` has consumed.
    cursor: usize,
    log_path: Option<PathBuf>,
    _vars: Option<TempFile>,
    started: Instant,
}

/// A file deleted on drop (the VM's UEFI variable store).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Vm {
    /// Starts QEMU for `config`.
    pub fn start(config: &Config, console: Console) -> Result<Vm> {
        let vars = match &config.firmware {
            Firmware::Uefi(ovmf) => {
                let path = std::env::temp_dir().join(format!("anemos-vars-{}-{}.fd", std::process::id(), unique()));
                std::fs::copy(&ovmf.vars, &path).with_context(|| format!("copying {}", ovmf.vars.display()))?;
                Some(TempFile(path))
            }
            Firmware::Bios => None,
        };
        let mut cmd = config.command(vars.as_ref().map(|v| v.0.as_path()))?;
        log::debug!("starting {cmd:?}");
        let output = Arc::new((Mutex::new(Output { open: 2, ..Output::default() }), Condvar::new()));
        let log_path = match &console {
            Console::Capture(p) => Some(p.clone()),
            Console::Inherit => None,
        };
        match &console {
            Console::Capture(_) => {
                cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            Console::Inherit => {
                cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
            }
        }
        let mut child = cmd.spawn().context("starting qemu-system-x86_64 (install the qemu-system-x86 package)")?;
        if let Console::Capture(path) = &console {
            let log = File::create(path).with_context(|| format!("creating console log {}", path.display()))?;
            let stdout = child.stdout.take().context("qemu stdout")?;
            let stderr = child.stderr.take().context("qemu stderr")?;
            spawn_reader(stdout, Some(log), output.clone());
            spawn_reader(stderr, None, output.clone());
        }
        let stdin = child.stdin.take();
        Ok(Vm { child, stdin, output, cursor: 0, log_path, _vars: vars, started: Instant::now() })
    }

    /// Waits until `needle` appears in the console output after what earlier calls
    /// consumed, and returns the text up to and including it.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.output;
        let mut out = lock.lock().map_err(|_| anyhow::anyhow!("console buffer poisoned"))?;
        loop {
            if let Some(pos) = find(&out.bytes[self.cursor..], needle.as_bytes()) {
                let end = self.cursor + pos + needle.len();
                let text = String::from_utf8_lossy(&out.bytes[self.cursor..end]).into_owned();
                self.cursor = end;
                return Ok(text);
            }
            let now = Instant::now();
            if out.closed || now >= deadline {
                let why = if out.closed { "QEMU exited" } else { "timed out" };
                let tail = tail_lines(&String::from_utf8_lossy(&out.bytes), 40);
                bail!(
                    "{why} after {:.0} s waiting for {needle:?} on the console{}\n--- last console lines ---\n{tail}",
                    self.started.elapsed().as_secs_f64(),
                    self.log_path.as_ref().map(|p| format!(" (full log: {})", p.display())).unwrap_or_default()
                );
            }
            out = cv.wait_timeout(out, deadline - now).map_err(|_| anyhow::anyhow!("console buffer poisoned"))?.0;
        }
    }

    /// Like [`Vm::expect`] for a boot: stops as soon as the console shows a state the boot
    /// never leaves ([`crate::stuck`]: emergency mode, a panic, nothing to boot), with the
    /// lines that show it, instead of waiting out the timeout.
    pub fn expect_boot(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            match self.expect(needle, left) {
                Ok(text) => return Ok(text),
                Err(e) if Instant::now() >= deadline || self.console_closed() => return Err(e),
                Err(_) => {}
            }
            if let Some((why, lines)) = crate::stuck(&self.output_text()) {
                bail!(
                    "{why} after {:.0} s, before {needle:?} appeared:
  {}{}",
                    self.started.elapsed().as_secs_f64(),
                    lines.join(
                        "
  "
                    ),
                    self.log_path
                        .as_ref()
                        .map(|p| format!(
                            "
the whole console log: {}",
                            p.display()
                        ))
                        .unwrap_or_default()
                );
            }
        }
    }

    /// Waits for the next structured event for which `pred` holds.
    pub fn expect_event(&mut self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let before = self.cursor;
            self.expect(installer::event::PREFIX, left)?;
            // A timeout in the middle of a line gives the event back to the next call.
            let line_end = self.expect("\n", left).inspect_err(|_| self.cursor = before)?;
            let line = format!("{}{}", installer::event::PREFIX, line_end);
            if let Some(ev) = Event::parse_line(&line) {
                if pred(&ev) {
                    return Ok(ev);
                }
            }
        }
    }

    /// Types `text` into the serial console.
    pub fn send(&mut self, text: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("this VM's console is not captured")?;
        stdin.write_all(text.as_bytes()).context("typing into the serial console")?;
        stdin.flush().context("typing into the serial console")
    }

    /// Waits for QEMU to exit (the guest powered off) and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for QEMU")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let tail = tail_lines(&self.output_text(), 30);
                bail!("QEMU still running after {} s\n--- last console lines ---\n{tail}", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for QEMU with no deadline (interactive boots).
    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.child.wait().context("waiting for QEMU")
    }

    /// Whether the console's output has ended (QEMU exited or closed it).
    pub fn console_closed(&self) -> bool {
        self.output.0.lock().map(|o| o.closed).unwrap_or(true)
    }

    /// QEMU's exit status if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child.try_wait().context("checking on QEMU")
    }

    /// Stops QEMU (the guest is switched off, not shut down).
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if self.child.try_wait().context("checking on QEMU")?.is_none() {
            let _ = self.child.kill();
        }
        self.child.wait().context("waiting for QEMU")
    }

    /// Copies the captured console to this process's stdout from now on (or stops).
    pub fn set_tee(&self, on: bool) {
        if let Ok(mut out) = self.output.0.lock() {
            out.tee = on;
        }
    }

    /// Takes the pipe to the serial console's input (for [`crate::attach`]).
    pub(crate) fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Everything the console printed so far.
    pub fn output_text(&self) -> String {
        let (lock, _) = &*self.output;
        lock.lock().map(|o| String::from_utf8_lossy(&o.bytes).into_owned()).unwrap_or_default()
    }

    /// Every structured event printed so far.
    pub fn events(&self) -> Vec<Event> {
        self.output_text().lines().filter_map(Event::parse_line).collect()
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log_path.as_deref()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn spawn_reader(mut src: impl Read + Send + 'static, mut log: Option<File>, output: Arc<(Mutex<Output>, Condvar)>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            let (lock, cv) = &*output;
            if let Ok(mut out) = lock.lock() {
                if n == 0 {
                    out.open = out.open.saturating_sub(1);
                    out.closed = out.open == 0;
                } else {
                    out.bytes.extend_from_slice(&buf[..n]);
                    if out.tee && log.is_some() {
                        let mut stdout = std::io::stdout().lock();
                        let _ = stdout.write_all(&buf[..n]);
                        let _ = stdout.flush();
                    }
                }
            }
            cv.notify_all();
            if n == 0 {
                return;
            }
            if let Some(f) = log.as_mut() {
                let _ = f.write_all(&buf[..n]);
            }
        }
    });
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
