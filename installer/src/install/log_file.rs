//! The log phase: the install log and the plan saved into the new system.

use std::path::Path;

use anyhow::{Context, Result};

use super::Install;
use crate::files::root::RootDir;

/// Copies the install log and the plan into the new system, readable by root only (the
/// log has no secret values — they are redacted as each line is logged — but it shows
/// the whole install, and the plan names every secret and mirror).
pub fn run(inst: &mut Install) -> Result<()> {
    let root = RootDir::open(&inst.root)?;
    let logs = root.mkdir_p("var/log")?;
    root.mkdir_p("var/log/anemos")?;
    rustix::fs::chmodat(&logs, "anemos", rustix::fs::Mode::from_raw_mode(0o700), rustix::fs::AtFlags::empty()).context("making /var/log/anemos root-only")?;
    let log = crate::redact::redact(&(inst.log)()).into_owned();
    root.write_file("var/log/anemos/install.log", log.as_bytes(), 0o600)?;
    root.write_file("var/log/anemos/plan.json", &serde_json::to_vec_pretty(inst.plan())?, 0o600)?;
    log::info!("install log saved to {} (root only)", Path::new("/var/log/anemos/install.log").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_saved_log_is_root_only_and_has_no_secret() {
        let base = std::env::temp_dir().join(format!("anemos-save-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("payload")).unwrap();
        std::fs::create_dir_all(base.join("root")).unwrap();
        let plan = crate::plan::tests::sample();
        let payload = crate::payload::Payload { dir: base.join("payload"), plan };
        crate::redact::register("db_password", b"correct-horse-battery\n");
        let log = Box::new(|| "[ 1.0] INFO provision: + echo correct-horse-battery\n".to_string());
        let mut inst = super::super::Install::new(payload, &base.join("root"), super::super::Where::Directory, log);
        super::run(&mut inst).unwrap();
        let mode = |p: &str| std::fs::metadata(base.join("root").join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode("var/log/anemos"), mode("var/log/anemos/install.log"), mode("var/log/anemos/plan.json")), (0o700, 0o600, 0o600));
        let text = std::fs::read_to_string(base.join("root/var/log/anemos/install.log")).unwrap();
        assert!(!text.contains("correct-horse-battery") && text.contains("[secret db_password]"), "{text}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
