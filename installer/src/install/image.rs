//! Image mode on a machine: instead of the package manager, the image `anemos build` made
//! is laid onto the new file systems. `check` (the phase called `image-check`, before the
//! wipe) reads the image's manifest from its URL and refuses an image for another
//! distribution or without this machine's boot loader; `run` (the phase `image`) streams
//! it in, verifying the pinned SHA-256 over every byte before anything is made bootable.

use anyhow::{Context, Result};

use super::{Install, Where};
use crate::bootloader;
use crate::packages::extract::Root;
use crate::packages::fetch::{FetchConfig, Fetcher};

fn fetcher(inst: &Install) -> Result<Fetcher> {
    Fetcher::new(FetchConfig { proxy: inst.plan().proxy.clone(), ..FetchConfig::default() })
}

/// Before the wipe: the clock set from the image server's `Date` (for TLS and the log),
/// the image reachable, and its manifest compatible with this plan and this firmware.
pub fn check(inst: &mut Install) -> Result<()> {
    let source = inst.plan().image.clone().context("the plan names no image")?;
    if inst.set_clock {
        super::packages::correct_clock(inst, &source.location);
    }
    let manifest = crate::image::peek(&fetcher(inst)?, &source)?;
    let Where::Disk { uefi, .. } = inst.place else { return Ok(()) };
    let tools = bootloader::choose(inst.plan().bootloader, &inst.plan().layout, uefi).map(bootloader::tools).unwrap_or(&[]);
    manifest.check_against(inst.plan(), tools)?;
    log::info!(
        "image {}: {} ({} packages, {} unpacked, built from {})",
        source.location,
        manifest.imgname,
        manifest.packages.len(),
        crate::units::human_size(manifest.unpacked),
        manifest.plan.imgname
    );
    Ok(())
}

/// The image into the mounted new root, verified as it streams.
pub fn run(inst: &mut Install) -> Result<()> {
    let source = inst.plan().image.clone().context("the plan names no image")?;
    let root = Root::open(&inst.root)?;
    let t = std::time::Instant::now();
    let done = crate::image::install(&fetcher(inst)?, &source, &root)?;
    let secs = t.elapsed().as_secs_f64().max(0.001);
    log::info!("image: {} entries, {} streamed in {secs:.1} s ({:.1} MiB/s), SHA-256 verified", done.entries, crate::units::human_size(done.bytes), done.bytes as f64 / 1048576.0 / secs);
    Ok(())
}
