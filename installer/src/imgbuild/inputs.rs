//! Checking what lies beside the IMGBUILD: the input trees (readable, no symlink loops,
//! patches that parse), the templates (syntax, and every name they use known), the secrets
//! they use (present, decryptable, not tracked by git when plain), and project files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::diag::{did_you_mean, Location};
use super::validate::Ctx;
use super::CheckOptions;
use crate::files::{check_links, patch, scan, template, EntryKind, InputDir, Tree};
use crate::plan::{InputTree, SecretRef, SecretSource, Target, TemplateRef};
use crate::secrets;

pub struct Found {
    pub trees: Vec<InputTree>,
    pub secrets: Vec<SecretRef>,
    pub template_vars: BTreeSet<String>,
}

fn at(path: &str, line: Option<usize>, column: Option<usize>) -> Location {
    Location::File { path: path.to_string(), line, column }
}

/// An error whose message starts with `PATH: ` (as the tree scanner words them) is placed
/// at PATH; otherwise at `fallback`.
fn located_error(cx: &mut Ctx<'_>, fallback: &str, e: &anyhow::Error) {
    let text = format!("{e:#}");
    match text.split_once(": ") {
        Some((path, msg)) if !path.contains(' ') => cx.diags.error(at(path, None, None), msg.to_string()),
        _ => cx.diags.error(at(fallback, None, None), text),
    }
}

/// `imgbuild_secrets`: the secrets the IMGBUILD itself uses (`encrypt=`), where it does.
pub fn check_inputs(project: &Path, opts: &CheckOptions, cx: &mut Ctx<'_>, imgbuild_secrets: Vec<(String, Location)>) -> Found {
    let mut scanned = Vec::new();
    for (i, src) in opts.inputs.iter().enumerate() {
        if src.starts_with('/') || src.split('/').any(|c| c == "..") || src.trim_matches('/').is_empty() {
            cx.diags.error(at(src, None, None), "an input directory must be a path inside the project (no leading /, no ..)");
            continue;
        }
        let dir = InputDir { path: project.join(src), label: src.trim_end_matches('/').to_string() };
        // The default files/ may be absent; a directory the user named must exist.
        let default_dir = i == 0 && src == "files" && opts.inputs.len() == 1;
        if !(dir.path.exists() || default_dir) {
            cx.diags.error(at(&dir.label, None, None), format!("input directory {} does not exist", dir.path.display()));
            continue;
        }
        match scan(&dir) {
            Ok(t) if t.entries.is_empty() && !dir.path.exists() => {}
            Ok(t) => scanned.push(t),
            Err(e) => located_error(cx, &dir.label, &e),
        }
    }
    if let Err(e) = check_links(&scanned) {
        located_error(cx, &opts.inputs.join(", "), &e);
    }
    // secret name → first place a template uses it
    let mut used_secrets: BTreeMap<String, Location> = BTreeMap::new();
    let imgbuild: BTreeSet<String> = imgbuild_secrets.iter().map(|(n, _)| n.clone()).collect();
    for (name, loc) in imgbuild_secrets {
        used_secrets.entry(name).or_insert(loc);
    }
    let mut template_vars = BTreeSet::new();
    let mut trees = Vec::new();
    for (i, t) in scanned.iter().enumerate() {
        for s in &t.skipped {
            cx.diags.warn(at(&format!("{}/{s}", t.dir.label), None, None), "skipped: only regular files, directories and symlinks are copied");
        }
        let patches = check_patches(t, cx);
        let templates = check_templates(t, cx, &mut used_secrets, &mut template_vars);
        trees.push(InputTree {
            source: t.dir.label.clone(),
            payload_dir: format!("{}/{i}", crate::payload::INPUTS_DIR),
            files: t.count(|k| *k == EntryKind::File),
            symlinks: t.count(|k| matches!(k, EntryKind::Symlink { .. })),
            patches,
            templates,
        });
    }
    let secrets = check_secrets(project, opts, cx, &used_secrets, &imgbuild);
    Found { trees, secrets, template_vars }
}

fn check_patches(t: &Tree, cx: &mut Ctx<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for e in t.entries.iter().filter(|e| e.kind == EntryKind::Patch) {
        let shown = format!("{}/{}", t.dir.label, e.rel);
        match std::fs::read(t.source(e)) {
            Ok(text) => {
                if let Err(err) = patch::check(&text) {
                    cx.diags.error(at(&shown, None, None), format!("patch {err}"));
                }
            }
            Err(err) => cx.diags.error(at(&shown, None, None), format!("cannot read: {err}")),
        }
        out.push(e.rel.clone());
    }
    out
}

fn check_templates(t: &Tree, cx: &mut Ctx<'_>, used_secrets: &mut BTreeMap<String, Location>, all_vars: &mut BTreeSet<String>) -> Vec<TemplateRef> {
    let mut out = Vec::new();
    let known: Vec<&str> = cx.vars.keys().map(String::as_str).collect();
    for e in t.entries.iter().filter(|e| e.kind == EntryKind::Template) {
        let shown = format!("{}/{}", t.dir.label, e.rel);
        let src = match std::fs::read(t.source(e)) {
            Ok(s) => s,
            Err(err) => {
                cx.diags.error(at(&shown, None, None), format!("cannot read: {err}"));
                continue;
            }
        };
        let segments = match template::parse(&src) {
            Ok(s) => s,
            Err(err) => {
                cx.diags.error(at(&shown, Some(err.line), Some(err.column)), err.message);
                continue;
            }
        };
        let (mut vars, mut secrets) = (BTreeSet::new(), BTreeSet::new());
        for s in segments {
            match s {
                template::Segment::Var { name, line, column } => {
                    if !cx.vars.contains_key(name) {
                        let hint = did_you_mean(name, &known).map(|m| format!("; did you mean {m:?}?")).unwrap_or_default();
                        cx.diags.error(at(&shown, Some(line), Some(column)), format!("{{{{ {name} }}}}: the IMGBUILD sets no variable {name:?}{hint}"));
                    }
                    vars.insert(name.to_string());
                }
                template::Segment::Secret { name, line, column } => {
                    used_secrets.entry(name.to_string()).or_insert_with(|| at(&shown, Some(line), Some(column)));
                    secrets.insert(name.to_string());
                }
                template::Segment::Text(_) => {}
            }
        }
        all_vars.extend(vars.iter().cloned());
        out.push(TemplateRef { path: e.rel.clone(), variables: vars.into_iter().collect(), secrets: secrets.into_iter().collect() });
    }
    out
}

fn check_secrets(project: &Path, opts: &CheckOptions, cx: &mut Ctx<'_>, used: &BTreeMap<String, Location>, imgbuild: &BTreeSet<String>) -> Vec<SecretRef> {
    let command = cx.get("secrets_command").map(str::to_string);
    let mut refs = Vec::new();
    for (name, loc) in used {
        match secrets::locate(project, name, command.as_deref()) {
            Ok(source) => refs.push(SecretRef { name: name.clone(), source }),
            Err(msg) => {
                let what = if imgbuild.contains(name) { format!("encrypt: secret {name:?}") } else { format!("{{{{ secret:{name} }}}}") };
                cx.diags.error(loc.clone(), format!("{what}: {msg}"))
            }
        }
    }
    let plain: Vec<&str> = refs.iter().filter(|r| r.source == SecretSource::Plain).map(|r| r.name.as_str()).collect();
    for name in secrets::tracked_plaintext(project, &plain) {
        cx.diags.warn(at(&format!("secrets/{name}"), None, None), "this plaintext secret is tracked by git; encrypt it (secrets/NAME.age) or add secrets/ to .gitignore and `git rm --cached` it");
    }
    let age: Vec<SecretRef> = refs.iter().filter(|r| r.source == SecretSource::Age).cloned().collect();
    if !age.is_empty() {
        check_age(project, opts, cx, &age);
    }
    refs
}

/// Decrypts the age secrets once (values dropped at once) so an undecryptable one is found
/// by `check`, not only by `pack`. Without an identity file this is a warning.
fn check_age(project: &Path, opts: &CheckOptions, cx: &mut Ctx<'_>, age: &[SecretRef]) {
    let identity = secrets::identity_path(opts.identity.as_deref());
    match identity {
        Some(p) if p.is_file() => {
            for r in age {
                if let Err(e) = secrets::reveal(project, std::slice::from_ref(r), None, Some(&p)) {
                    cx.diags.error(at(&format!("secrets/{}.age", r.name), None, None), format!("{e:#}"));
                }
            }
        }
        other => {
            let shown = other.map(|p| p.display().to_string()).unwrap_or_else(|| "(none)".into());
            cx.diags.warn(at("secrets", None, None), format!("age secrets not checked: no identity file at {shown}; pack needs --identity or ANEMOS_AGE_IDENTITY"));
        }
    }
}

/// makeimg's project files for the target: `pacman.conf` (arch), `repositories` and
/// `keys/*` (alpine). Only regular files are taken.
pub fn project_files(project: &Path, target: &Target, diags: &mut super::diag::Diagnostics) -> Vec<String> {
    let mut candidates = Vec::new();
    for name in crate::packages::profile::of(target).project_files {
        match name.strip_suffix('/') {
            // A directory: its files, sorted.
            Some(dir) => {
                let mut files: Vec<String> = std::fs::read_dir(project.join(dir)).into_iter().flatten().filter_map(|e| e.ok()?.file_name().into_string().ok()).map(|n| format!("{dir}/{n}")).collect();
                files.sort();
                candidates.extend(files);
            }
            None => candidates.push(name.to_string()),
        }
    }
    candidates.retain(|rel| match std::fs::symlink_metadata(project.join(rel)) {
        Ok(m) if m.is_file() => true,
        Ok(_) => {
            diags.warn(at(rel, None, None), "skipped: not a regular file");
            false
        }
        Err(_) => false,
    });
    if candidates.iter().any(|c| c == "pacman.conf") {
        pacman_siglevels(&project.join("pacman.conf"), diags);
    }
    candidates
}

/// Warns about repositories whose packages need no valid signature (`SigLevel = Never` or
/// `Optional`): the installer then takes whatever the mirror serves. (Databases are
/// `Optional` by pacman's own default, as Arch does not sign them; that is not warned about.)
fn pacman_siglevels(path: &Path, diags: &mut super::diag::Diagnostics) {
    use crate::packages::arch::{Check, PacmanConf};
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let none = |_: &str| -> anyhow::Result<Vec<(String, String)>> { Ok(Vec::new()) };
    let conf = match PacmanConf::parse(&text, "pacman.conf", &none) {
        Ok(c) => c,
        Err(e) => return diags.error(at("pacman.conf", None, None), format!("{e:#}")),
    };
    for (i, repo) in conf.repos.iter().enumerate() {
        match conf.siglevel(i) {
            Ok(level) if level.package != Check::Required => {
                let line = text.lines().position(|l| l.trim_start().starts_with("SigLevel") && (l.contains("Never") || l.contains("Optional"))).map(|n| n + 1);
                diags.warn(
                    at("pacman.conf", line, None),
                    format!(
                        "[{}]: SigLevel lets packages in {}: the installer will install whatever the mirror serves for this repository; use SigLevel = Required",
                        repo.name,
                        if level.package == Check::Never { "without checking any signature" } else { "without a signature (Optional)" }
                    ),
                );
            }
            Ok(_) => {}
            Err(e) => diags.error(at("pacman.conf", None, None), format!("{e:#}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pacman_conf_without_package_signatures_is_warned_about() {
        let dir = std::env::temp_dir().join(format!("anemos-siglevel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("pacman.conf");
        let run = |text: &str| {
            std::fs::write(&conf, text).unwrap();
            let mut d = super::super::diag::Diagnostics::default();
            super::pacman_siglevels(&conf, &mut d);
            d.render()
        };
        assert_eq!(run("[options]\nSigLevel = Required DatabaseOptional\n[core]\nServer = http://m/$repo\n"), "");
        let never = run("[options]\nSigLevel = Required\n[core]\nServer = http://m/$repo\n[custom]\nSigLevel = Never\nServer = http://m/c\n");
        assert!(never.contains("pacman.conf:6") && never.contains("[custom]") && never.contains("without checking any signature") && !never.contains("[core]"), "{never}");
        let optional = run("[options]\nSigLevel = Optional TrustAll\n[core]\n");
        assert!(optional.contains("[core]") && optional.contains("Optional"), "{optional}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
