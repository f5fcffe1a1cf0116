//! Compression of initramfs archives. Every method is deterministic: the same input gives
//! the same bytes (single-threaded zstd, gzip with no name and a zero timestamp).

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::Compression;

/// zstd level 19 without long-distance windows: the kernel's decompressor has a window limit.
const ZSTD_LEVEL: i32 = 19;
/// zstd's own default level, for archives used once (`anemos kexec`, `anemos image`).
const ZSTD_FAST_LEVEL: i32 = 3;

pub fn compress(data: &[u8], method: Compression) -> Result<Vec<u8>> {
    match method {
        Compression::None => Ok(data.to_vec()),
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL).context("zstd-compressing the initramfs"),
        Compression::ZstdFast => zstd::bulk::compress(data, ZSTD_FAST_LEVEL).context("zstd-compressing the initramfs"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zstd_level_round_trips_deterministically() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for method in [Compression::Zstd, Compression::ZstdFast] {
            let a = compress(&data, method).unwrap();
            assert_eq!(a, compress(&data, method).unwrap(), "{method:?} is not deterministic");
            assert_eq!(kind(&a), Some("zstd"));
            assert_eq!(zstd::bulk::decompress(&a, data.len()).unwrap(), data);
        }
    }
}
