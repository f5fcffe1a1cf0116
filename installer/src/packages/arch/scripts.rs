//! Running a package's `.INSTALL` functions and the hooks in the chroot, as libalpm does:
//! a scriptlet function runs as `/bin/sh -c ". SCRIPT; FUNCTION VERSION"` with the script
//! from the local database (`_alpm_runscriptlet`), and only if the script defines the
//! function (`grep_function`); a hook's `Exec` is executed directly with its targets on
//! stdin when it asks for them (`_alpm_hook_run_hook`).

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};

use super::hooks::Hook;
use crate::packages::chroot::{self, tail};
use crate::packages::extract::Root;

/// Whether `script` defines `name` (`name()`, `name ()` or `function name`).
pub fn has_function(script: &str, name: &str) -> bool {
    script.lines().map(str::trim_start).any(|l| {
        let l = l.strip_prefix("function ").map(str::trim_start).unwrap_or(l);
        l.strip_prefix(name).is_some_and(|rest| {
            let rest = rest.trim_start();
            rest.starts_with('(') || (l.len() != name.len() && rest.starts_with('{')) || (rest.is_empty() && l.len() > name.len())
        })
    })
}

/// Runs `function version` from the installed `script` (path inside the root) if defined.
pub fn run_scriptlet(root: &Root, script_path: &str, script: &str, function: &str, version: &str, package: &str) -> Result<bool> {
    if !has_function(script, function) {
        return Ok(false);
    }
    let line = format!(". {script_path}; {function} {version}");
    let mut cmd = chroot::command(root.path(), "/bin/sh", &["-c", &line])?;
    let (status, stdout, stderr) = crate::exec::output(&mut cmd).with_context(|| format!("running {function} of {package}"))?;
    for l in String::from_utf8_lossy(&stdout).lines().chain(String::from_utf8_lossy(&stderr).lines()) {
        log::info!("[{package} {function}] {l}");
    }
    if !status.success() {
        bail!("{package}: {function} failed ({status}):\n{}", tail(&stderr));
    }
    Ok(true)
}

/// Runs one hook with its matched targets.
pub fn run_hook(root: &Root, hook: &Hook, targets: &BTreeSet<String>) -> Result<()> {
    let args: Vec<&str> = hook.exec[1..].iter().map(String::as_str).collect();
    let mut cmd = chroot::command(root.path(), &hook.exec[0], &args)?;
    let input: String = if hook.needs_targets { targets.iter().map(|t| format!("{t}\n")).collect() } else { String::new() };
    let (status, stdout, stderr) = crate::exec::output_with_input(&mut cmd, input.as_bytes()).with_context(|| format!("running the hook {}", hook.name))?;
    for l in String::from_utf8_lossy(&stdout).lines().chain(String::from_utf8_lossy(&stderr).lines()) {
        log::info!("[hook {}] {l}", hook.name);
    }
    if !status.success() {
        bail!("the hook {} ({}) failed ({status}):\n{}", hook.name, hook.exec.join(" "), tail(&stderr));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_defined_functions_only() {
        let s = "post_install() {\n  echo hi\n}\n\nfunction pre_upgrade {\n :\n}\n# post_remove() is not here\npost_removex() { :; }\n";
        assert!(has_function(s, "post_install"));
        assert!(has_function(s, "pre_upgrade"));
        assert!(!has_function(s, "post_remove"));
        assert!(!has_function(s, "pre_install"));
        assert!(has_function("pre_install ()\n{\n:\n}\n", "pre_install"));
    }
}
