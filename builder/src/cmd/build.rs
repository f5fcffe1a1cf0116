//! `anemos build [DIR] -o FILE`: the project's system built once, natively (as root), as an
//! image for many hosts: the install pipeline into a private directory with
//! `Where::Image` (the boot loader packages for every firmware, an initramfs for any
//! machine, templates without secrets, provision() run, then made generic), written as a
//! reproducible tar.zst with its manifest, and the lines to pin it printed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use installer::image::{installed_packages, Manifest, FORMAT};
use installer::install::Where;

use crate::cli::BuildArgs;
use crate::private::Scratch;
use crate::project::Project;

pub fn run(args: BuildArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let mut project_args = args.project.clone();
    // The image is what is built here; an image= in the IMGBUILD is for the hosts.
    project_args.options.image = None;
    let mut project = Project::load(&project_args)?;
    project.plan.image = None;
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        // The maintainer scripts' time stamps follow the inputs, not the clock.
        std::env::set_var("SOURCE_DATE_EPOCH", project.build_time.to_string());
    }
    let plan = project.plan.clone();
    let out = args.output.clone().unwrap_or_else(|| PathBuf::from(format!("{}.image.tar.zst", plan.imgname)));
    let near = out.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&near).with_context(|| format!("creating {}", near.display()))?;
    let work = Scratch::new(&near, ".anemos-build")?;
    let root = work.path().join("root");
    std::fs::create_dir(&root)?;
    let phases = crate::imagedir::install_natively(&project, &root, &near, Where::Image).context("the image was not built")?;
    let secrets = if installer::install::secrets_in_image(&plan) { plan.secrets.iter().map(|s| s.name.clone()).collect() } else { Vec::new() };
    let manifest = Manifest {
        format: FORMAT.into(),
        imgname: plan.imgname.clone(),
        target: plan.target.name().into(),
        clamp: project.build_time,
        unpacked: 0,
        entries: 0,
        packages: installed_packages(&root, &plan.target)?,
        secrets,
        plan: plan.clone(),
        sha256: None,
        size: None,
    };
    let t = std::time::Instant::now();
    let tmp = near.join(format!(".{}.anemos-new", out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    let _ = std::fs::remove_file(&tmp);
    // An image with secrets in it is kept like one.
    let mode = if manifest.secrets.is_empty() { 0o644 } else { 0o600 };
    let written = crate::imagefile::write(&root, &tmp, manifest, args.level, mode);
    drop(work);
    let manifest = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    let json = out.with_file_name(format!("{}.json", out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    crate::private::write_atomic(&json, &serde_json::to_vec_pretty(&manifest)?, 0o644)?;
    let sha = manifest.sha256.clone().unwrap_or_default();
    let size = manifest.size.unwrap_or(0);
    println!(
        "built {} in {:.0} s ({} compressed, {} unpacked, {} entries, {} packages; written in {:.1} s)",
        out.display(),
        started.elapsed().as_secs_f64(),
        installer::units::human_size(size),
        installer::units::human_size(manifest.unpacked),
        manifest.entries,
        manifest.packages.len(),
        t.elapsed().as_secs_f64()
    );
    for (phase, ms) in &phases {
        println!("  {phase:<12} {:>7.1} s", *ms as f64 / 1000.0);
    }
    println!("manifest: {}", json.display());
    println!("to install from it, serve it and pin it in the IMGBUILD (or pass --image URL --image-sha256 …):");
    println!("  image=https://…/{}", out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    println!("  image_sha256={sha}");
    if !manifest.secrets.is_empty() {
        println!("it holds the secrets {} (image_secrets=yes): keep it like them (it is 0600)", manifest.secrets.join(", "));
    }
    Ok(())
}
