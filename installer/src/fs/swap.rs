//! Swap areas: the version-1 header `mkswap` writes (`union swap_header` in
//! include/linux/swap.h): boot-block space, then version, last page, bad-page count, UUID
//! and label at byte 1024, and the `SWAPSPACE2` signature in the last ten bytes of the
//! first page. The page size is this machine's: a swap area only works on a kernel with
//! the same page size, as with mkswap.

use anyhow::{bail, Result};

use super::target::Target;
use super::{format_uuid, label16, FsInfo, FsKind};

/// The kernel refuses swap areas with fewer usable pages (mkswap's MIN_GOODPAGES).
const MIN_PAGES: u64 = 10;
pub const SIGNATURE: &[u8; 10] = b"SWAPSPACE2";

/// The first page of a swap area of `pages` pages.
fn header(page: usize, pages: u64, uuid: &[u8; 16], label: &[u8; 16]) -> Vec<u8> {
    let mut h = vec![0u8; page];
    h[1024..1028].copy_from_slice(&1u32.to_le_bytes()); // version
    h[1028..1032].copy_from_slice(&((pages - 1) as u32).to_le_bytes()); // last_page
                                                                        // nr_badpages (1032) stays 0.
    h[1036..1052].copy_from_slice(uuid);
    h[1052..1068].copy_from_slice(label);
    h[page - 10..].copy_from_slice(SIGNATURE);
    h
}

/// Makes a swap area over all of `target`.
pub fn make(target: &Target, label: Option<&str>, uuid: [u8; 16]) -> Result<FsInfo> {
    let label_field = label16(label, "swap")?;
    let page = rustix::param::page_size();
    let pages = target.len() / page as u64;
    if pages < MIN_PAGES {
        bail!("{} is {} bytes: swap needs at least {MIN_PAGES} pages of {page} bytes", target.name(), target.len());
    }
    if pages - 1 > u64::from(u32::MAX) {
        bail!("{} is too big for one swap area", target.name());
    }
    target.wipe_signatures()?;
    target.write_at(0, &header(page, pages, &uuid, &label_field))?;
    target.sync()?;
    Ok(FsInfo { kind: FsKind::Swap, uuid: format_uuid(&uuid), label: label.filter(|l| !l.is_empty()).map(str::to_string) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_sit_where_the_kernel_reads_them() {
        let h = header(4096, 2560, &[7; 16], b"swap\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(&h[4086..], SIGNATURE);
        assert_eq!(u32::from_le_bytes(h[1024..1028].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(h[1028..1032].try_into().unwrap()), 2559);
        assert_eq!(&h[1036..1052], &[7; 16]);
        assert_eq!(&h[1052..1056], b"swap");
        assert!(h[..1024].iter().all(|&b| b == 0));
    }
}
