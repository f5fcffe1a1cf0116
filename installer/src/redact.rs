//! Keeping secret values out of every log line and event. The installer knows the values
//! of the secrets it carries (the payload's `secrets/`, the deploy token); once they are
//! registered, [`redact`] replaces each occurrence — the whole value, and each line of a
//! multi-line value (a key file appears one line at a time in a traced shell script) —
//! with `[secret NAME]`. The init's logger and [`crate::event::emit`] run every line and
//! event through it, so a secret that `provision()` expands under `set -x`, or that a
//! failing command echoes, reaches neither the console, the kernel log, the event
//! endpoint nor the log saved into the new system.

use std::borrow::Cow;
use std::sync::RwLock;

/// Shorter values are not redacted: they would blank out ordinary words of every line.
/// (A warning names such a secret when it is registered.)
pub const MIN_LEN: usize = 4;

static NEEDLES: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());

/// Registers the secret `name` with `value`. Values that are not UTF-8 are matched by
/// their lines that are.
pub fn register(name: &str, value: &[u8]) {
    let text = String::from_utf8_lossy(value);
    let whole = text.trim_end_matches(['\n', '\r']);
    let mut add: Vec<String> = Vec::new();
    if whole.chars().count() >= MIN_LEN && !whole.contains('\u{fffd}') {
        add.push(whole.to_string());
    }
    for line in whole.lines().map(str::trim).filter(|l| l.chars().count() >= MIN_LEN && !l.contains('\u{fffd}')) {
        if !add.iter().any(|a| a == line) {
            add.push(line.to_string());
        }
    }
    if add.is_empty() && !whole.is_empty() {
        log::warn!("secret {name:?} is shorter than {MIN_LEN} characters: it cannot be kept out of the logs reliably");
    }
    let label = format!("[secret {name}]");
    if let Ok(mut n) = NEEDLES.write() {
        n.extend(add.into_iter().map(|a| (a, label.clone())));
        // Longest first: a whole value is replaced before its lines are.
        n.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        n.dedup_by(|a, b| a.0 == b.0);
    }
}

/// `text` with every registered value replaced.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(needles) = NEEDLES.read() else { return Cow::Owned("[log line withheld: the secret list is poisoned]".into()) };
    let mut out = Cow::Borrowed(text);
    for (needle, label) in needles.iter() {
        if out.contains(needle.as_str()) {
            out = Cow::Owned(out.replace(needle.as_str(), label));
        }
    }
    out
}

/// Whether any value is registered (so callers may skip work when none is).
pub fn active() -> bool {
    NEEDLES.read().map(|n| !n.is_empty()).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_their_lines_are_replaced_everywhere() {
        register("relay_password", b"relay-s3cret\n");
        register("dkim_key", b"-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQ\nAbCdEfGh1234\n-----END KEY-----\n");
        register("pin", b"42");
        assert!(active());
        assert_eq!(redact("+ echo relay-s3cret | passwd"), "+ echo [secret relay_password] | passwd");
        assert_eq!(redact("relay-s3cret relay-s3cret"), "[secret relay_password] [secret relay_password]");
        // A traced multi-line value shows one line at a time.
        assert_eq!(redact("provision: MIIEvQIBADANBgkqhkiG9w0BAQ"), "provision: [secret dkim_key]");
        assert_eq!(redact("+ printf %s 'AbCdEfGh1234'"), "+ printf %s '[secret dkim_key]'");
        // Too short to redact: left alone (a warning said so).
        assert_eq!(redact("port 42 open"), "port 42 open");
        assert!(matches!(redact("nothing secret here"), Cow::Borrowed(_)));
    }
}
