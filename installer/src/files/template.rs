//! `*.makeimg.template` files: text with `{{ NAME }}` (an IMGBUILD variable) and
//! `{{ secret:NAME }}` (a secret) replaced, and `{{{{` standing for a literal `{{`. There is
//! no logic. Spaces inside the braces are optional; a tag ends on the line it starts. Any
//! other `{{` is an error with its line and column, so a typo is caught by `anemos check`.
//! A secret's value is inserted without one trailing newline (files usually end in one).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a [u8]),
    Var { name: &'a str, line: usize, column: usize },
    Secret { name: &'a str, line: usize, column: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for TemplateError {}

/// A variable name: `[A-Za-z_][A-Za-z0-9_]*`, as the shell allows.
pub fn is_var_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A secret name: a file name under `secrets/` — letters, digits, `_`, `.`, `-`, not
/// starting with `.` or `-`, not ending in `.age`.
pub fn is_secret_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) && !s.ends_with(".age") && s.len() <= 200
}

/// Line and column (1-based, in characters) of byte `pos`.
fn position(src: &[u8], pos: usize) -> (usize, usize) {
    let before = &src[..pos];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let start = before.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    let column = String::from_utf8_lossy(&src[start..pos]).chars().count() + 1;
    (line, column)
}

pub fn parse(src: &[u8]) -> Result<Vec<Segment<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i + 1 < src.len() {
        if src[i] != b'{' || src[i + 1] != b'{' {
            i += 1;
            continue;
        }
        if src[i..].starts_with(b"{{{{") {
            out.push(Segment::Text(&src[text_start..i + 2]));
            i += 4;
            text_start = i;
            continue;
        }
        let (line, column) = position(src, i);
        let err = |message: String| TemplateError { line, column, message };
        let rest = &src[i + 2..];
        let line_end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let close = rest[..line_end].windows(2).position(|w| w == b"}}").ok_or_else(|| err("\"{{\" without \"}}\" on the same line (write {{{{ for a literal {{)".into()))?;
        let inner = std::str::from_utf8(&rest[..close]).map_err(|_| err("a tag must be text".into()))?.trim();
        out.push(Segment::Text(&src[text_start..i]));
        if let Some(name) = inner.strip_prefix("secret:") {
            let name = name.trim();
            if !is_secret_name(name) {
                return Err(err(format!("{{{{ secret:{name} }}}}: not a secret name (letters, digits, '_', '.', '-')")));
            }
            out.push(Segment::Secret { name, line, column });
        } else if is_var_name(inner) {
            out.push(Segment::Var { name: inner, line, column });
        } else {
            return Err(err(format!("{{{{ {inner} }}}}: not a variable name or secret:NAME (templates have no logic; write {{{{{{{{ for a literal {{{{)")));
        }
        i += 2 + close + 2;
        text_start = i;
    }
    if text_start < src.len() {
        out.push(Segment::Text(&src[text_start..]));
    }
    out.retain(|s| !matches!(s, Segment::Text(t) if t.is_empty()));
    Ok(out)
}

/// The variable and secret names a template uses, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub variables: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

pub fn names(src: &[u8]) -> Result<Names, TemplateError> {
    let mut n = Names::default();
    for s in parse(src)? {
        match s {
            Segment::Var { name, .. } => {
                n.variables.insert(name.to_string());
            }
            Segment::Secret { name, .. } => {
                n.secrets.insert(name.to_string());
            }
            Segment::Text(_) => {}
        }
    }
    Ok(n)
}

/// A secret's value as it is used (in a template, as a passphrase): without one trailing
/// newline, since files usually end in one.
pub fn secret_value(v: &[u8]) -> &[u8] {
    v.strip_suffix(b"\n").unwrap_or(v)
}

/// Renders a template. An unknown variable or secret is an error at its position (error
/// messages name secrets, never their values).
pub fn render(src: &[u8], vars: &BTreeMap<String, String>, secrets: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, TemplateError> {
    let mut out = Vec::with_capacity(src.len());
    for s in parse(src)? {
        match s {
            Segment::Text(t) => out.extend_from_slice(t),
            Segment::Var { name, line, column } => match vars.get(name) {
                Some(v) => out.extend_from_slice(v.as_bytes()),
                None => return Err(TemplateError { line, column, message: format!("{{{{ {name} }}}}: the IMGBUILD sets no variable {name:?}") }),
            },
            Segment::Secret { name, line, column } => match secrets.get(name) {
                Some(v) => out.extend_from_slice(secret_value(v)),
                None => return Err(TemplateError { line, column, message: format!("{{{{ secret:{name} }}}}: no secret {name:?}") }),
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("imgname", "mx"), ("domain", "example.org")].into_iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn renders_variables_secrets_and_escapes() {
        let secrets: BTreeMap<String, Vec<u8>> = [("db.pass".to_string(), b"hunter2\n".to_vec())].into();
        let src = b"host {{imgname}}.{{ domain }}\npass={{ secret:db.pass }};\nliteral {{{{ x }}\n";
        let out = render(src, &vars(), &secrets).unwrap();
        assert_eq!(out, b"host mx.example.org\npass=hunter2;\nliteral {{ x }}\n");
        let n = names(src).unwrap();
        assert_eq!(n.variables.into_iter().collect::<Vec<_>>(), ["domain", "imgname"]);
        assert_eq!(n.secrets.into_iter().collect::<Vec<_>>(), ["db.pass"]);
    }

    #[test]
    fn errors_have_positions() {
        let e = parse(b"a\n  x {{ if x }}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 5));
        assert!(e.message.contains("no logic"));
        let e = parse("\u{e9}{{ open\n}}".as_bytes()).unwrap_err();
        assert_eq!((e.line, e.column), (1, 2));
        let e = render(b"{{ nope }}", &vars(), &BTreeMap::new()).unwrap_err();
        assert!(e.message.contains("no variable \"nope\""));
        let e = render(b"x\n{{secret:k}}", &vars(), &BTreeMap::new()).unwrap_err();
        assert_eq!((e.line, e.column), (2, 1));
        assert!(parse(b"{{ secret:../x }}").is_err());
    }

    #[test]
    fn binary_text_passes_through() {
        let src = [0u8, 0xff, b'{', b'x', b'}', 0xfe];
        assert_eq!(render(&src, &vars(), &BTreeMap::new()).unwrap(), src);
    }
}
