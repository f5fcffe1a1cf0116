//! Starting over after a failure: unmount what the failed attempt mounted and execute the
//! init again as PID 1 (execve keeps the PID). The early steps are idempotent: mounts that
//! exist, modules that are loaded and addresses that are configured are accepted as done.

use std::os::unix::process::CommandExt;

/// Never returns: the process image is replaced, or the failure routine takes over.
pub fn restart() -> ! {
    rustix::fs::sync();
    crate::shutdown::unmount_targets();
    let err = std::process::Command::new("/init").exec();
    crate::failure::fail("retry", &anyhow::anyhow!("re-executing /init: {err}"))
}
