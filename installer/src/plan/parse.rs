//! Parsing the small value syntaxes the plan shares with the init's command line: sizes
//! (`512M`, `8G`) and disk selectors (`serial:…`, `/dev/disk/by-id/…`).

use super::DiskSelector;

const SELECTOR_FORMS: &str = "/dev/NAME, /dev/disk/by-id/NAME, by-id:NAME, serial:SERIAL, wwn:WWN, size:SIZE";

/// Parses `512M`, `8G`, `1T`, `64K`, `2GiB`: binary units. A bare number is bytes only
/// where `bare_bytes` (makeimg's `raw SIZE` follows truncate(1)); elsewhere a unit is
/// required, since `512` more likely meant megabytes.
pub fn parse_size(s: &str, bare_bytes: bool) -> Result<u64, String> {
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return Err("expected a number followed by K, M, G or T".into());
    }
    let n: u64 = s[..digits].parse().map_err(|_| "number too large".to_string())?;
    let unit = &s[digits..];
    let shift = match unit.trim_end_matches("iB").trim_end_matches('B') {
        "" if unit.is_empty() && bare_bytes => 0,
        "" => return Err("add a unit: K, M, G or T".into()),
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err(format!("unknown unit {unit:?} (allowed: K, M, G, T)")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| "size too large".to_string())
}

/// Parses one disk selector.
pub fn parse_selector(s: &str) -> Result<DiskSelector, String> {
    let nonempty = |v: &str, what: &str| if v.is_empty() || v.contains(char::is_whitespace) { Err(format!("{what} is empty")) } else { Ok(v.to_string()) };
    if let Some(id) = s.strip_prefix("/dev/disk/by-id/").or_else(|| s.strip_prefix("by-id:")) {
        return Ok(DiskSelector::ById(nonempty(id, "the by-id name")?));
    }
    if let Some(path) = s.strip_prefix("/dev/") {
        if path.is_empty() || path.split('/').any(|c| c.is_empty() || c == "..") {
            return Err("not a device path".into());
        }
        return Ok(DiskSelector::Path(s.to_string()));
    }
    if let Some(serial) = s.strip_prefix("serial:") {
        return Ok(DiskSelector::Serial(nonempty(serial, "the serial")?));
    }
    if let Some(wwn) = s.strip_prefix("wwn:") {
        let wwn = nonempty(wwn, "the wwn")?.to_ascii_lowercase();
        if let Some(hex) = wwn.strip_prefix("0x") {
            if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("wwn {wwn:?} is not hexadecimal after 0x"));
            }
        }
        return Ok(DiskSelector::Wwn(wwn));
    }
    if let Some(size) = s.strip_prefix("size:") {
        return match parse_size(size, false) {
            Ok(0) => Err("size:0 matches no disk".into()),
            Ok(b) => Ok(DiskSelector::Size(b)),
            Err(e) => Err(format!("size {size:?}: {e}")),
        };
    }
    Err(format!("not a disk selector (allowed: {SELECTOR_FORMS})"))
}
