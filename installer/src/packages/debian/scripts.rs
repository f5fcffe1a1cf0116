//! Maintainer scripts dpkg runs before unpacking (deb-preinst(5) `preinst install`), run by
//! us after our in-process unpack and before `dpkg --configure -a`, in dependency order and
//! with the environment dpkg gives them (dpkg(1) "ENVIRONMENT").

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};

use super::chroot;
use super::dpkgdb::{Unpacked, ADMINDIR};
use super::relation::parse_field;
use crate::packages::extract::Root;

/// `pkgs` ordered so that each comes after what it (pre-)depends on, where that is in the
/// set (cycles are broken where they close, as dpkg breaks them).
pub fn dependency_order(pkgs: &[Unpacked]) -> Vec<usize> {
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, u) in pkgs.iter().enumerate() {
        by_name.insert(u.name().to_string(), i);
        if let Some(prov) = u.paragraph.get("Provides") {
            for g in parse_field(prov).unwrap_or_default() {
                for r in g {
                    by_name.entry(r.name).or_insert(i);
                }
            }
        }
    }
    let deps: Vec<Vec<usize>> = pkgs
        .iter()
        .map(|u| {
            let mut d = Vec::new();
            for field in ["Pre-Depends", "Depends"] {
                for g in u.paragraph.get(field).map(parse_field).and_then(Result::ok).unwrap_or_default() {
                    if let Some(&j) = g.iter().find_map(|r| by_name.get(&r.name)) {
                        d.push(j);
                    }
                }
            }
            d
        })
        .collect();
    let mut order = Vec::new();
    let mut state = vec![0u8; pkgs.len()]; // 0 new, 1 visiting, 2 done
    for i in 0..pkgs.len() {
        visit(i, &deps, &mut state, &mut order);
    }
    order
}

fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], order: &mut Vec<usize>) {
    if state[i] != 0 {
        return;
    }
    state[i] = 1;
    for &j in &deps[i] {
        visit(j, deps, state, order);
    }
    state[i] = 2;
    order.push(i);
}

/// Runs `preinst install` of every package that has one, in dependency order.
pub fn run_preinsts(root: &Root, pkgs: &[Unpacked], arch: &str) -> Result<usize> {
    let dpkg_version = pkgs.iter().find(|u| u.name() == "dpkg").and_then(|u| u.paragraph.get("Version")).unwrap_or("").to_string();
    let mut n = 0;
    let mut seen = HashSet::new();
    for i in dependency_order(pkgs) {
        let u = &pkgs[i];
        if u.control.get("preinst").is_none() || !seen.insert(u.db_name()) {
            continue;
        }
        let script = format!("/{ADMINDIR}/info/{}.preinst", u.db_name());
        let mut cmd = chroot::command(root.path(), &script, &["install"])?;
        cmd.env("DPKG_MAINTSCRIPT_PACKAGE", u.name())
            .env("DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT", "1")
            .env("DPKG_MAINTSCRIPT_ARCH", u.paragraph.get("Architecture").unwrap_or(arch))
            .env("DPKG_MAINTSCRIPT_NAME", "preinst")
            .env("DPKG_MAINTSCRIPT_DEBUG", "0")
            .env("DPKG_RUNNING_VERSION", &dpkg_version)
            .env("DPKG_ADMINDIR", format!("/{ADMINDIR}"))
            .env("DPKG_ROOT", "");
        let (status, _, stderr) = crate::exec::output(&mut cmd).with_context(|| format!("running {script}"))?;
        if !status.success() {
            anyhow::bail!("{} preinst install failed ({status}): {}", u.name(), String::from_utf8_lossy(&stderr).trim());
        }
        n += 1;
    }
    Ok(n)
}
