//! Subvolumes, made by the kernel in a mounted btrfs (`BTRFS_IOC_SUBVOL_CREATE`, what
//! `btrfs subvolume create` calls): the top level is mounted on a private directory, the
//! subvolumes are created in it, and it is unmounted again.

use std::path::Path;

use anyhow::{Context, Result};

use crate::mount::{mount_all, MountSpec};

/// Creates each of `names` in the btrfs on `device`, in order, using `scratch` (an empty
/// directory) as the mount point of its top level: `@` at the top level, `@/.snapshots`
/// inside `@` (made earlier in the list).
pub fn create(device: &Path, names: &[&str], scratch: &Path) -> Result<()> {
    std::fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let spec = MountSpec { source: device.to_path_buf(), target: "/".into(), fstype: "btrfs".into(), options: "subvolid=5".into() };
    let mounted = mount_all(scratch, &[spec]).with_context(|| format!("mounting the top level of {} to make its subvolumes", device.display()))?;
    let made = names.iter().try_for_each(|name| {
        let (parent, leaf) = name.rsplit_once('/').unwrap_or(("", name));
        // (check allows no `..` and no empty component: the path stays under `scratch`.)
        let dir = std::fs::File::open(scratch.join(parent)).with_context(|| format!("opening {} to make subvolume {name} in it", scratch.join(parent).display()))?;
        crate::sys::btrfs_subvol_create(&dir, leaf).with_context(|| format!("creating subvolume {name} on {}", device.display()))?;
        log::info!("{}: subvolume {name}", device.display());
        Ok::<(), anyhow::Error>(())
    });
    let unmounted = mounted.unmount();
    made.and(unmounted)
}
