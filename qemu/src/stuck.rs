//! Console states a boot never leaves by itself: waiting for a login prompt after one of
//! them only waits out the timeout. [`stuck`] recognises them in console text — systemd's
//! emergency and rescue modes (and the local mount that sent it there), a kernel panic,
//! firmware or a boot loader that found nothing to boot — and names the lines that show it.

/// What the console shows, with a reason per pattern. Order matters: the first found wins.
const STATES: &[(&str, &str)] = &[
    ("Kernel panic - not syncing", "the kernel panicked"),
    ("You are in emergency mode", "systemd is in emergency mode"),
    ("Cannot open access to console, the root account is locked", "systemd is in emergency mode (and the root account is locked)"),
    ("You are in rescue mode", "systemd is in rescue mode"),
    ("No bootable device", "the BIOS found no bootable device"),
    ("No bootable option or device was found", "the UEFI firmware found no bootable device"),
    ("UEFI Interactive Shell", "the UEFI firmware found nothing to boot and started its shell"),
    ("grub rescue>", "GRUB could not find its files (grub rescue)"),
];

/// Why the boot shown in `console` is stuck, and the lines that show it; `None` while it
/// may still come up. A `Dependency failed for` a mount or for the local file systems is
/// the start of emergency mode and counts at once.
pub fn stuck(console: &str) -> Option<(String, Vec<String>)> {
    let lines: Vec<&str> = console.lines().collect();
    let failed_mount = |l: &&str| l.contains("Dependency failed for") && (l.contains("Local File Systems") || l.contains("/") || l.contains(".mount"));
    let evidence = |found: usize| -> Vec<String> {
        let mut out: Vec<String> = lines.iter().filter(|l| failed_mount(l) || l.contains("Timed out waiting for device") || l.contains("FAILED")).map(|l| l.trim().to_string()).collect();
        out.extend(lines[found.saturating_sub(3)..(found + 2).min(lines.len())].iter().map(|l| l.trim().to_string()));
        out.dedup();
        out
    };
    for (pattern, why) in STATES {
        if let Some(i) = lines.iter().position(|l| l.contains(pattern)) {
            return Some((why.to_string(), evidence(i)));
        }
    }
    let i = lines.iter().position(failed_mount)?;
    Some(("a file system the new system's fstab needs did not mount (systemd is going to emergency mode)".into(), evidence(i)))
}

#[cfg(test)]
mod tests {
    use super::stuck;

    /// Lines as a Debian guest printed them on the serial console.
    const EMERGENCY: &str = "[  OK  ] Reached target swap.target - Swaps.\n\
[ TIME ] Timed out waiting for device dev-disk-by\\x2duuid-9a7c.device - /dev/disk/by-uuid/9a7c.\n\
[DEPEND] Dependency failed for srv-data.mount - /srv/data.\n\
[DEPEND] Dependency failed for local-fs.target - Local File Systems.\n\
You are in emergency mode. After logging in, type \"journalctl -xb\" to view\n\
Cannot open access to console, the root account is locked.\n";

    #[test]
    fn emergency_mode_and_its_cause() {
        let (why, lines) = stuck(EMERGENCY).unwrap();
        assert_eq!(why, "systemd is in emergency mode");
        assert!(lines.iter().any(|l| l.contains("Dependency failed for srv-data.mount")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("Timed out waiting for device")), "{lines:?}");
        // Before the emergency banner, the failed mount already counts.
        let early: String = EMERGENCY.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(stuck(&early).unwrap().0.contains("did not mount"));
    }

    #[test]
    fn panics_and_firmware_without_a_boot_device() {
        let panic = "[    2.1] VFS: Cannot open root device \"UUID=x\" or unknown-block(0,0): error -6\n[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n";
        assert_eq!(stuck(panic).unwrap().0, "the kernel panicked");
        assert_eq!(stuck("SeaBIOS (version 1.16.2)\nBooting from Hard Disk...\nBoot failed: not a bootable disk\n\nNo bootable device.\n").unwrap().0, "the BIOS found no bootable device");
        assert!(stuck("BdsDxe: No bootable option or device was found.\nBdsDxe: Press any key to enter the Boot Manager Menu.\n").unwrap().0.contains("UEFI"));
        assert!(stuck("error: no such device: 1234.\ngrub rescue> ").is_some());
    }

    #[test]
    fn an_ordinary_boot_is_not_stuck() {
        let ok = "[  OK  ] Mounted srv-data.mount - /srv/data.\n[  OK  ] Reached target local-fs.target - Local File Systems.\nDebian GNU/Linux 12 server ttyS0\n\nserver login: ";
        assert_eq!(stuck(ok), None);
    }
}
