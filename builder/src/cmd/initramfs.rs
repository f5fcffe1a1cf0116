//! `anemos initramfs`: write an initramfs image.

use anyhow::{Context, Result};
use installer::disk::human_size;

use crate::cli::InitramfsArgs;
use crate::initramfs::{build, ModuleChoice, Request};

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
    std::fs::write(&args.output, &built.bytes).with_context(|| format!("writing {}", args.output.display()))?;
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
