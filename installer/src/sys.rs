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

use std::os::fd::AsFd;

use linux_raw_sys::ioctl::{BLKDISCARD, BLKGETSIZE64, BLKPBSZGET, BLKPG, BLKRRPART, BLKSSZGET, BLKZEROOUT};
use rustix::ioctl::{ioctl, Getter, NoArg, Setter};

/// The size of a block device in bytes.
pub fn block_size_bytes(fd: impl AsFd) -> io::Result<u64> {
    // SAFETY: BLKGETSIZE64 writes one u64 (the kernel's `u64 *` argument) into the Getter's
    // buffer and nothing else.
    let ioctl_op = unsafe { Getter::<{ BLKGETSIZE64 }, u64>::new() };
    // SAFETY: the opcode and the argument type match (see above); the fd is borrowed.
    Ok(unsafe { ioctl(fd, ioctl_op) }?)
}

/// Logical and physical sector sizes of a block device.
pub fn sector_sizes(fd: impl AsFd) -> io::Result<(u32, u32)> {
    // SAFETY: BLKSSZGET and BLKPBSZGET each write one `int`/`unsigned int` into the buffer.
    let (logical, physical) = unsafe { (Getter::<{ BLKSSZGET }, u32>::new(), Getter::<{ BLKPBSZGET }, u32>::new()) };
    let fd = fd.as_fd();
    // SAFETY: opcodes and argument types match (see above).
    Ok(unsafe { (ioctl(fd, logical)?, ioctl(fd, physical)?) })
}

/// Asks the kernel to re-read the partition table (fails with EBUSY if a partition is in use).
pub fn reread_partitions(fd: impl AsFd) -> io::Result<()> {
    // SAFETY: BLKRRPART takes no argument.
    let op = unsafe { NoArg::<{ BLKRRPART }>::new() };
    // SAFETY: the opcode takes no argument; the fd is borrowed.
    Ok(unsafe { ioctl(fd, op) }?)
}

/// Zeroes `len` bytes at `offset` of a block device, letting the device do it cheaply
/// (write-zeroes or unmap) where it can.
pub fn zero_out(fd: impl AsFd, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: BLKZEROOUT reads a `uint64_t[2]` (start, length) through the pointer the
    // Setter passes; the array lives in the Setter for the duration of the call.
    let op = unsafe { Setter::<{ BLKZEROOUT }, [u64; 2]>::new([offset, len]) };
    // SAFETY: opcode and argument type match (see above).
    Ok(unsafe { ioctl(fd, op) }?)
}

/// Tells a block device that `len` bytes at `offset` are unused (BLKDISCARD). What they
/// read back as afterwards is up to the device: callers must not rely on zeros.
pub fn discard(fd: impl AsFd, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: BLKDISCARD reads a `uint64_t[2]` (start, length) through the pointer the
    // Setter passes; the array lives in the Setter for the duration of the call.
    let op = unsafe { Setter::<{ BLKDISCARD }, [u64; 2]>::new([offset, len]) };
    // SAFETY: opcode and argument type match (see above).
    Ok(unsafe { ioctl(fd, op) }?)
}

/// `struct blkpg_partition` from <linux/blkpg.h>.
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: i32,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg` from <linux/blkpg.h>.
#[repr(C)]
struct BlkpgIoctlArg {
    op: i32,
    flags: i32,
    datalen: i32,
    data: *mut BlkpgPartition,
}

const BLKPG_ADD_PARTITION: i32 = 1;
const BLKPG_DEL_PARTITION: i32 = 2;

fn blkpg(fd: impl AsFd, op: i32, number: u32, start: u64, length: u64) -> io::Result<()> {
    let invalid = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
    let mut part = BlkpgPartition {
        start: i64::try_from(start).map_err(|_| invalid("partition start out of range"))?,
        length: i64::try_from(length).map_err(|_| invalid("partition length out of range"))?,
        pno: i32::try_from(number).map_err(|_| invalid("partition number out of range"))?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg { op, flags: 0, datalen: std::mem::size_of::<BlkpgPartition>() as i32, data: &mut part };
    // SAFETY: BLKPG reads a `struct blkpg_ioctl_arg` whose `data` points to a
    // `struct blkpg_partition` of `datalen` bytes; both are repr(C) copies of the kernel's
    // definitions and `part` outlives the call.
    let op = unsafe { Setter::<{ BLKPG }, BlkpgIoctlArg>::new(arg) };
    // SAFETY: opcode and argument type match (see above).
    Ok(unsafe { ioctl(fd, op) }?)
}

/// Tells the kernel about one partition (BLKPG_ADD_PARTITION), in bytes.
pub fn add_partition(fd: impl AsFd, number: u32, start: u64, length: u64) -> io::Result<()> {
    blkpg(fd, BLKPG_ADD_PARTITION, number, start, length)
}

/// Makes the kernel forget one partition (BLKPG_DEL_PARTITION).
pub fn delete_partition(fd: impl AsFd, number: u32) -> io::Result<()> {
    blkpg(fd, BLKPG_DEL_PARTITION, number, 0, 0)
}

/// A device-mapper ioctl's argument: `struct dm_ioctl` (from <linux/dm-ioctl.h>) at its
/// start, the data it points to (target specs and their parameters) after it, in one
/// buffer the kernel reads and writes through.
#[repr(C, align(8))]
pub struct DmBuffer(pub [u8; DM_BUFFER_SIZE]);

pub const DM_BUFFER_SIZE: usize = 16 << 10;

/// Which device-mapper command (the `_IOWR(0xfd, …, struct dm_ioctl)` opcodes).
#[derive(Debug, Clone, Copy)]
pub enum DmCommand {
    Create,
    Remove,
    Suspend,
    TableLoad,
}

/// One device-mapper command on `/dev/mapper/control`. The caller fills the header's
/// `data_size` (at most the buffer) and whatever the command reads.
pub fn dm_ioctl(control: impl AsFd, command: DmCommand, buf: &mut DmBuffer) -> io::Result<()> {
    use linux_raw_sys::ioctl::{DM_DEV_CREATE, DM_DEV_REMOVE, DM_DEV_SUSPEND, DM_TABLE_LOAD};
    use rustix::ioctl::Updater;
    let size = u32::from_ne_bytes([buf.0[12], buf.0[13], buf.0[14], buf.0[15]]) as usize;
    if !(312..=DM_BUFFER_SIZE).contains(&size) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "device-mapper data_size out of range"));
    }
    let fd = control.as_fd();
    // SAFETY: every DM_* opcode takes a `struct dm_ioctl *` whose `data_size` bounds what
    // the kernel reads and writes; it was checked above to lie within the buffer, which is
    // 8-aligned like the struct and borrowed mutably for the call.
    unsafe {
        match command {
            DmCommand::Create => ioctl(fd, Updater::<{ DM_DEV_CREATE }, DmBuffer>::new(buf)),
            DmCommand::Remove => ioctl(fd, Updater::<{ DM_DEV_REMOVE }, DmBuffer>::new(buf)),
            DmCommand::Suspend => ioctl(fd, Updater::<{ DM_DEV_SUSPEND }, DmBuffer>::new(buf)),
            DmCommand::TableLoad => ioctl(fd, Updater::<{ DM_TABLE_LOAD }, DmBuffer>::new(buf)),
        }
    }?;
    Ok(())
}

/// Binds a socket to one network interface (SO_BINDTODEVICE), so broadcasts (DHCP) leave
/// through it even before it has an address or a route.
pub fn bind_to_device(fd: impl AsFd, ifname: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let name = std::ffi::CString::new(ifname).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL"))?;
    let len = name.as_bytes_with_nul().len() as libc::socklen_t;
    // SAFETY: setsockopt reads `len` bytes from the pointer, which points into `name`, a
    // live NUL-terminated buffer of exactly that length; the fd is borrowed for the call.
    let rc = unsafe { libc::setsockopt(fd.as_fd().as_raw_fd(), libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_ptr().cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `KEXEC_FILE_UNLOAD`: unload a previously loaded kernel.
pub const KEXEC_FILE_UNLOAD: u32 = 1;
/// `KEXEC_FILE_NO_INITRAMFS`
pub const KEXEC_FILE_NO_INITRAMFS: u32 = 4;

/// `kexec_file_load(2)`: loads `kernel` and `initrd` with `cmdline` for a later
/// `reboot(LINUX_REBOOT_CMD_KEXEC)`. With `KEXEC_FILE_UNLOAD` in `flags` it unloads instead.
pub fn kexec_file_load(kernel: Option<&std::fs::File>, initrd: Option<&std::fs::File>, cmdline: &str, flags: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let cmd = std::ffi::CString::new(cmdline).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "command line contains NUL"))?;
    let kfd = kernel.map(|f| f.as_raw_fd()).unwrap_or(-1);
    let ifd = initrd.map(|f| f.as_raw_fd()).unwrap_or(-1);
    let len = if flags & KEXEC_FILE_UNLOAD != 0 { 0 } else { cmd.as_bytes_with_nul().len() };
    let flags = flags | if initrd.is_none() { KEXEC_FILE_NO_INITRAMFS } else { 0 };
    // SAFETY: kexec_file_load takes two fds (borrowed from live Files, or -1 when unused),
    // the length of the command line including its NUL, a pointer to that NUL-terminated
    // buffer (alive for the call), and flags. The kernel only reads these.
    let rc = unsafe { libc::syscall(libc::SYS_kexec_file_load, kfd, ifd, len as libc::c_ulong, cmd.as_ptr(), flags as libc::c_ulong) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
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

/// An md (software RAID) ioctl on an array's device node (`_IO*(MD_MAJOR = 9, …)` from
/// <linux/raid/md_u.h>), in the order `mdadm --assemble` issues them.
#[derive(Debug, Clone, Copy)]
pub enum MdCommand {
    /// SET_ARRAY_INFO with only the superblock version set (`raid_disks` 0): the members'
    /// superblocks describe the array.
    SuperblockVersion { major: i32, minor: i32 },
    /// ADD_NEW_DISK: a member by its device number; the kernel reads its superblock.
    AddMember { major: u32, minor: u32 },
    /// RUN_ARRAY
    Run,
    /// STOP_ARRAY
    Stop,
}

/// `_IOW(9, 0x23, mdu_array_info_t)`: 18 ints.
const MD_SET_ARRAY_INFO: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<[i32; 18]>(9, 0x23);
/// `_IOW(9, 0x21, mdu_disk_info_t)`: 5 ints.
const MD_ADD_NEW_DISK: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<[i32; 5]>(9, 0x21);
/// `_IOW(9, 0x30, mdu_param_t)`: 3 ints.
const MD_RUN_ARRAY: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<[i32; 3]>(9, 0x30);
/// `_IO(9, 0x32)`
const MD_STOP_ARRAY: rustix::ioctl::Opcode = rustix::ioctl::opcode::none(9, 0x32);

#[cfg(test)]
#[test]
fn md_opcodes_are_the_kernels() {
    // The values <linux/raid/md_u.h> gives on x86-64, as mdadm's strace shows them.
    assert_eq!([MD_SET_ARRAY_INFO, MD_ADD_NEW_DISK, MD_RUN_ARRAY, MD_STOP_ARRAY], [0x4048_0923, 0x4014_0921, 0x400c_0930, 0x932]);
}

pub fn md_ioctl(array: impl AsFd, command: MdCommand) -> io::Result<()> {
    let fd = array.as_fd();
    // SAFETY: each opcode is `_IOW(9, nr, T)` (or `_IO` for STOP_ARRAY) with T the C struct
    // of that many ints; the Setter passes a pointer to a value of exactly that size,
    // alive for the call, which the kernel only reads.
    unsafe {
        match command {
            MdCommand::SuperblockVersion { major, minor } => {
                let mut info = [0i32; 18];
                info[0] = major;
                info[1] = minor;
                ioctl(fd, Setter::<{ MD_SET_ARRAY_INFO }, [i32; 18]>::new(info))
            }
            MdCommand::AddMember { major, minor } => {
                let info: [i32; 5] = [0, major as i32, minor as i32, 0, 0];
                ioctl(fd, Setter::<{ MD_ADD_NEW_DISK }, [i32; 5]>::new(info))
            }
            MdCommand::Run => ioctl(fd, Setter::<{ MD_RUN_ARRAY }, [i32; 3]>::new([0; 3])),
            MdCommand::Stop => ioctl(fd, NoArg::<{ MD_STOP_ARRAY }>::new()),
        }
    }?;
    Ok(())
}

/// `struct btrfs_ioctl_vol_args` from <linux/btrfs.h>.
#[repr(C)]
struct BtrfsVolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// `BTRFS_IOC_SUBVOL_CREATE`: `_IOW(0x94, 14, struct btrfs_ioctl_vol_args)`.
const BTRFS_IOC_SUBVOL_CREATE: rustix::ioctl::Opcode = 0x5000_940e;

/// Creates the subvolume `name` (one path component) in the btrfs directory `dir`.
pub fn btrfs_subvol_create(dir: impl AsFd, name: &str) -> io::Result<()> {
    let mut args = BtrfsVolArgs { fd: 0, name: [0; 4088] };
    if name.is_empty() || name.len() >= args.name.len() || name.contains(['/', '\0']) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a subvolume name is one path component"));
    }
    args.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: BTRFS_IOC_SUBVOL_CREATE reads a `struct btrfs_ioctl_vol_args` (an s64 and a
    // NUL-terminated name of at most 4088 bytes) through the pointer the Setter passes;
    // `BtrfsVolArgs` is its repr(C) copy and lives in the Setter for the call.
    let op = unsafe { Setter::<{ BTRFS_IOC_SUBVOL_CREATE }, BtrfsVolArgs>::new(args) };
    // SAFETY: opcode and argument type match (see above); the fd is borrowed.
    Ok(unsafe { ioctl(dir, op) }?)
}
