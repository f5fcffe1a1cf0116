//! Reading the kernel's log buffer from /dev/kmsg.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};

/// Every record currently in the kernel's buffer, as `[seconds] text` lines.
pub fn read_all() -> Result<String> {
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open("/dev/kmsg").context("opening /dev/kmsg")?;
    let mut out = String::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.push_str(&format_record(&String::from_utf8_lossy(&buf[..n]))),
            // EPIPE: records were overwritten while we read; keep going.
            Err(e) if e.raw_os_error() == Some(32) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e).context("reading /dev/kmsg"),
        }
    }
    Ok(out)
}

/// `6,339,5140900,-;text\n SUBSYSTEM=…` → `[    5.140900] text\n`.
fn format_record(record: &str) -> String {
    let Some((header, rest)) = record.split_once(';') else { return String::new() };
    let micros: u64 = header.split(',').nth(2).and_then(|t| t.parse().ok()).unwrap_or(0);
    let text = rest.lines().next().unwrap_or("");
    format!("[{:>5}.{:06}] {text}\n", micros / 1_000_000, micros % 1_000_000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn records_are_formatted() {
        assert_eq!(super::format_record("6,339,5140900,-;virtio_blk: hello\n SUBSYSTEM=x\n"), "[    5.140900] virtio_blk: hello\n");
    }
}
