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

/// The largest resident set size, in KiB, of any terminated and waited-for descendant of the
/// caller (`getrusage(RUSAGE_CHILDREN)`, getrusage(2): `ru_maxrss`). Benchmarks read it in a
/// wrapper process after waiting for the measured command.
pub fn children_max_rss_kib() -> io::Result<u64> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage(2) writes one `struct rusage` through the pointer, which points to
    // memory of exactly that type that we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the struct was zero-initialised (a valid rusage) and filled in by the kernel.
    let ru = unsafe { ru.assume_init() };
    Ok(ru.ru_maxrss.max(0) as u64)
}
