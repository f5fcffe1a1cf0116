//! `anemos image DIR`: build makeimg's output (raw, tar or dir) from a project.

use anyhow::Result;

use crate::cli::ImageArgs;
use crate::image::{build, ImageRequest, READY};

pub fn run(args: ImageArgs) -> Result<()> {
    let built = build(&request(&args))?;
    println!("built {} in {:.0} s", built.path.display(), built.total.as_secs_f64());
    for (phase, ms) in &built.phases {
        let label = if phase == READY { "installer ready (kernel uptime)" } else { phase.as_str() };
        println!("  {label:<12} {:>7.1} s", *ms as f64 / 1000.0);
    }
    Ok(())
}

pub fn request(args: &ImageArgs) -> ImageRequest {
    ImageRequest {
        project: args.project.clone(),
        output_dir: args.output.clone(),
        memory_mib: args.memory,
        log: args.log.clone(),
        attach: args
            .attach
            .iter()
            .map(|a| match a.rsplit_once(':') {
                Some((file, serial)) => (file.into(), Some(serial.to_string())),
                None => (a.into(), None),
            })
            .collect(),
    }
}
