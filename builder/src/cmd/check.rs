//! `anemos check DIR`: validate an IMGBUILD project and print the plan a person reads before
//! a destructive act, with every error and warning at once. `--json` prints the same for
//! machines. Exits non-zero when there is an error; warnings do not fail.

use anyhow::{bail, Context, Result};
use installer::imgbuild::{check, Checked};

use crate::cli::CheckArgs;
use crate::project::options;

/// Prints the diagnostics to stderr and fails when any is an error.
pub fn report(checked: &Checked, dir: &std::path::Path) -> Result<()> {
    eprint!("{}", checked.diagnostics.render());
    let errors = checked.diagnostics.errors().count();
    if errors > 0 {
        bail!("{} has {errors} error{} (listed above)", dir.join("IMGBUILD").display(), if errors == 1 { "" } else { "s" });
    }
    Ok(())
}

pub fn run(args: CheckArgs) -> Result<()> {
    let dir = &args.project.dir;
    let checked = check(dir, &options(&args.project));
    if args.json {
        let json = serde_json::to_string_pretty(&checked).context("serialising the check result")?;
        println!("{json}");
        if !checked.ok {
            bail!("{} has errors (see \"diagnostics\")", dir.join("IMGBUILD").display());
        }
        return Ok(());
    }
    report(&checked, dir)?;
    if let Some(plan) = &checked.plan {
        print!("{}", installer::plan::render_human(plan));
    }
    Ok(())
}
