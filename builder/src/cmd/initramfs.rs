//! `anemos initramfs`: write an initramfs image.

use anyhow::{Context, Result};
use installer::units::human_size;

use crate::cli::InitramfsArgs;
use crate::initramfs::{build, ModuleChoice, Request};
use crate::private::write_atomic;

pub fn run(args: InitramfsArgs) -> Result<()> {
    let modules = if args.no_modules {
        ModuleChoice::None
    } else {
        ModuleChoice::Tree {
            release: args.kernel_release.clone(),
            dir: args.modules_dir.clone(),
            defaults: !args.no_default_modules,
            extra: args.modules.clone(),
            autodetect: if args.autodetect {
                Some(true)
            } else if args.no_autodetect {
                Some(false)
            } else {
                None
            },
        }
    };
    let built = build(&Request { compression: args.compression, modules, payload: args.payload.clone() })?;
    // With a payload the image holds revealed secrets and a token: 0600, like the payload.
    let mode = if args.payload.is_some() { 0o600 } else { 0o644 };
    write_atomic(&args.output, &built.bytes, mode).context("writing the initramfs")?;
    let mut summary = format!("wrote {}: {} ({:?})", args.output.display(), human_size(built.bytes.len() as u64), args.compression);
    if let (Some(release), Some(sel)) = (&built.release, &built.selection) {
        summary += &format!(", {} modules for Linux {release}", sel.modules.len());
        if !built.autodetected.is_empty() {
            summary += &format!(" ({} autodetected)", built.autodetected.len());
        }
        if !sel.absent_defaults.is_empty() {
            log::debug!("default modules this kernel lacks: {}", sel.absent_defaults.join(" "));
        }
    } else {
        summary += ", no kernel modules";
    }
    if args.payload.is_some() {
        summary += &format!(", payload {}", human_size((built.bytes.len() - built.base_len) as u64));
    }
    println!("{summary}");
    Ok(())
}
