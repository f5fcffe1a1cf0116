//! Handing a captured VM's serial console to the user's terminal: the console is copied to
//! stdout, keystrokes go to the guest (the terminal in raw mode, so Ctrl-c and arrows reach
//! the guest as they would on a real serial line), and `Ctrl-a x` quits QEMU as it does in
//! QEMU's own multiplexed console (`Ctrl-a Ctrl-a` sends a Ctrl-a, `Ctrl-a h` prints help).

use std::io::{Read, Write};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustix::termios::{isatty, tcgetattr, tcsetattr, OptionalActions, Termios};

use crate::Vm;

/// The escape key: Ctrl-a, as in QEMU and screen.
const ESCAPE: u8 = 0x01;

/// The help `Ctrl-a h` prints.
pub const HELP: &str = "Ctrl-a x  quit (switches the VM off)\r\nCtrl-a h  this help\r\nCtrl-a Ctrl-a  send Ctrl-a to the guest\r\n";

/// What a keystroke (after the escape logic) asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Key {
    /// Bytes for the guest (none while an escape is pending).
    Send(Vec<u8>),
    Quit,
    Help,
}

/// The escape state machine over the bytes typed.
#[derive(Debug, Default)]
pub struct Escape {
    pending: bool,
}

impl Escape {
    pub fn feed(&mut self, byte: u8) -> Key {
        if !self.pending {
            if byte == ESCAPE {
                self.pending = true;
                return Key::Send(Vec::new());
            }
            return Key::Send(vec![byte]);
        }
        self.pending = false;
        match byte {
            b'x' | b'X' => Key::Quit,
            b'h' | b'H' | b'?' => Key::Help,
            ESCAPE => Key::Send(vec![ESCAPE]),
            other => Key::Send(vec![ESCAPE, other]),
        }
    }
}

/// Restores the terminal's mode when dropped.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enter() -> Result<RawMode> {
        let stdin = std::io::stdin();
        if !isatty(&stdin) {
            return Ok(RawMode(None));
        }
        let saved = tcgetattr(&stdin).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw).context("putting the terminal in raw mode")?;
        Ok(RawMode(Some(saved)))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, saved);
        }
    }
}

/// Gives the VM's serial console to this terminal until the guest powers off or the user
/// types `Ctrl-a x` (then QEMU is stopped). The VM must have been started with a captured
/// console; its output is copied to stdout from now on.
pub fn attach(vm: &mut Vm) -> Result<ExitStatus> {
    let mut guest_in = vm.take_stdin().context("this VM's console is not captured, so it cannot be attached")?;
    vm.set_tee(true);
    let raw = RawMode::enter()?;
    let quit = Arc::new(AtomicBool::new(false));
    let quit_keys = quit.clone();
    // The keyboard thread blocks in read(); it is left behind when QEMU ends first.
    std::thread::spawn(move || {
        let mut escape = Escape::default();
        let mut byte = [0u8; 1];
        while let Ok(1) = std::io::stdin().lock().read(&mut byte) {
            let sent = match escape.feed(byte[0]) {
                Key::Quit => break,
                Key::Help => {
                    let _ = std::io::stdout().write_all(format!("\r\n{HELP}").as_bytes());
                    let _ = std::io::stdout().flush();
                    Ok(())
                }
                Key::Send(bytes) => guest_in.write_all(&bytes).and_then(|()| guest_in.flush()),
            };
            if sent.is_err() {
                break;
            }
        }
        quit_keys.store(true, Ordering::SeqCst);
    });
    let status = loop {
        if let Some(status) = vm.try_wait()? {
            break status;
        }
        if quit.load(Ordering::SeqCst) {
            break vm.kill()?;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    vm.set_tee(false);
    drop(raw);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::{Escape, Key, ESCAPE};

    fn typed(bytes: &[u8]) -> (Vec<u8>, Vec<Key>) {
        let mut e = Escape::default();
        let mut sent = Vec::new();
        let mut other = Vec::new();
        for &b in bytes {
            match e.feed(b) {
                Key::Send(s) => sent.extend(s),
                k => other.push(k),
            }
        }
        (sent, other)
    }

    #[test]
    fn ctrl_a_x_quits_and_everything_else_reaches_the_guest() {
        assert_eq!(typed(b"root\r"), (b"root\r".to_vec(), vec![]));
        assert_eq!(typed(&[b'l', 3, ESCAPE, b'x']), (vec![b'l', 3], vec![Key::Quit]));
        assert_eq!(typed(&[ESCAPE, ESCAPE, b'a']), (vec![ESCAPE, b'a'], vec![]));
        assert_eq!(typed(&[ESCAPE, b'q']), (vec![ESCAPE, b'q'], vec![]));
        assert_eq!(typed(&[ESCAPE, b'h', b'x']), (vec![b'x'], vec![Key::Help]));
    }
}
