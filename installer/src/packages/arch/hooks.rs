//! libalpm hooks (alpm-hooks(5)): `*.hook` files in `/usr/share/libalpm/hooks/` and
//! `/etc/pacman.d/hooks/` (the latter overriding a file of the same name; one that is a
//! symlink to `/dev/null` disables it), run in file-name order. A hook runs when one of its
//! `[Trigger]`s matches the transaction — here always `Operation = Install`: `Type = Path`
//! targets are fnmatch(3) patterns (no `FNM_PATHNAME`, so `*` crosses `/`; `!` negates; the
//! last matching pattern decides) over the installed paths, `Type = Package` over the
//! package names. `Exec` is split like a shell word list and executed directly (no shell,
//! no `PATH` search) in the chroot; `NeedsTargets` feeds the matched targets on stdin.
//! In a new root no hook exists before the transaction, so only `PostTransaction` hooks of
//! the installed packages can run.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};

use crate::packages::extract::Root;

/// One parsed hook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hook {
    /// The file name (`90-mkinitcpio-install.hook`).
    pub name: String,
    pub triggers: Vec<Trigger>,
    pub description: String,
    pub when_post: bool,
    pub exec: Vec<String>,
    pub depends: Vec<String>,
    pub needs_targets: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trigger {
    pub operations: Vec<String>,
    /// `Path` (or its old name `File`) or `Package`.
    pub path_type: bool,
    pub targets: Vec<String>,
}

pub const DIRS: [&str; 2] = ["usr/share/libalpm/hooks", "etc/pacman.d/hooks"];

impl Hook {
    pub fn parse(name: &str, text: &str) -> Result<Hook> {
        let mut hook = Hook { name: name.to_string(), ..Hook::default() };
        let mut section = String::new();
        let mut when = None;
        for (n, line) in text.lines().enumerate() {
            let at = || format!("hook {name}, line {}", n + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
                if section == "Trigger" {
                    hook.triggers.push(Trigger::default());
                } else if section != "Action" {
                    bail!("{}: unknown section [{section}]", at());
                }
                continue;
            }
            let (key, value) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim())).unwrap_or((line, ""));
            match (section.as_str(), key) {
                ("Trigger", "Operation") => hook.triggers.last_mut().context("no trigger")?.operations.push(value.to_string()),
                ("Trigger", "Type") => {
                    hook.triggers.last_mut().context("no trigger")?.path_type = match value {
                        "Path" | "File" => true,
                        "Package" => false,
                        _ => bail!("{}: unknown Type {value:?}", at()),
                    }
                }
                ("Trigger", "Target") => hook.triggers.last_mut().context("no trigger")?.targets.push(value.to_string()),
                ("Action", "Description") => hook.description = value.to_string(),
                ("Action", "When") => when = Some(value == "PostTransaction"),
                ("Action", "Exec") => hook.exec = split_words(value).with_context(at)?,
                ("Action", "Depends") => hook.depends.push(value.to_string()),
                ("Action", "NeedsTargets") => hook.needs_targets = true,
                ("Action", "AbortOnFail") => {}
                _ => bail!("{}: unknown key {key} in [{section}]", at()),
            }
        }
        hook.when_post = when.with_context(|| format!("hook {name}: no When"))?;
        if hook.exec.is_empty() || hook.triggers.is_empty() {
            bail!("hook {name}: no Exec or no [Trigger]");
        }
        Ok(hook)
    }

    /// The targets this hook matched in an install of `packages` with `paths` (no leading
    /// `/`, directories with a trailing `/`); empty if it does not run.
    pub fn matches(&self, packages: &[String], paths: &[String]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for t in self.triggers.iter().filter(|t| t.operations.iter().any(|o| o == "Install")) {
            let candidates = if t.path_type { paths } else { packages };
            out.extend(candidates.iter().filter(|c| fnmatch_patterns(&t.targets, c)).cloned());
        }
        out
    }
}

/// The hooks installed in `root`, in the order pacman runs them.
pub fn load(root: &Root) -> Result<Vec<Hook>> {
    let mut files: std::collections::BTreeMap<String, Option<String>> = Default::default();
    for dir in DIRS {
        let Ok(entries) = std::fs::read_dir(root.path().join(dir)) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".hook") {
                continue;
            }
            let rel = format!("{dir}/{name}");
            let disabled = std::fs::read_link(root.path().join(&rel)).is_ok_and(|t| t == std::path::Path::new("/dev/null"));
            files.insert(name, (!disabled).then_some(rel));
        }
    }
    let mut hooks = Vec::new();
    for (name, rel) in files {
        let Some(rel) = rel else { continue };
        let text = String::from_utf8(root.read_file(&rel)?).with_context(|| format!("/{rel} is not UTF-8"))?;
        hooks.push(Hook::parse(&name, &text)?);
    }
    Ok(hooks)
}

/// alpm's `_alpm_fnmatch_patterns`: the last pattern that matches decides; a `!` pattern
/// that matches means "no".
pub fn fnmatch_patterns(patterns: &[String], s: &str) -> bool {
    for p in patterns.iter().rev() {
        let (neg, pat) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.strip_prefix('\\').unwrap_or(p)),
        };
        if fnmatch(pat.as_bytes(), s.as_bytes()) {
            return !neg;
        }
    }
    false
}

/// fnmatch(3) without flags: `*`, `?`, bracket expressions (`[a-z]`, `[!x]`), `\` escapes.
pub fn fnmatch(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|k| fnmatch(&p[1..], &s[k..])),
        Some(b'?') => !s.is_empty() && fnmatch(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(&c) = s.first() else { return false };
            match bracket(&p[1..], c) {
                Some((ok, len)) => ok && fnmatch(&p[1 + len..], &s[1..]),
                None => c == b'[' && fnmatch(&p[1..], &s[1..]),
            }
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && fnmatch(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && fnmatch(&p[1..], &s[1..]),
    }
}

/// Matches `c` against a bracket expression after its `[`: (matched, bytes used incl. `]`).
fn bracket(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let (neg, mut i) = if matches!(p.first(), Some(b'!') | Some(b'^')) { (true, 1) } else { (false, 0) };
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == b']' && !first {
            return Some((hit != neg, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    None
}

/// Splits `Exec` into words: whitespace separates, single and double quotes group,
/// a backslash escapes the next character (alpm uses wordsplit with the same rules).
pub fn split_words(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                cur.push(chars.next().context("a trailing backslash in Exec")?);
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        bail!("an unterminated quote in Exec");
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Whether a hook builds an initramfs (mkinitcpio, dracut, booster): those are deferred to
/// [`super::finish`], as Debian defers `update-initramfs`.
pub fn builds_initramfs(h: &Hook) -> bool {
    let text = format!("{} {}", h.name, h.exec.join(" "));
    ["mkinitcpio", "initcpio", "dracut", "booster"].iter().any(|w| text.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_a_hook() {
        let text = "[Trigger]\nType = Path\nOperation = Install\nOperation = Upgrade\nTarget = usr/lib/modules/*/vmlinuz\nTarget = !usr/lib/modules/*-rt/vmlinuz\n\n[Trigger]\nType = Package\nOperation = Install\nTarget = mkinitcpio\n\n[Action]\nDescription = Building images\nWhen = PostTransaction\nExec = /usr/share/libalpm/scripts/mkinitcpio 'install now' \"a b\" c\\ d\nNeedsTargets\n";
        let h = Hook::parse("90-mkinitcpio-install.hook", text).unwrap();
        assert!(h.when_post && h.needs_targets);
        assert_eq!(h.exec, ["/usr/share/libalpm/scripts/mkinitcpio", "install now", "a b", "c d"]);
        let paths = ["usr/lib/modules/6.1-arch/vmlinuz".to_string(), "usr/lib/modules/6.1-rt/vmlinuz".into(), "usr/bin/x".into()];
        let got: Vec<_> = h.matches(&["linux".into(), "mkinitcpio".into()], &paths).into_iter().collect();
        assert_eq!(got, ["mkinitcpio", "usr/lib/modules/6.1-arch/vmlinuz"]);
        assert!(builds_initramfs(&h));
        assert!(Hook::parse("x.hook", "[Action]\nExec = /bin/true\n").is_err());
        assert!(Hook::parse("x.hook", "[Trigger]\nType = Nope\n").is_err());
    }

    #[test]
    fn fnmatch_like_libc() {
        assert!(fnmatch(b"usr/*", b"usr/lib/x"), "* crosses / without FNM_PATHNAME");
        assert!(fnmatch(b"etc/[a-c]?.conf", b"etc/b1.conf"));
        assert!(!fnmatch(b"etc/[!a-c]?.conf", b"etc/b1.conf"));
        assert!(fnmatch(b"a\\*", b"a*") && !fnmatch(b"a\\*", b"ab"));
        assert!(!fnmatch(b"usr/", b"usr"));
        assert!(fnmatch_patterns(&["usr/*".into(), "!usr/share/*".into(), "usr/share/keep".into()], "usr/share/keep"));
        assert!(!fnmatch_patterns(&["usr/*".into(), "!usr/share/*".into()], "usr/share/doc"));
    }
}
