//! `anemos pack DIR -o FILE`: check the project, reveal the secrets its templates use (on
//! this workstation only), and write the payload the initramfs builder appends. The file is
//! written under a temporary name and renamed, so a failure never leaves half a payload;
//! it is mode 0600 because it holds revealed secrets.

use anyhow::{Context, Result};

use crate::cli::PackArgs;
use crate::private::write_atomic;
use crate::project::Project;

pub fn run(args: PackArgs) -> Result<()> {
    let project = Project::load(&args.project)?;
    project.require_image_url("anemos pack")?;
    let bytes = project.payload(None)?;
    write_atomic(&args.output, &bytes, 0o600).context("writing the payload")?;
    let plan = &project.plan;
    println!(
        "wrote {}: {} for {} ({} input trees, {} secrets; built {})",
        args.output.display(),
        installer::units::human_size(bytes.len() as u64),
        plan.imgname,
        plan.inputs.len(),
        plan.secrets.len(),
        installer::clock::format(installer::clock::from_unix(project.build_time))
    );
    Ok(())
}
