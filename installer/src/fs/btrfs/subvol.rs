//! Subvolumes, made by the kernel in a mounted btrfs (`BTRFS_IOC_SUBVOL_CREATE`, what
//! `btrfs subvolume create` calls): the top level is mounted on a private directory, the
//! subvolumes are created in it, and it is unmounted again.

use std::path::Path;

use anyhow::{Context, Result};

use crate::mount::{mount_all, MountSpec};

/// Creates each of `names` (one path component each) at the top level of the btrfs on
/// `device`, using `scratch` (an empty directory) as the mount point.
pub fn create(device: &Path, names: &[&str], scratch: &Path) -> Result<()> {
    std::fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let spec = MountSpec { source: device.to_path_buf(), target: "/".into(), fstype: "btrfs".into(), options: "subvolid=5".into() };
    let mounted = mount_all(scratch, &[spec]).with_context(|| format!("mounting the top level of {} to make its subvolumes", device.display()))?;
    let dir = std::fs::File::open(scratch).with_context(|| format!("opening {}", scratch.display()))?;
    for name in names {
        crate::sys::btrfs_subvol_create(&dir, name).with_context(|| format!("creating subvolume {name} on {}", device.display()))?;
        log::info!("{}: subvolume {name}", device.display());
    }
    drop(dir);
    mounted.unmount()
}
