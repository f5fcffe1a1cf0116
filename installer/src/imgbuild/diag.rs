//! Diagnostics: every problem found in a project, with where it is, collected so that one
//! `anemos check` reports all of them at once.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "in")]
pub enum Location {
    /// The IMGBUILD, at a line when it is known.
    Imgbuild { line: Option<usize> },
    /// A command-line option such as `--format`.
    Option { name: String },
    /// A file of the project (path relative to the project), optionally at a line/column.
    File { path: String, line: Option<usize>, column: Option<usize> },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Imgbuild { line: Some(l) } => write!(f, "IMGBUILD:{l}"),
            Location::Imgbuild { line: None } => write!(f, "IMGBUILD"),
            Location::Option { name } => write!(f, "{name}"),
            Location::File { path, line, column } => {
                write!(f, "{path}")?;
                if let Some(l) = line {
                    write!(f, ":{l}")?;
                }
                if let Some(c) = column {
                    write!(f, ":{c}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `IMGBUILD:12: target="debain": not a target; …` for errors, with `warning: ` after
    /// the location for warnings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "{}: {}", self.location, self.message),
            Severity::Warning => write!(f, "{}: warning: {}", self.location, self.message),
        }
    }
}

/// An ordered collection of diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn error(&mut self, location: Location, message: impl Into<String>) {
        self.0.push(Diagnostic { severity: Severity::Error, location, message: message.into() });
    }

    pub fn warn(&mut self, location: Location, message: impl Into<String>) {
        self.0.push(Diagnostic { severity: Severity::Warning, location, message: message.into() });
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// All diagnostics, one per line, errors and warnings in the order found.
    pub fn render(&self) -> String {
        self.0.iter().map(|d| format!("{d}\n")).collect()
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates.iter().map(|c| (strsim::damerau_levenshtein(&lower, c), *c)).filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len()).min_by_key(|(d, _)| *d).map(|(_, c)| c)
}

/// `VAR="VALUE": WHAT; did you mean "X"? (allowed: A, B, C)`.
pub fn bad_value(var: &str, value: &str, what: &str, allowed: &[&str]) -> String {
    bad_part(var, value, value, what, allowed)
}

/// As [`bad_value`], for one word `part` of a longer value.
pub fn bad_part(var: &str, value: &str, part: &str, what: &str, allowed: &[&str]) -> String {
    format!("{var}={value:?}: {}", not_allowed(part, what, allowed))
}

/// `WHAT; did you mean "X"? (allowed: A, B, C)` for a `word` that is not in `allowed`.
pub fn not_allowed(word: &str, what: &str, allowed: &[&str]) -> String {
    let mut s = what.to_string();
    if let Some(m) = did_you_mean(word, allowed) {
        s += &format!("; did you mean {m:?}?");
    }
    if !allowed.is_empty() {
        s += &format!(" (allowed: {})", allowed.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_not_strangers() {
        assert_eq!(did_you_mean("debain", &["debian", "arch", "alpine"]), Some("debian"));
        assert_eq!(did_you_mean("pakages", &["packages", "imgname"]), Some("packages"));
        assert_eq!(did_you_mean("Arch", &["debian", "arch", "alpine"]), Some("arch"));
        assert_eq!(did_you_mean("gentoo", &["debian", "arch", "alpine"]), None);
        assert_eq!(did_you_mean("bz2", &["gz", "xz", "zst"]), None);
    }

    #[test]
    fn the_error_reads_as_documented() {
        let mut d = Diagnostics::default();
        d.error(Location::Imgbuild { line: Some(12) }, bad_value("target", "debain", "not a target", &["debian", "arch", "alpine"]));
        assert_eq!(d.render(), "IMGBUILD:12: target=\"debain\": not a target; did you mean \"debian\"? (allowed: debian, arch, alpine)\n");
    }
}
