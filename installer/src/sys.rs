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

/// Makes `cmd` enter `root` (`chroot(2)` then `chdir("/")`) in the child, between fork and
/// exec. Used to run the target's own tools (dpkg, maintainer scripts) in the new system.
pub fn chroot_command(cmd: &mut std::process::Command, root: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let root = std::ffi::CString::new(root.as_os_str().as_bytes())?;
    // SAFETY: the closure runs in the forked child before exec. It calls only chroot(2) and
    // chdir(2) on C strings built before the fork (no allocation, no locks), which are
    // async-signal-safe, and returns their errors through io::Error (no panics).
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::chroot(root.as_c_str())?;
            rustix::process::chdir(c"/")?;
            Ok(())
        });
    }
    Ok(())
}
