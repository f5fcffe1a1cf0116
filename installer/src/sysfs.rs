//! Reading sysfs attributes: one trimmed line of text, absent or empty meaning "unknown".

use std::path::Path;

/// The trimmed text of an attribute, or `None` if it is missing, unreadable or empty.
pub fn read_str(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// An attribute parsed as a decimal number.
pub fn read_u64(path: &Path) -> Option<u64> {
    read_str(path)?.parse().ok()
}
