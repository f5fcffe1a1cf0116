//! `*.makeimg.patch` files: a unified diff of one file, applied in-process to the same path
//! in the target (what makeimg does with patch(1)). Parsing and hunk placement are diffy's
//! (GNU patch's algorithm without fuzz: a hunk may move up or down, its context must match
//! exactly). Headers (`diff …`, `Index:`) before the `---` line are ignored.

use std::fmt;

use diffy::Patch;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// 1-based hunk number, when a hunk failed.
    pub hunk: Option<usize>,
    /// The hunk's header, e.g. `@@ -3,4 +3,5 @@`.
    pub header: Option<String>,
    pub message: String,
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.hunk, &self.header) {
            (Some(n), Some(h)) => write!(f, "hunk {n} ({h}) {}", self.message),
            _ => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for PatchError {}

fn plain(message: impl Into<String>) -> PatchError {
    PatchError { hunk: None, header: None, message: message.into() }
}

/// The diff itself: from the first `--- `, `+++ ` or `@@ ` line on.
fn body(text: &[u8]) -> &[u8] {
    let mut start = 0;
    for line in text.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"--- ") || line.starts_with(b"+++ ") || line.starts_with(b"@@ ") {
            return &text[start..];
        }
        start += line.len();
    }
    &text[text.len()..]
}

/// Parses a patch file; the number of hunks. Used by `anemos check`.
pub fn check(text: &[u8]) -> Result<usize, PatchError> {
    parse(text).map(|p| p.hunks().len())
}

/// How many `+++ ` file headers stand outside hunks (a hunk's own lines may start with
/// `+++ ` too: an added line `++ x`). Hunk lengths come from the `@@ -a,b +c,d @@` header.
fn file_headers(body: &[u8]) -> usize {
    let (mut old, mut new, mut headers) = (0usize, 0usize, 0);
    for line in body.split(|b| *b == b'\n') {
        if old > 0 || new > 0 {
            match line.first() {
                Some(b' ') | None => {
                    old = old.saturating_sub(1);
                    new = new.saturating_sub(1);
                }
                Some(b'-') => old = old.saturating_sub(1),
                Some(b'+') => new = new.saturating_sub(1),
                _ => {}
            }
        } else if line.starts_with(b"+++ ") {
            headers += 1;
        } else if let Some(rest) = line.strip_prefix(b"@@ -") {
            let text = String::from_utf8_lossy(rest);
            let mut ranges = text.split(' ');
            let len = |r: Option<&str>| r.map(|r| r.trim_start_matches('+')).map(|r| r.split_once(',').map_or(Ok(1), |(_, n)| n.parse::<usize>()).unwrap_or(0)).unwrap_or(0);
            old = len(ranges.next());
            new = len(ranges.next());
        }
    }
    headers
}

fn parse(text: &[u8]) -> Result<Patch<'_, [u8]>, PatchError> {
    let body = body(text);
    if file_headers(body) > 1 {
        return Err(plain("holds diffs of several files; one .makeimg.patch changes exactly one file"));
    }
    let patch = Patch::from_bytes(body).map_err(|e| plain(format!("is not a unified diff: {e}")))?;
    if patch.hunks().is_empty() {
        return Err(plain("has no hunks (no @@ lines)"));
    }
    Ok(patch)
}

/// Applies `text` to `original`. A hunk that does not apply is an error naming it.
pub fn apply(original: &[u8], text: &[u8]) -> Result<Vec<u8>, PatchError> {
    let patch = parse(text)?;
    diffy::apply_bytes(original, &patch).map_err(|e| {
        // diffy reports "error applying hunk #N" and keeps N private; read it back.
        let shown = e.to_string();
        let n = shown.rsplit('#').next().and_then(|n| n.trim().parse::<usize>().ok());
        let header = n.and_then(|n| patch.hunks().get(n.wrapping_sub(1))).map(|h| {
            let (o, m) = (h.old_range(), h.new_range());
            format!("@@ -{},{} +{},{} @@", o.start(), o.len(), m.start(), m.len())
        });
        PatchError { hunk: n, header, message: "does not apply: its context or removed lines are not in the file".into() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIG: &[u8] = b"PermitRootLogin yes\nPasswordAuthentication yes\nX11Forwarding yes\nUsePAM yes\n";

    #[test]
    fn applies_with_headers_and_offsets() {
        let p = b"diff -u a/etc/ssh/sshd_config b/etc/ssh/sshd_config\n--- a/etc/ssh/sshd_config\n+++ b/etc/ssh/sshd_config\n@@ -1,2 +1,2 @@\n-PermitRootLogin yes\n+PermitRootLogin prohibit-password\n PasswordAuthentication yes\n";
        let out = apply(ORIG, p).unwrap();
        assert_eq!(out, b"PermitRootLogin prohibit-password\nPasswordAuthentication yes\nX11Forwarding yes\nUsePAM yes\n");
        // The same hunk placed two lines later in the file still applies.
        let shifted = [b"# a\n# b\n".as_slice(), ORIG].concat();
        assert!(apply(&shifted, p).unwrap().starts_with(b"# a\n# b\nPermitRootLogin prohibit-password\n"));
    }

    #[test]
    fn failing_hunk_is_named() {
        let p = b"--- a\n+++ b\n@@ -1,1 +1,1 @@\n-PermitRootLogin yes\n+PermitRootLogin no\n@@ -4,1 +4,1 @@\n-UsePAM no\n+UsePAM yes\n";
        let e = apply(ORIG, p).unwrap_err();
        assert_eq!(e.hunk, Some(2));
        assert_eq!(e.to_string(), "hunk 2 (@@ -4,1 +4,1 @@) does not apply: its context or removed lines are not in the file");
    }

    #[test]
    fn lines_that_look_like_headers_inside_hunks() {
        let original = "-- a\nkeep\n";
        let modified = "++ b\nkeep\n";
        let p = diffy::create_patch(original, modified).to_string();
        assert_eq!(apply(original.as_bytes(), p.as_bytes()).unwrap(), modified.as_bytes());
    }

    #[test]
    fn malformed_patches() {
        assert!(check(b"just text\n").unwrap_err().message.contains("no hunks"));
        assert!(check(b"--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n--- c\n+++ d\n@@ -1 +1 @@\n-x\n+y\n").unwrap_err().message.contains("several files"));
        assert_eq!(check(b"--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n"), Ok(1));
    }
}
