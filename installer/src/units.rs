//! Units people read: byte counts as `8 GiB`. A leaf module: the plan, the disks and the
//! commands all use it, and it uses nothing of theirs.

/// Renders a byte count the way people read disk sizes: `8.0 GiB`, `512 MiB`, `4 KiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_naturally() {
        assert_eq!(super::human_size(512), "512 B");
        assert_eq!(super::human_size(8 << 30), "8 GiB");
        assert_eq!(super::human_size(1536 << 20), "1.5 GiB");
    }
}
