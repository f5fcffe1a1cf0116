//! The cleartext signature framework (RFC 9580 §7), the form of Debian's `InRelease`: a
//! header line, `Hash:` armor headers, the dash-escaped text, then an armored signature
//! block. Split here so that the signature is parsed by the same rpgp parser as every other
//! signature and key (see [`super::Keyring::from_bytes`]); the text is undone exactly as
//! rpgp's `CleartextSignedMessage::signed_text` does, and the tests hold it to gpg's output.

use anyhow::{bail, Context, Result};

const HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";

/// Splits a clearsigned message into the text its signatures cover (dash escapes removed,
/// spaces and tabs at line ends trimmed, LF line ends: RFC 9580 §7.2) and the armored
/// signature block after it. Nothing may come before the header line, as apt requires.
pub fn split(message: &str) -> Result<(String, &str)> {
    let (first, mut rest) = message.split_once('\n').context("not a clearsigned OpenPGP message: it is a single line")?;
    if first.trim_end() != HEADER {
        bail!("not a clearsigned OpenPGP message: it does not start with {HEADER}");
    }
    loop {
        let (line, after) = rest.split_once('\n').context("the clearsigned message ends inside its armor headers")?;
        rest = after;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if line.split_once(':').map(|(name, _)| name) != Some("Hash") {
            bail!("the clearsigned message has the armor header {line:?}; only Hash: may come before the text");
        }
    }
    // The text ends at the first line that starts with five dashes (a dash that begins a line
    // of text is escaped as "- "); the line break before that line is not part of the text.
    let end = if rest.starts_with("-----") { 0 } else { rest.find("\n-----").context("the clearsigned message has no signature block")? + 1 };
    let (text, signature) = rest.split_at(end);
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text);
    Ok((unescape(text), signature))
}

/// Removes each line's dash escape and trailing spaces and tabs; `\r\n` and `\n` become `\n`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (content, ends) = match line.strip_suffix('\n') {
            Some(c) => (c.strip_suffix('\r').unwrap_or(c), true),
            None => (line, false),
        };
        out.push_str(content.strip_prefix("- ").unwrap_or(content).trim_end_matches([' ', '\t']));
        if ends {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n";

    #[test]
    fn text_and_signature_are_split() {
        let msg = format!("{HEADER}\nHash: SHA512\n\nOrigin: Test\n- -----not armor\n- dashed\ntrailing \t\n{SIG}");
        let (text, sig) = split(&msg).unwrap();
        assert_eq!(text, "Origin: Test\n-----not armor\ndashed\ntrailing");
        assert_eq!(sig, SIG);
    }

    #[test]
    fn crlf_line_ends_become_lf_and_stray_cr_is_kept() {
        let msg = format!("{HEADER}\r\nHash: SHA256\r\n\r\na \r\nb\rc\r\n\r\n{}", SIG.replace('\n', "\r\n"));
        let (text, sig) = split(&msg).unwrap();
        assert_eq!(text, "a\nb\rc\n");
        assert!(sig.starts_with("-----BEGIN PGP SIGNATURE-----\r\n"));
    }

    #[test]
    fn an_empty_text_and_no_hash_header_are_allowed() {
        assert_eq!(split(&format!("{HEADER}\n\n{SIG}")).unwrap(), (String::new(), SIG));
    }

    #[test]
    fn malformed_frames_are_refused() {
        let cases = [
            (format!("junk\n{HEADER}\n\nx\n{SIG}"), "does not start with"),
            (format!("{HEADER}\nComment: evil\n\nx\n{SIG}"), "only Hash:"),
            (format!("{HEADER}\nHash: SHA256\n"), "inside its armor headers"),
            (format!("{HEADER}\n\nx\ny\n"), "no signature block"),
            ("Origin: Test".to_string(), "single line"),
        ];
        for (msg, want) in cases {
            let err = split(&msg).unwrap_err().to_string();
            assert!(err.contains(want), "{msg:?}: {err}");
        }
    }
}
