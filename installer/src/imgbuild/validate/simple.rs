//! The one-word variables: names, target, packages, bootloader, kernel command line, proxy,
//! what happens after the install, hostconf, and the IMGBUILD's functions.

use std::collections::BTreeSet;

use super::Ctx;
use crate::imgbuild::diag::bad_value;
use crate::plan::*;

const TARGETS: &[&str] = &["debian", "arch", "alpine"];

pub fn imgname(cx: &mut Ctx<'_>) -> Option<String> {
    let Some(name) = cx.get("imgname").map(str::to_string) else {
        cx.error("imgname", "imgname is not set; name the image, e.g. imgname=mx (it names outputs and is the default host name)");
        return None;
    };
    let ok = name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) && !name.starts_with(['.', '-']);
    if !ok {
        cx.error("imgname", format!("imgname={name:?}: use letters, digits, '.', '_' and '-' only (it becomes a file name), not starting with '.' or '-'"));
        return None;
    }
    Some(name)
}

/// `hostname=`, default `imgname`; an RFC 1123 host name (labels of letters, digits and
/// '-', at most 63 bytes each, 253 in all).
pub fn hostname(cx: &mut Ctx<'_>, imgname: Option<&str>) -> Option<String> {
    let (name, var) = match cx.get("hostname") {
        Some(h) => (h.to_string(), "hostname"),
        None => (imgname?.to_string(), "imgname"),
    };
    let valid = name.len() <= 253 && name.split('.').all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !valid {
        let hint = if var == "imgname" { "; set hostname= to a valid host name" } else { "" };
        cx.error(var, format!("{var}={name:?}: not a valid host name (labels of letters, digits and '-', separated by '.'){hint}"));
        return None;
    }
    Some(name)
}

pub fn target(cx: &mut Ctx<'_>) -> Option<Target> {
    let suite = cx.get("debian_suite").map(|s| s.trim().to_string());
    let Some(t) = cx.get("target").map(|t| t.trim().to_string()) else {
        cx.error("target", "target is not set; say which distribution to install (allowed: debian, arch, alpine)");
        return None;
    };
    let target = match t.as_str() {
        "debian" => {
            let suite = suite.clone().unwrap_or_else(|| "stable".into());
            if !suite.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                cx.error("debian_suite", format!("debian_suite={suite:?}: not a suite name (e.g. stable, bookworm, trixie, sid)"));
                return None;
            }
            Target::Debian { suite }
        }
        "arch" => Target::Arch,
        "alpine" => Target::Alpine,
        _ => {
            cx.error("target", bad_value("target", &t, "not a target", TARGETS));
            return None;
        }
    };
    if suite.is_some() && !matches!(target, Target::Debian { .. }) {
        cx.warn("debian_suite", format!("debian_suite is only used when target=debian (target is {t})"));
    }
    Some(target)
}

/// `packages`: one per line (several on a line are accepted too), duplicates dropped.
pub fn packages(cx: &mut Ctx<'_>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (offset, line) in cx.lines("packages") {
        for name in line.split_whitespace() {
            let ok = name.chars().all(|c| c.is_ascii_alphanumeric() || "+-._@:=<>".contains(c)) && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
            if !ok {
                cx.error_within("packages", offset, format!("packages: {name:?} is not a package name"));
            } else if seen.insert(name.to_string()) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// `bootloader=` as written: `Ok(None)` when unset, `Err(())` when wrong (reported).
pub fn bootloader_value(cx: &mut Ctx<'_>) -> Result<Option<Bootloader>, ()> {
    match cx.get("bootloader").map(str::trim) {
        None => Ok(None),
        Some("systemd-boot") => Ok(Some(Bootloader::SystemdBoot)),
        Some("grub") => Ok(Some(Bootloader::Grub)),
        Some("none") => Ok(Some(Bootloader::None)),
        Some(other) => {
            let msg = bad_value("bootloader", other, "not a bootloader", &["systemd-boot", "grub", "none"]);
            cx.error("bootloader", msg);
            Err(())
        }
    }
}

/// The bootloader for a layout: `bootloader=`, default systemd-boot on a gpt table with
/// an ESP, else grub; checked against the layout.
pub fn bootloader(cx: &mut Ctx<'_>, layout: &Layout, value: Option<Bootloader>) -> Option<Bootloader> {
    let (has_esp, has_bios) = (layout.has(PartKind::Esp), layout.has(PartKind::BiosBoot));
    let gpt = layout.table == TableType::Gpt;
    let chosen = match value {
        Some(b) => b,
        None if gpt && has_esp => Bootloader::SystemdBoot,
        None => Bootloader::Grub,
    };
    if chosen == Bootloader::SystemdBoot && !(gpt && has_esp) {
        cx.error("bootloader", "bootloader=systemd-boot needs a gpt table with an esp partition (UEFI only); add one to partitions= or use grub");
        return None;
    }
    if chosen == Bootloader::Grub && gpt && !has_esp && !has_bios {
        let var = if cx.get("bootloader").is_some() { "bootloader" } else { "partitions" };
        cx.warn(var, "grub on a gpt table needs a bios-boot partition (BIOS) or an esp (UEFI); this layout has neither, so the disk will not boot");
    }
    Some(chosen)
}

/// `kernel_cmdline=`, default `quiet`. Unless it names a `console=` itself, the install
/// appends the installer's own console options.
pub fn kernel_cmdline(cx: &mut Ctx<'_>) -> KernelCmdline {
    let args = cx.get("kernel_cmdline").map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or_else(|| "quiet".into());
    let inherit_console = !args.split(' ').any(|a| a.starts_with("console="));
    KernelCmdline { args, inherit_console }
}

/// `proxy=`: an http(s) URL, or unset. It is never taken from the workstation's
/// environment (see IMGBUILD(5), PROXY).
pub fn proxy(cx: &mut Ctx<'_>) -> Option<Option<String>> {
    let Some(p) = cx.get("proxy").map(|p| p.trim().to_string()) else { return Some(None) };
    let ok = (p.starts_with("http://") || p.starts_with("https://")) && !p.contains(char::is_whitespace) && p.split("://").nth(1).is_some_and(|h| !h.is_empty());
    if !ok {
        cx.error("proxy", format!("proxy={p:?}: not an http:// or https:// URL"));
        return None;
    }
    Some(Some(p))
}

pub fn lifecycle(cx: &mut Ctx<'_>) -> (Option<OnSuccess>, Option<OnFailure>, Option<u16>) {
    let on_success = match cx.get("on_success").map(str::trim) {
        None | Some("reboot") => Some(OnSuccess::Reboot),
        Some("kexec") => Some(OnSuccess::Kexec),
        Some("poweroff") => Some(OnSuccess::Poweroff),
        Some(v) => {
            let msg = bad_value("on_success", v, "not an action", &["reboot", "kexec", "poweroff"]);
            cx.error("on_success", msg);
            None
        }
    };
    let on_failure = match cx.get("on_failure").map(str::trim) {
        None | Some("rescue") => Some(OnFailure::Rescue),
        Some("reboot") => Some(OnFailure::Reboot),
        Some("poweroff") => Some(OnFailure::Poweroff),
        Some(v) => {
            let msg = bad_value("on_failure", v, "not an action", &["rescue", "reboot", "poweroff"]);
            cx.error("on_failure", msg);
            None
        }
    };
    let port = match cx.get("status_port").map(str::trim) {
        None => Some(7777),
        Some(v) => match v.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                cx.error("status_port", format!("status_port={v:?}: not a TCP port (1 to 65535)"));
                None
            }
        },
    };
    (on_success, on_failure, port)
}

pub fn hostconf(cx: &mut Ctx<'_>) -> Option<Vec<HostConf>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (offset, item) in cx.lines("hostconf") {
        for word in item.split_whitespace() {
            match word {
                "keyring" if !out.contains(&HostConf::Keyring) => out.push(HostConf::Keyring),
                "keyring" => {}
                other => {
                    cx.error_within("hostconf", offset, bad_value("hostconf", other, "not a hostconf item", &["keyring"]));
                    ok = false;
                }
            }
        }
    }
    ok.then_some(out)
}

pub fn secrets_command(cx: &mut Ctx<'_>) {
    if let Some(c) = cx.get("secrets_command") {
        if !c.contains("%s") {
            let msg = format!("secrets_command={c:?}: has no %s where the secret's name goes (e.g. \"pass show mx/%s\")");
            cx.error("secrets_command", msg);
        }
    }
}

/// Records `provision()`; `setup()`/`cleanup()` belong to `format custom`, which is refused,
/// so alone they are ignored with a warning.
pub fn functions(cx: &mut Ctx<'_>, defined: &BTreeSet<String>) -> Functions {
    for f in ["setup", "cleanup"] {
        if defined.contains(f) {
            let line = cx.pre.functions.get(f).copied();
            cx.diags.warn(crate::imgbuild::diag::Location::Imgbuild { line }, format!("{f}() is ignored: it only serves format custom, which anemos replaces with disk=, partitions= and preserve="));
        }
    }
    Functions { provision: defined.contains("provision") }
}
