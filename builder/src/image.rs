//! Building makeimg's outputs from a project: `raw` by booting our initramfs in QEMU with
//! the image file as its only disk (no root or loop devices needed on the workstation),
//! `dir` and `tar` by running the same install pipeline natively into a directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anemos_qemu::{choose_accel, Config, Console, Disk, Firmware, Kernel, Net, Ovmf, Vm};
use anyhow::{bail, Context, Result};
use installer::event::Event;
use installer::plan::{Format, Plan};

use crate::cli::{Compression, ProjectArgs};
use crate::initramfs::{build as build_initramfs, ModuleChoice, Request};
use crate::private::Scratch;
use crate::project::Project;

/// The serial number the image disk gets in the build VM (and the selector that finds it).
pub const IMAGE_SERIAL: &str = "anemos-image";

/// What to build.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    /// The project, with the command line's format and mirror overrides.
    pub project: ProjectArgs,
    pub output_dir: PathBuf,
    pub memory_mib: u32,
    /// Where the VM's console log goes.
    pub log: Option<PathBuf>,
    /// More disks for the build VM: (image file, serial).
    pub attach: Vec<(PathBuf, Option<String>)>,
}

/// A finished image and how long its phases took.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    pub plan: Plan,
    pub phases: Vec<(String, u64)>,
    pub total: Duration,
}

pub fn build(req: &ImageRequest) -> Result<Built> {
    let started = Instant::now();
    let mut project = Project::load(&req.project)?;
    // A local image is served on loopback for the build VM (which reaches it as 10.0.2.2).
    let served = project.serve_image("127.0.0.1:0".parse()?)?;
    if let Some(s) = &served {
        project.plan = project.with_image_at(s.url_via("127.0.0.1"));
    }
    std::fs::create_dir_all(&req.output_dir).with_context(|| format!("creating {}", req.output_dir.display()))?;
    let (path, phases) = match project.plan.format.clone() {
        Format::Raw { size } => raw(req, &project, size)?,
        Format::Dir | Format::Tar { .. } => crate::imagedir::build(req, &project)?,
    };
    Ok(Built { path, plan: project.plan, phases, total: started.elapsed() })
}

/// The build VM's initramfs: our init, the test kernel's default modules and the payload
/// (the plan with the mirror as the guest reaches it), in `work`, mode 0600.
fn vm_initramfs(project: &Project, kernel: &Kernel, work: &Scratch) -> Result<PathBuf> {
    let mut vm_plan = project.plan.clone();
    vm_plan.mirror.url = guest_url(&vm_plan.mirror.url);
    vm_plan.mirror.security_url = vm_plan.mirror.security_url.as_deref().map(guest_url);
    if let Some(img) = vm_plan.image.as_mut() {
        img.location = guest_url(&img.location);
    }
    let payload_path = work.write("payload.cpio.zst", &project.payload_of(&vm_plan, None)?)?;
    let built = build_initramfs(&Request {
        // Used once: made fast (zstd level 19 takes half a minute here, minutes under TCG).
        compression: Compression::ZstdFast,
        modules: ModuleChoice::Tree { release: Some(kernel.release.clone()), dir: Some(kernel.modules_dir.clone()), defaults: true, extra: Vec::new(), autodetect: Some(false) },
        payload: Some(payload_path),
    })?;
    work.write("initramfs.img", &built.bytes)
}

fn raw(req: &ImageRequest, project: &Project, size: u64) -> Result<(PathBuf, Vec<(String, u64)>)> {
    let plan = &project.plan;
    if !plan.other_disks.is_empty() {
        bail!(
            "{} lays its layout over {} disks (disk= with raid=), and a raw image is one disk: install such a machine with anemos deploy, kexec or pxe; nothing was built",
            plan.imgname,
            plan.other_disks.len() + 1
        );
    }
    let kernel = Kernel::cached().context("the build VM needs a kernel")?;
    let image = req.output_dir.join(format!("{}.img", plan.imgname));
    // Private, and removed on every way out: it holds the payload (secrets) until the VM
    // has read it.
    let work = Scratch::new(&req.output_dir, ".anemos-work")?;
    let initrd = vm_initramfs(project, &kernel, &work)?;
    let _ = std::fs::remove_file(&image);
    let f = std::fs::File::create(&image).with_context(|| format!("creating {}", image.display()))?;
    f.set_len(size).with_context(|| format!("sizing {} to {size} bytes", image.display()))?;
    drop(f);
    let mut config = Config::direct(&kernel.vmlinuz, &initrd);
    config.accel = choose_accel(&kernel.vmlinuz, &initrd);
    config.memory_mib = req.memory_mib;
    config.disks = vec![Disk { serial: Some(IMAGE_SERIAL.into()), ..Disk::raw(&image) }];
    config.disks.extend(req.attach.iter().map(|(file, serial)| Disk { serial: serial.clone(), ..Disk::raw(file) }));
    config.net = Some(Net::default());
    if installer::bootloader::wants_uefi(plan.bootloader, &plan.layout) {
        config.firmware = Firmware::Uefi(Ovmf::find()?);
    }
    config.append = format!("anemos.target=serial:{IMAGE_SERIAL} anemos.done=poweroff anemos.on_failure=poweroff");
    let log = req.log.clone().unwrap_or_else(|| req.output_dir.join(format!("{}-install.log", plan.imgname)));
    eprintln!("anemos: installing {} into {} in a QEMU guest ({:?}); console log: {}", plan.imgname, image.display(), config.accel, log.display());
    let mut vm = Vm::start(&config, Console::Capture(log.clone()))?;
    let result = follow(&mut vm);
    let status = vm.wait_exit(Duration::from_secs(120));
    drop(work);
    match result {
        Ok(phases) => {
            status?;
            if req.log.is_none() {
                let _ = std::fs::remove_file(&log);
            }
            Ok((image, phases))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&image);
            Err(e.context(format!("the image was not built (removed); the console log is {}", log.display())))
        }
    }
}

/// How long `follow` stays silent before saying that a phase is still running.
const HEARTBEAT: Duration = Duration::from_secs(20);

/// Follows the install's events until it is done or failed, printing each phase, progress
/// at most every few seconds, and a line when a phase has been quiet for a while.
pub fn follow(vm: &mut Vm) -> Result<Vec<(String, u64)>> {
    let mut phases = Vec::new();
    let mut current: Option<(String, Instant)> = None;
    let mut progress = crate::progress::ProgressLines::default();
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let ev = match vm.expect_event(HEARTBEAT, |_| true) {
            Ok(ev) => ev,
            Err(_) if !vm.console_closed() && vm.try_wait()?.is_none() && Instant::now() < deadline => {
                if let Some((phase, since)) = &current {
                    eprintln!("anemos: [{:>6.1} s] {phase}: still running ({:.0} s)", vm.elapsed().as_secs_f64(), since.elapsed().as_secs_f64());
                }
                continue;
            }
            Err(e) => return Err(e.context("following the installer's events")),
        };
        let at = vm.elapsed().as_secs_f64();
        match ev {
            Event::Ready { uptime_ms, .. } => {
                eprintln!("anemos: [{at:>6.1} s] installer ready ({:.1} s after the kernel started)", uptime_ms as f64 / 1000.0);
                phases.push((READY.to_string(), uptime_ms));
            }
            // A phase may announce itself again from inside (the packages install does):
            // one line each, the outer (longer) time kept.
            Event::PhaseStarted { phase } if current.as_ref().is_some_and(|(c, _)| *c == phase) => {}
            Event::PhaseStarted { phase } => {
                eprintln!("anemos: [{at:>6.1} s] {phase} …");
                current = Some((phase, Instant::now()));
            }
            Event::PhaseFinished { phase, ms } if phases.last().is_some_and(|(p, _): &(String, u64)| *p == phase) => {
                if let Some(last) = phases.last_mut() {
                    last.1 = ms;
                }
            }
            Event::PhaseFinished { phase, ms } => {
                eprintln!("anemos: [{at:>6.1} s] {phase} done in {:.1} s", ms as f64 / 1000.0);
                phases.push((phase, ms));
                current = None;
            }
            Event::Progress { phase, done, total, unit } => {
                if let Some(line) = progress.line(&phase, done, total, &unit) {
                    eprintln!("anemos: [{at:>6.1} s]   {phase}: {line}");
                }
            }
            Event::Failed { phase, error, .. } => bail!("the install failed in phase {phase}: {error}"),
            Event::Rescue => bail!("the installer entered its rescue console"),
            Event::Done { .. } => return Ok(phases),
            _ => {}
        }
    }
}

/// The entry of [`Built::phases`] that holds the kernel's uptime when the installer was
/// ready (the initramfs boot), not a phase's duration.
pub const READY: &str = "ready";

/// The guest reaches the host's loopback as 10.0.2.2 (QEMU user networking).
pub fn guest_url(url: &str) -> String {
    for lo in ["://127.0.0.1", "://localhost", "://[::1]"] {
        if let Some(i) = url.find(lo) {
            return format!("{}://10.0.2.2{}", &url[..i], &url[i + lo.len()..]);
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_mirrors_become_the_guest_gateway() {
        assert_eq!(super::guest_url("http://127.0.0.1:3142/debian"), "http://10.0.2.2:3142/debian");
        assert_eq!(super::guest_url("http://localhost/debian"), "http://10.0.2.2/debian");
        assert_eq!(super::guest_url("http://mirror.example/debian"), "http://mirror.example/debian");
    }
}
