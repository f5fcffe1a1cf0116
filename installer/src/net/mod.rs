//! Network interfaces.

use std::path::Path;

mod capture;
mod configure;
pub mod dhcp;
mod netlink;

pub use capture::{capture, name_servers};
pub use configure::{bring_up, parse_mac, Configured, Interface, Match, Method, NetConfig};
pub use netlink::{format_mac, IfAddr, Netlink, Route};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::sysfs;

/// A network interface as sysfs describes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub mac: Option<String>,
    pub operstate: String,
    pub mtu: u32,
    pub driver: Option<String>,
}

/// Lists the interfaces under `sysfs/class/net`, sorted by name.
pub fn links(sysfs: &Path) -> Result<Vec<Link>> {
    let dir = sysfs.join("class/net");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let p = entry.path();
        out.push(Link {
            mac: sysfs::read_str(&p.join("address")),
            operstate: sysfs::read_str(&p.join("operstate")).unwrap_or_else(|| "unknown".into()),
            mtu: sysfs::read_u64(&p.join("mtu")).unwrap_or(0) as u32,
            driver: std::fs::read_link(p.join("device/driver")).ok().and_then(|l| l.file_name().map(|f| f.to_string_lossy().into_owned())),
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
