//! Kernel modules: the index of a module tree (`modules.dep`, `modules.alias`,
//! `modules.softdep`, `modules.builtin`), dependency ordering, selection of a subset for an
//! initramfs (host side) and loading by name or by coldplug (init side).

pub mod glob;
mod index;
mod load;
mod select;

pub use index::{ModuleEntry, ModuleIndex, SubsetFiles};
pub use load::{LoadReport, Loader};
pub use select::{autodetect, for_layout, select, Selection, DEFAULT_MODULES};

/// The canonical form of a module name: the kernel treats `-` and `_` alike.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a path in a module tree: `kernel/fs/ext4/ext4.ko.zst` → `ext4`.
pub fn name_of_path(path: &str) -> Option<String> {
    let base = path.rsplit('/').next()?;
    let stem = [".ko.zst", ".ko.xz", ".ko.gz", ".ko"].iter().find_map(|ext| base.strip_suffix(ext))?;
    Some(normalize(stem))
}

/// Every distinct, non-empty `modalias` of a device under `sysfs/devices`.
pub fn device_modaliases(sysfs: &std::path::Path) -> anyhow::Result<std::collections::BTreeSet<String>> {
    use anyhow::Context;
    let mut out = std::collections::BTreeSet::new();
    walk_modaliases(&sysfs.join("devices"), &mut out, 0).with_context(|| format!("reading device modaliases under {}/devices", sysfs.display()))?;
    Ok(out)
}

fn walk_modaliases(dir: &std::path::Path, out: &mut std::collections::BTreeSet<String>, depth: usize) -> std::io::Result<()> {
    // sysfs nests deeply but finitely; symlinks (subsystem, driver, …) are not followed.
    if depth > 24 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            // Devices can vanish while we walk; a directory gone is not an error.
            let _ = walk_modaliases(&entry.path(), out, depth + 1);
        } else if ty.is_file() && entry.file_name() == "modalias" {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                if !text.trim().is_empty() {
                    out.insert(text.trim().to_string());
                }
            }
        }
    }
    Ok(())
}

/// Loads the modules a filesystem type needs from the running kernel's tree — in an
/// initramfs without modprobe the kernel cannot do it itself at mount time — including the
/// code pages vfat asks for by name when it mounts.
pub fn load_filesystem(fstype: &str) -> anyhow::Result<usize> {
    let mut wanted = vec![format!("fs-{fstype}")];
    if fstype == "vfat" || fstype == "msdos" {
        wanted.extend(["nls_cp437", "nls_ascii", "nls_utf8", "nls_iso8859_1"].map(String::from));
    }
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    load_running(&wanted)
}

/// Loads modules (names or aliases) and their dependencies from the running kernel's tree;
/// names the tree does not have (built in, or absent) are skipped. 0 without a tree.
pub fn load_running(names: &[&str]) -> anyhow::Result<usize> {
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    let root = std::path::Path::new("/lib/modules").join(&release);
    if !root.join("modules.dep").exists() {
        return Ok(0);
    }
    let index = ModuleIndex::load(&root)?;
    let wanted: Vec<String> = names.iter().filter(|n| !index.lookup(n).is_empty()).map(|n| n.to_string()).collect();
    let mut loader = Loader::new(&index);
    loader.load(&wanted)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_of_paths() {
        assert_eq!(super::name_of_path("kernel/fs/ext4/ext4.ko").as_deref(), Some("ext4"));
        assert_eq!(super::name_of_path("kernel/a/crc32c-intel.ko.zst").as_deref(), Some("crc32c_intel"));
        assert_eq!(super::name_of_path("kernel/a/b.ko.xz").as_deref(), Some("b"));
        assert_eq!(super::name_of_path("kernel/a/readme.txt"), None);
    }
}
