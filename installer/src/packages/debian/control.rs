//! deb822 control data (deb822(5)): paragraphs of `Field: value` lines, continuation lines
//! starting with a space or tab, paragraphs separated by blank lines. Used for Release files,
//! Packages indexes, a `.deb`'s `control` file and the dpkg status file.
//!
//! Values keep their continuation lines verbatim (joined with `\n`), so a paragraph read from
//! a `.deb` can be written back into the dpkg status file byte for byte.

use std::io::BufRead;

use anyhow::{bail, Context, Result};

/// One paragraph, fields in their original order; lookups ignore case as deb822 says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    pub fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of `name` (case-insensitive), first line trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The value of a field that must be present.
    pub fn require(&self, name: &str) -> Result<&str> {
        self.get(name).with_context(|| format!("the paragraph of {:?} has no {name} field", self.get("Package").unwrap_or("(unnamed)")))
    }

    /// Writes the paragraph in deb822 form, ending with a newline (no blank line).
    pub fn write_to(&self, out: &mut String) {
        for (k, v) in &self.fields {
            out.push_str(k);
            out.push(':');
            if !v.is_empty() && !v.starts_with('\n') {
                out.push(' ');
            }
            out.push_str(v);
            out.push('\n');
        }
    }
}

/// Reads paragraphs one at a time, keeping only fields `keep` accepts (indexes are large: a
/// full Packages file holds tens of thousands of paragraphs, most fields of which we never need).
pub struct Reader<R, F> {
    input: R,
    keep: F,
    line: String,
    lineno: usize,
    what: String,
}

impl<R: BufRead, F: Fn(&str) -> bool> Reader<R, F> {
    /// `what` names the input in errors (a URL or path).
    pub fn new(input: R, what: &str, keep: F) -> Self {
        Reader { input, keep, line: String::new(), lineno: 0, what: what.to_string() }
    }

    /// The next paragraph, or `None` at the end.
    pub fn next_paragraph(&mut self) -> Result<Option<Paragraph>> {
        let mut para = Paragraph::default();
        let mut seen_field = false;
        let mut keeping = false;
        loop {
            self.line.clear();
            let n = self.input.read_line(&mut self.line).with_context(|| format!("reading {}", self.what))?;
            self.lineno += 1;
            if n == 0 {
                return Ok(seen_field.then_some(para));
            }
            let line = self.line.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                if seen_field {
                    return Ok(Some(para));
                }
                continue;
            }
            if line.starts_with('#') && !seen_field {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if !seen_field {
                    bail!("{} line {}: a continuation line before any field", self.what, self.lineno);
                }
                if keeping {
                    if let Some((_, v)) = para.fields.last_mut() {
                        v.push('\n');
                        v.push_str(line);
                    }
                }
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                bail!("{} line {}: expected `Field: value`, found {line:?}", self.what, self.lineno);
            };
            seen_field = true;
            keeping = (self.keep)(name);
            if keeping {
                para.fields.push((name.to_string(), value.trim().to_string()));
            }
        }
    }
}

/// Parses a whole text into paragraphs, keeping every field.
pub fn parse_all(text: &str, what: &str) -> Result<Vec<Paragraph>> {
    let mut reader = Reader::new(text.as_bytes(), what, |_| true);
    let mut out = Vec::new();
    while let Some(p) = reader.next_paragraph()? {
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_continuations() {
        let text = "Package: a\nVersion: 1\nDescription: short\n long line\n .\n more\n\n\nPackage: b\nversion: 2\n";
        let paras = parse_all(text, "test").unwrap();
        assert_eq!(paras.len(), 2);
        assert_eq!(paras[0].get("description"), Some("short\n long line\n .\n more"));
        assert_eq!(paras[1].get("Version"), Some("2"));
        let mut out = String::new();
        paras[0].write_to(&mut out);
        assert_eq!(out, "Package: a\nVersion: 1\nDescription: short\n long line\n .\n more\n");
    }

    #[test]
    fn filtering_and_errors() {
        let text = "Package: a\nDescription: x\n y\nSize: 3\n";
        let mut r = Reader::new(text.as_bytes(), "t", |f| f != "Description");
        let p = r.next_paragraph().unwrap().unwrap();
        assert_eq!(p.fields, vec![("Package".into(), "a".into()), ("Size".into(), "3".into())]);
        assert!(parse_all(" x\n", "t").is_err());
        assert!(parse_all("nocolon\n", "t").is_err());
    }
}
