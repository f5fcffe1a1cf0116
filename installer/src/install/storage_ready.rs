//! Before the wipe: what the layout's arrays and encrypted partitions need from this
//! installer, found now rather than after the partition tables are gone — the kernel's md
//! personalities for each RAID level, device-mapper's crypt target, and each encryption
//! secret in the payload.

use anyhow::{bail, Context, Result};

use super::Install;
use crate::plan::Layout;

pub fn check(inst: &Install) -> Result<()> {
    let layout = &inst.plan().layout;
    if !layout.raid.is_empty() {
        crate::kmod::load_running(crate::md::MODULES).context("loading the kernel's md modules; nothing was written")?;
        let mdstat = std::fs::read_to_string("/proc/mdstat").unwrap_or_default();
        let missing = missing_personalities(layout, &mdstat);
        if !missing.is_empty() {
            bail!("raid= needs the kernel's md {} driver, which this installer does not have (is md_mod and {} in its initramfs?); nothing was written", missing.join(", "), missing.join(", "));
        }
    }
    if !layout.encrypted.is_empty() {
        crate::kmod::load_running(crate::crypt::MODULES).context("loading the kernel's device-mapper crypt modules; nothing was written")?;
        let builtin = std::fs::read_to_string(format!("/lib/modules/{}/modules.builtin", rustix::system::uname().release().to_string_lossy())).unwrap_or_default();
        if !std::path::Path::new("/sys/module/dm_crypt").exists() && !builtin.contains("/dm-crypt.ko") {
            bail!("encrypt= needs the kernel's dm_crypt, which this installer does not have (is it in its initramfs?); nothing was written");
        }
        let secrets = inst.payload.secrets()?;
        for e in &layout.encrypted {
            if secrets.get(&e.secret).is_none_or(|v| crate::files::template::secret_value(v).is_empty()) {
                bail!("partition {} is encrypted with secret {:?}, which the payload does not hold or holds empty: pack it again; nothing was written", e.partition, e.secret);
            }
        }
    }
    Ok(())
}

/// The RAID levels of `layout` whose md personality `/proc/mdstat` does not list.
fn missing_personalities(layout: &Layout, mdstat: &str) -> Vec<&'static str> {
    let known = mdstat.lines().find(|l| l.starts_with("Personalities")).unwrap_or("");
    let mut out: Vec<&'static str> = layout.raid.iter().map(|r| r.level.name()).filter(|n| !known.contains(&format!("[{n}]"))).collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use crate::plan::{Raid, RaidLevel};

    #[test]
    fn personalities_are_read_from_mdstat() {
        let mut layout = crate::plan::tests::sample().layout;
        layout.raid = vec![Raid { partition: "root".into(), level: RaidLevel::Raid1 }, Raid { partition: "srv".into(), level: RaidLevel::Raid10 }];
        let mdstat = "Personalities : [raid1] [raid0] \nunused devices: <none>\n";
        assert_eq!(super::missing_personalities(&layout, mdstat), ["raid10"]);
        assert_eq!(super::missing_personalities(&layout, ""), ["raid1", "raid10"]);
    }
}
