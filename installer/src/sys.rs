//! The only module of the engine with `unsafe` code: system calls and ioctls that rustix
//! does not wrap. Each function is a safe wrapper that checks its inputs and returns
//! `io::Result`; each `unsafe` block says why it is sound.

use std::io;

/// Sends `signal` to every process except PID 1 and the caller (`kill(-1, sig)`), which
/// is how an init terminates everything before it shuts down.
pub fn signal_all(signal: rustix::process::Signal) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours; -1 means "every
    // process we may signal", and `signal` is a valid signal number by construction.
    let rc = unsafe { libc::kill(-1, signal.as_raw()) };
    if rc == 0 {
        Ok(())
    } else {
        let err = io::Error::last_os_error();
        // ESRCH: there was nobody left to signal.
        if err.raw_os_error() == Some(libc::ESRCH) {
            Ok(())
        } else {
            Err(err)
        }
    }
}
