//! apk's database in the target (apk-tools `apk_db_write_fdb` and friends):
//! `/lib/apk/db/installed` holds each package's index record followed by its files grouped
//! by directory — `F:dir` (and `M:uid:gid:mode` when not root's 0755), then per file `R:name`,
//! `a:uid:gid:mode` when not root's 0644, and `Z:` (`Q1` + base64 SHA-1 of the contents, or
//! of the target for a symlink); `/lib/apk/db/scripts.tar` keeps the scripts as
//! `NAME-VERSION.CHECKSUM.SCRIPT`; `/lib/apk/db/triggers` lists `CHECKSUM dir…` per package
//! with a trigger; `/etc/apk/world` the requested names, one per line.

use std::fmt::Write as _;

use anyhow::Result;
use base64::Engine;

use super::apk::Control;
use super::index::Package;
use crate::packages::extract::{Kind, Written};

/// One installed package.
pub struct Installed<'a> {
    pub package: &'a Package,
    pub control: Control,
    pub written: Vec<Written>,
}

pub fn q1(sha1: &[u8; 20]) -> String {
    format!("Q1{}", base64::engine::general_purpose::STANDARD.encode(sha1))
}

/// The record of one package in `installed`.
pub fn record(i: &Installed<'_>) -> String {
    let mut out = String::new();
    let p = i.package;
    let mut line = |k: char, v: &str| {
        if !v.is_empty() {
            let _ = writeln!(out, "{k}:{v}");
        }
    };
    line('C', &q1(&i.control.digests.sha1));
    for (k, v) in p.raw.iter().filter(|(k, _)| *k != 'C') {
        line(*k, v);
    }
    let mut dir: Option<String> = None;
    for w in i.written.iter().filter(|w| w.path != "/.") {
        let rel = w.path.trim_start_matches('/');
        let (parent, name) = if w.kind == Kind::Dir { (rel, "") } else { rel.rsplit_once('/').unwrap_or(("", rel)) };
        if dir.as_deref() != Some(parent) {
            let _ = writeln!(out, "F:{parent}");
            dir = Some(parent.to_string());
        }
        if w.kind == Kind::Dir {
            if (w.uid, w.gid, w.mode) != (0, 0, 0o755) {
                let _ = writeln!(out, "M:{}:{}:{:o}", w.uid, w.gid, w.mode);
            }
            continue;
        }
        let _ = writeln!(out, "R:{name}");
        if (w.uid, w.gid, w.mode) != (0, 0, 0o644) {
            let _ = writeln!(out, "a:{}:{}:{:o}", w.uid, w.gid, w.mode);
        }
        if let Some(s) = &w.sha1 {
            let _ = writeln!(out, "Z:{}", q1(s));
        }
    }
    out.push('\n');
    out
}

/// `scripts.tar`: every script of every package.
pub fn scripts_tar(pkgs: &[Installed<'_>]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for i in pkgs {
        for (name, (mode, data)) in i.control.files.iter().filter(|(n, _)| n.starts_with('.') && *n != ".PKGINFO") {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(*mode & 0o7777);
            h.set_mtime(0);
            let path = format!("{}-{}.{}{}", i.package.name, i.package.version, q1(&i.control.digests.sha1), name);
            b.append_data(&mut h, path, &data[..])?;
        }
    }
    Ok(b.into_inner()?)
}

/// `triggers`: `Q1CHECKSUM dir…` for each package with a trigger script.
pub fn triggers(pkgs: &[Installed<'_>]) -> String {
    let mut out = String::new();
    for i in pkgs {
        if let (Some(_), Some(t)) = (i.control.script("trigger"), i.control.info("triggers")) {
            let _ = writeln!(out, "{} {}", q1(&i.control.digests.sha1), t.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}
