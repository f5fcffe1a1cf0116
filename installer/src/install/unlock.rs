//! Part of the system phase: how the new system opens its encrypted partitions at boot.
//! `/etc/crypttab` names each by its LUKS2 UUID; an `unattended` one gets its passphrase
//! as a root-only key file in `/etc/cryptsetup-keys.d/`, and for `/` the target's
//! initramfs carries it (cryptsetup-initramfs's `KEYFILE_PATTERN`, the initramfs made
//! root-only with `UMASK=0077`). A `prompt` one asks on the console.

use anyhow::{Context, Result};

use super::Install;
use crate::files::root::RootDir;
use crate::files::template::secret_value;
use crate::plan::Unlock;

const KEY_DIR: &str = "etc/cryptsetup-keys.d";
const CONF_HOOK: &str = "etc/cryptsetup-initramfs/conf-hook";
const PATTERN: &str = "KEYFILE_PATTERN=\"/etc/cryptsetup-keys.d/*.key\"";

/// Writes crypttab, the key files and the initramfs settings; nothing without `encrypt=`.
pub fn configure(inst: &Install, root: &RootDir) -> Result<()> {
    let opened: Vec<_> = inst.made.iter().filter_map(|m| m.encrypted.as_ref()).collect();
    if opened.is_empty() {
        return Ok(());
    }
    let secrets = inst.payload.secrets()?;
    let mut lines = Vec::new();
    let mut keys = false;
    for o in &opened {
        let e = inst.plan().layout.encryption(&o.name).with_context(|| format!("partition {} was encrypted but the plan has no encrypt= entry for it", o.name))?;
        let key = match e.unlock {
            Unlock::Prompt => "none".to_string(),
            Unlock::Unattended => {
                let value = secrets.get(&e.secret).with_context(|| format!("the payload has no secret {:?} for partition {}", e.secret, o.name))?;
                if !keys {
                    root.mkdir_p(KEY_DIR)?;
                    rustix::fs::chmod(root.path().join(KEY_DIR), rustix::fs::Mode::from_raw_mode(0o700)).with_context(|| format!("making /{KEY_DIR} root-only"))?;
                    keys = true;
                }
                root.write_file(&format!("{KEY_DIR}/{}.key", o.name), secret_value(value), 0o400)?;
                format!("/{KEY_DIR}/{}.key", o.name)
            }
        };
        lines.push(crypttab_line(&o.name, &o.luks_uuid, &key, inst.plan().layout.holds_root(&o.name)));
    }
    let text = format!("# <target name> <source device> <key file> <options>: written by anemos (encrypt=)\n{}", lines.concat());
    root.write_file("etc/crypttab", text.as_bytes(), 0o644)?;
    if keys {
        initramfs_keys(root)?;
    }
    log::info!("system: /etc/crypttab for {} encrypted partition(s){}", opened.len(), if keys { ", key files root-only" } else { "" });
    Ok(())
}

/// One crypttab line. `/` is marked `initramfs` so the initramfs opens it whatever its hook
/// makes of the mounts at build time.
fn crypttab_line(name: &str, luks_uuid: &str, key: &str, root: bool) -> String {
    format!("{name}\tUUID={luks_uuid}\t{key}\tluks,discard{}\n", if root { ",initramfs" } else { "" })
}

/// Lets the target's initramfs carry the key files, and makes it readable by root only.
fn initramfs_keys(root: &RootDir) -> Result<()> {
    match root.read(CONF_HOOK)? {
        Some(old) if String::from_utf8_lossy(&old).lines().any(|l| l.trim() == PATTERN) => {}
        Some(_) => root.rewrite(CONF_HOOK, |old| Ok([old, format!("\n# anemos: unattended unlock (encrypt=)\n{PATTERN}\n").as_bytes()].concat()))?,
        None => root.write_file(CONF_HOOK, format!("{PATTERN}\n").as_bytes(), 0o644)?,
    }
    root.write_file("etc/initramfs-tools/conf.d/anemos-umask", b"# anemos: the initramfs holds key files (encrypt=)\nUMASK=0077\n", 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypttab_lines_by_unlock_and_mount_point() {
        assert_eq!(crypttab_line("root", "u-1", "/etc/cryptsetup-keys.d/root.key", true), "root\tUUID=u-1\t/etc/cryptsetup-keys.d/root.key\tluks,discard,initramfs\n");
        assert_eq!(crypttab_line("srv", "u-2", "none", false), "srv\tUUID=u-2\tnone\tluks,discard\n");
    }

    #[test]
    fn the_key_pattern_is_added_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        root.write_file(CONF_HOOK, b"#KEYFILE_PATTERN=\n", 0o644).unwrap();
        initramfs_keys(&root).unwrap();
        initramfs_keys(&root).unwrap();
        let text = String::from_utf8(root.read(CONF_HOOK).unwrap().unwrap()).unwrap();
        assert_eq!(text.matches(PATTERN).count(), 1, "{text}");
        assert!(text.starts_with("#KEYFILE_PATTERN=\n"));
        assert_eq!(root.read("etc/initramfs-tools/conf.d/anemos-umask").unwrap().unwrap(), b"# anemos: the initramfs holds key files (encrypt=)\nUMASK=0077\n");
    }
}
