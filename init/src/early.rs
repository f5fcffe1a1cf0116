//! Early filesystem setup: a table of typed actions, each printable as the shell command it
//! replaces, applied in order. An error names the action.

use std::fmt;

use anyhow::{Context, Result};
use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::mount::{mount, MountFlags};

/// One early action.
pub enum Action {
    Mkdir { path: &'static str, mode: u32 },
    Mount { source: &'static str, target: &'static str, fstype: &'static str, flags: MountFlags, data: &'static str },
    Symlink { target: &'static str, link: &'static str },
    Write { path: &'static str, value: &'static str },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Mkdir { path, mode } => write!(f, "mkdir -m {mode:o} {path}"),
            Action::Mount { source, target, fstype, data, .. } => {
                write!(f, "mount -t {fstype} {source} {target}")?;
                if !data.is_empty() {
                    write!(f, " -o {data}")?;
                }
                Ok(())
            }
            Action::Symlink { target, link } => write!(f, "ln -s {target} {link}"),
            Action::Write { path, value } => write!(f, "echo {} > {path}", value.trim_end()),
        }
    }
}

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV).union(MountFlags::NOEXEC);

/// The pseudo filesystems every step after this one relies on.
pub const MOUNTS: &[Action] = &[
    Action::Mkdir { path: "/proc", mode: 0o555 },
    Action::Mount { source: "proc", target: "/proc", fstype: "proc", flags: NOSUID_NODEV_NOEXEC, data: "" },
    Action::Mkdir { path: "/sys", mode: 0o555 },
    Action::Mount { source: "sysfs", target: "/sys", fstype: "sysfs", flags: NOSUID_NODEV_NOEXEC, data: "" },
    Action::Mkdir { path: "/dev", mode: 0o755 },
    Action::Mount { source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: MountFlags::NOSUID, data: "mode=0755" },
    Action::Mkdir { path: "/dev/pts", mode: 0o755 },
    Action::Mount { source: "devpts", target: "/dev/pts", fstype: "devpts", flags: MountFlags::NOSUID.union(MountFlags::NOEXEC), data: "gid=5,mode=620,ptmxmode=000" },
    Action::Mkdir { path: "/run", mode: 0o755 },
    Action::Mount { source: "tmpfs", target: "/run", fstype: "tmpfs", flags: MountFlags::NOSUID.union(MountFlags::NODEV), data: "mode=0755" },
    Action::Mkdir { path: "/tmp", mode: 0o1777 },
    Action::Mount { source: "tmpfs", target: "/tmp", fstype: "tmpfs", flags: MountFlags::NOSUID.union(MountFlags::NODEV), data: "mode=1777" },
    Action::Symlink { target: "/proc/self/fd", link: "/dev/fd" },
    Action::Symlink { target: "/proc/self/fd/0", link: "/dev/stdin" },
    Action::Symlink { target: "/proc/self/fd/1", link: "/dev/stdout" },
    Action::Symlink { target: "/proc/self/fd/2", link: "/dev/stderr" },
    // Our log lines go to /dev/kmsg too; without this the kernel rate-limits them away.
    // The kernel insists on the trailing newline here.
    Action::Write { path: "/proc/sys/kernel/printk_devkmsg", value: "on\n" },
];

/// EFI variables, when the machine booted through UEFI (bootloader installation needs them).
pub const EFIVARS: Action = Action::Mount { source: "efivarfs", target: "/sys/firmware/efi/efivars", fstype: "efivarfs", flags: NOSUID_NODEV_NOEXEC, data: "" };

impl Action {
    /// Applies the action. Work that is already done (a mount point already mounted, a
    /// directory or link already there) counts as success, so the table is idempotent.
    pub fn apply(&self) -> Result<()> {
        let result = match self {
            Action::Mkdir { path, mode } => rustix::fs::mkdir(*path, Mode::from_raw_mode(*mode)),
            Action::Mount { source, target, fstype, flags, data } => {
                let data = std::ffi::CString::new(*data).unwrap_or_default();
                mount(*source, *target, *fstype, *flags, data.as_c_str())
            }
            Action::Symlink { target, link } => rustix::fs::symlink(*target, *link),
            Action::Write { path, value } => {
                return std::fs::write(path, value).with_context(|| self.to_string());
            }
        };
        match result {
            Ok(()) | Err(Errno::EXIST) | Err(Errno::BUSY) => Ok(()),
            Err(e) => Err(std::io::Error::from(e)).with_context(|| self.to_string()),
        }
    }
}

/// Applies the early table in order. (efivarfs comes later, once modules are loaded: it
/// may be one.)
pub fn apply_all() -> Result<()> {
    for action in MOUNTS {
        action.apply()?;
    }
    Ok(())
}
