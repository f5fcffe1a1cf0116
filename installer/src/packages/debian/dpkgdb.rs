//! The dpkg database (`/var/lib/dpkg`, dpkg(1) "FILES", deb-control(5), deb-triggers(5)),
//! written for packages we unpacked ourselves, in the state dpkg leaves after `--unpack`:
//! `Status: install ok unpacked`, conffiles recorded with the hash `newconffile` (their new
//! versions sit beside them as `*.dpkg-new`, as dpkg leaves them), the control members copied
//! to `info/PKG.*` (`PKG:ARCH.*` for `Multi-Arch: same`), `info/PKG.list` with every path of
//! the data archive, and trigger interests registered. `dpkg --configure -a` then takes over.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::control::{parse_all, Paragraph};
use crate::packages::extract::deb::Control;
use crate::packages::extract::Root;

pub const ADMINDIR: &str = "var/lib/dpkg";

/// A package unpacked into the root, waiting to be registered.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub control: Control,
    /// The `control` paragraph.
    pub paragraph: Paragraph,
    /// Every path of the data archive (`/.`, `/usr`, `/usr/bin/x`), in archive order.
    pub paths: Vec<String>,
}

impl Unpacked {
    pub fn new(control: Control, paths: Vec<String>) -> Result<Unpacked> {
        let text = control.control_text()?;
        let paragraph = parse_all(&text, "control")?.into_iter().next().context("an empty control file")?;
        paragraph.require("Package")?;
        paragraph.require("Version")?;
        paragraph.require("Architecture")?;
        Ok(Unpacked { control, paragraph, paths })
    }

    pub fn name(&self) -> &str {
        self.paragraph.get("Package").unwrap_or("")
    }

    /// The name dpkg uses for info files and triggers: `pkg:arch` for `Multi-Arch: same`.
    pub fn db_name(&self) -> String {
        match self.paragraph.get("Multi-Arch") {
            Some("same") => format!("{}:{}", self.name(), self.paragraph.get("Architecture").unwrap_or("")),
            _ => self.name().to_string(),
        }
    }

    /// The conffiles the package declares (deb-conffiles(5); flags like `remove-on-upgrade`
    /// mark conffiles not shipped any more).
    pub fn conffiles(&self) -> Vec<String> {
        conffiles_of(&self.control)
    }
}

/// The conffile paths of a package's control members.
pub fn conffiles_of(control: &Control) -> Vec<String> {
    let text = String::from_utf8_lossy(control.get("conffiles").unwrap_or(b""));
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let mut f = l.split_whitespace();
            match (f.next(), f.next()) {
                (Some(p), None) if p.starts_with('/') => Some(p.to_string()),
                _ => None,
            }
        })
        .collect()
}

/// Creates an empty database as debootstrap does: status, available, arch, info/, updates/,
/// triggers/ and alternatives/.
pub fn init(root: &Root, arch: &str) -> Result<()> {
    for d in ["info", "updates", "triggers", "alternatives"] {
        root.dir_all(&format!("{ADMINDIR}/{d}"))?;
    }
    for f in ["status", "available"] {
        if !root.exists(&format!("{ADMINDIR}/{f}")) {
            root.write_file(&format!("{ADMINDIR}/{f}"), b"", 0o644)?;
        }
    }
    root.write_file(&format!("{ADMINDIR}/arch"), format!("{arch}\n").as_bytes(), 0o644)
}

/// Registers `pkgs` (info files, status entries, trigger interests), merging with any
/// status entries already present.
pub fn register(root: &Root, pkgs: &[Unpacked]) -> Result<()> {
    let mut status: BTreeMap<String, String> = BTreeMap::new();
    let old = String::from_utf8(root.read_file(&format!("{ADMINDIR}/status"))?).context("the dpkg status file is not UTF-8")?;
    for p in parse_all(&old, "status")? {
        let mut text = String::new();
        p.write_to(&mut text);
        status.insert(format!("{}:{}", p.get("Package").unwrap_or(""), p.get("Architecture").unwrap_or("")), text);
    }
    let mut triggers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pkg in pkgs {
        write_info(root, pkg)?;
        status.insert(format!("{}:{}", pkg.name(), pkg.paragraph.get("Architecture").unwrap_or("")), status_entry(pkg));
        collect_interests(pkg, &mut triggers);
    }
    let mut out = String::new();
    for entry in status.values() {
        out.push_str(entry);
        out.push('\n');
    }
    root.write_file(&format!("{ADMINDIR}/status"), out.as_bytes(), 0o644)?;
    write_triggers(root, &triggers)
}

fn write_info(root: &Root, pkg: &Unpacked) -> Result<()> {
    let base = format!("{ADMINDIR}/info/{}", pkg.db_name());
    let mut list = String::new();
    for p in &pkg.paths {
        list.push_str(p);
        list.push('\n');
    }
    root.write_file(&format!("{base}.list"), list.as_bytes(), 0o644)?;
    for (name, (mode, data)) in &pkg.control.files {
        if name == "control" {
            continue;
        }
        let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        root.write_file(&format!("{base}.{name}"), data, mode).with_context(|| format!("registering {}", pkg.name()))?;
    }
    Ok(())
}

/// The status paragraph: the control fields with `Status` after `Package`, and the
/// conffiles as dpkg records them before their first configuration.
fn status_entry(pkg: &Unpacked) -> String {
    let mut p = Paragraph::default();
    for (k, v) in &pkg.paragraph.fields {
        p.fields.push((k.clone(), v.clone()));
        if k.eq_ignore_ascii_case("Package") {
            p.fields.push(("Status".into(), "install ok unpacked".into()));
        }
    }
    let conffiles = pkg.conffiles();
    if !conffiles.is_empty() {
        let v: String = conffiles.iter().map(|c| format!("\n {c} newconffile")).collect();
        let at = p.fields.iter().position(|(k, _)| k.eq_ignore_ascii_case("Description")).unwrap_or(p.fields.len());
        p.fields.insert(at, ("Conffiles".into(), v));
    }
    let mut out = String::new();
    p.write_to(&mut out);
    out
}

/// `interest[-await|-noawait] NAME` lines of the `triggers` control file.
fn collect_interests(pkg: &Unpacked, out: &mut BTreeMap<String, Vec<String>>) {
    let text = String::from_utf8_lossy(pkg.control.get("triggers").unwrap_or(b""));
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(kw), Some(name)) = (f.next(), f.next()) else { continue };
        let who = match kw {
            "interest" | "interest-await" => pkg.db_name(),
            "interest-noawait" => format!("{}/noawait", pkg.db_name()),
            _ => continue,
        };
        out.entry(name.to_string()).or_default().push(who);
    }
}

/// `triggers/NAME` lists the packages interested in an explicit trigger; `triggers/File`
/// has `PATH PKG` lines for file triggers (dpkg's triggers/ database, lib/dpkg/trig*.c).
fn write_triggers(root: &Root, interests: &BTreeMap<String, Vec<String>>) -> Result<()> {
    let mut file = String::new();
    for (name, pkgs) in interests {
        if name.starts_with('/') {
            for p in pkgs {
                file.push_str(&format!("{name} {p}\n"));
            }
        } else {
            let body: String = pkgs.iter().map(|p| format!("{p}\n")).collect();
            root.write_file(&format!("{ADMINDIR}/triggers/{name}"), body.as_bytes(), 0o644)?;
        }
    }
    if !file.is_empty() {
        root.write_file(&format!("{ADMINDIR}/triggers/File"), file.as_bytes(), 0o644)?;
    }
    if !root.exists(&format!("{ADMINDIR}/triggers/Unincorp")) {
        root.write_file(&format!("{ADMINDIR}/triggers/Unincorp"), b"", 0o644)?;
    }
    Ok(())
}
