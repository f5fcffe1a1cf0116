//! Compression of initramfs archives. Every method is deterministic: the same input gives
//! the same bytes (single-threaded zstd, gzip with no name and a zero timestamp).

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::Compression;

/// zstd level 19 without long-distance windows: the kernel's decompressor has a window limit.
const ZSTD_LEVEL: i32 = 19;

pub fn compress(data: &[u8], method: Compression) -> Result<Vec<u8>> {
    match method {
        Compression::None => Ok(data.to_vec()),
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL).context("zstd-compressing the initramfs"),
        Compression::Gzip => {
            let mut enc = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
            enc.write_all(data).context("gzip-compressing the initramfs")?;
            enc.finish().context("finishing the gzip stream")
        }
    }
}

/// What an archive file starts with, for checking payloads before appending them.
pub fn kind(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"070701") || data.starts_with(b"070702") {
        Some("cpio")
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if data.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else {
        None
    }
}
