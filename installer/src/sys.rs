//! The only module of the engine with `unsafe` code: system calls and ioctls that rustix
//! does not wrap. Each function is a safe wrapper that checks its inputs and returns
//! `io::Result`; each `unsafe` block says why it is sound.

use std::io;
use std::os::fd::AsFd;

use linux_raw_sys::ioctl::{BLKDISCARD, BLKGETSIZE64, BLKZEROOUT};
use rustix::ioctl::{ioctl, Getter, Opcode, Setter};

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

// Block-device ioctls the filesystem formatters need (include/uapi/linux/fs.h). rustix wraps
// BLKSSZGET itself; these three it does not, so they are issued through its generic ioctl
// with the request numbers from linux-raw-sys.

/// The size in bytes of the block device `fd` (`BLKGETSIZE64`).
pub fn blk_size64<Fd: AsFd>(fd: Fd) -> io::Result<u64> {
    // SAFETY: BLKGETSIZE64 writes exactly one u64 through its pointer argument, which is
    // what `Getter<_, u64>` provides; the kernel checks that `fd` is a block device.
    let size = unsafe { ioctl(fd, Getter::<{ BLKGETSIZE64 as Opcode }, u64>::new()) }?;
    Ok(size)
}

/// Makes bytes `start..start+len` of the block device `fd` read back as zeros
/// (`BLKZEROOUT`). The kernel uses the device's write-zeroes or unmap command when it
/// has one and writes zero pages otherwise; either way the result is guaranteed. Both
/// values must be multiples of the logical sector size.
pub fn blk_zeroout<Fd: AsFd>(fd: Fd, start: u64, len: u64) -> io::Result<()> {
    // SAFETY: BLKZEROOUT reads a `u64[2]` {start, length} through its pointer argument,
    // which is what `Setter<_, [u64; 2]>` passes; nothing is written back.
    unsafe { ioctl(fd, Setter::<{ BLKZEROOUT as Opcode }, [u64; 2]>::new([start, len])) }?;
    Ok(())
}

/// Tells the block device `fd` that bytes `start..start+len` are unused (`BLKDISCARD`).
/// What they read back as afterwards is up to the device: callers must not rely on zeros.
pub fn blk_discard<Fd: AsFd>(fd: Fd, start: u64, len: u64) -> io::Result<()> {
    // SAFETY: BLKDISCARD reads a `u64[2]` {start, length} through its pointer argument,
    // which is what `Setter<_, [u64; 2]>` passes; nothing is written back.
    unsafe { ioctl(fd, Setter::<{ BLKDISCARD as Opcode }, [u64; 2]>::new([start, len])) }?;
    Ok(())
}
