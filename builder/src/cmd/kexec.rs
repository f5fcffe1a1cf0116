//! `anemos kexec PAYLOAD`: on the server to be reinstalled, build an initramfs from the
//! running kernel's modules plus the payload and the captured network, load it with
//! kexec_file_load and, after a clean shutdown of the running system, boot into it.

use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::{Compression, KexecArgs};
use crate::initramfs::{build, ModuleChoice, Request};

pub fn run(args: KexecArgs) -> Result<()> {
    let Some(payload) = args.payload.clone() else {
        return exec_loaded();
    };
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    let kernel_path = args.kernel.clone().unwrap_or_else(|| PathBuf::from(format!("/boot/vmlinuz-{release}")));
    let kernel = File::open(&kernel_path).with_context(|| format!("opening the kernel {} (name another with --kernel)", kernel_path.display()))?;
    let (plan, text) = crate::payload_plan::check_against_host(&payload)?;
    confirm(&args, &text)?;
    let work = tempdir()?;
    let mut extras = Vec::new();
    // The captured configuration only where the plan asks for it (the default): a plan
    // saying dhcp or static gets what it says.
    if !args.dhcp && plan.network == installer::plan::Network::Captured {
        let net = installer::net::capture(Path::new("/etc/resolv.conf")).context("capturing this host's network configuration")?;
        if net.interfaces.is_empty() {
            bail!("this host has no interface with a global address to capture; use --dhcp");
        }
        for i in &net.interfaces {
            log::info!("captured {:?}: {:?}", i.matches, i.method);
        }
        extras.push(net_archive(&work, &net)?);
    }
    let built = build(&Request {
        // Used once: made fast (zstd level 19 takes half a minute here, minutes under TCG).
        compression: Compression::ZstdFast,
        modules: ModuleChoice::Tree { release: Some(release.clone()), dir: args.modules_dir.clone(), defaults: true, extra: args.modules.clone(), autodetect: Some(true) },
        payload: Some(payload.clone()),
    })?;
    let initrd_path = work.join("initramfs.img");
    let mut bytes = built.bytes;
    for extra in extras {
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        bytes.extend(std::fs::read(&extra)?);
    }
    std::fs::write(&initrd_path, &bytes).with_context(|| format!("writing {}", initrd_path.display()))?;
    let cmdline = command_line(&args.append)?;
    log::info!("loading {} with a {} initramfs; command line: {cmdline}", kernel_path.display(), installer::disk::human_size(bytes.len() as u64));
    let initrd = File::open(&initrd_path)?;
    load(&kernel, &initrd, &cmdline, &kernel_path, &initrd_path)?;
    if args.dry_run {
        installer::sys::kexec_file_load(None, None, "", installer::sys::KEXEC_FILE_UNLOAD).context("unloading after the dry run")?;
        println!("dry run: the kernel and initramfs loaded fine and were unloaded again; nothing else changed");
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&work);
    if args.load_only {
        println!("the installer is loaded; `anemos kexec --exec-loaded` boots it (a reboot discards it)");
        return Ok(());
    }
    execute()
}

/// Boots what `--load-only` left loaded.
fn exec_loaded() -> Result<()> {
    let loaded = std::fs::read_to_string("/sys/kernel/kexec_loaded").context("reading /sys/kernel/kexec_loaded")?;
    if loaded.trim() != "1" {
        bail!("no kexec kernel is loaded: run `anemos kexec --load-only PAYLOAD` first");
    }
    execute()
}

/// The console settings of the running system, so the installer's output appears where
/// the operator looks, plus the install mode and what the user adds.
fn command_line(append: &str) -> Result<String> {
    let current = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let mut words: Vec<String> = current.split_whitespace().filter(|w| w.starts_with("console=")).map(String::from).collect();
    words.push("anemos.mode=install".into());
    words.extend(append.split_whitespace().map(String::from));
    Ok(words.join(" "))
}

fn load(kernel: &File, initrd: &File, cmdline: &str, kernel_path: &Path, initrd_path: &Path) -> Result<()> {
    match installer::sys::kexec_file_load(Some(kernel), Some(initrd), cmdline, 0) {
        Ok(()) => Ok(()),
        Err(e) => {
            let lockdown = std::fs::read_to_string("/sys/kernel/security/lockdown").unwrap_or_default();
            if lockdown.contains("[integrity]") || lockdown.contains("[confidentiality]") || e.raw_os_error() == Some(libc_ekeyrejected()) {
                bail!(
                    "the kernel refused to load {} ({e}): Secure Boot lockdown ({}) only allows kexec of signed kernels. Use a signed kernel (--kernel), disable Secure Boot, or boot the initramfs another way (anemos pxe)",
                    kernel_path.display(),
                    lockdown.trim()
                );
            }
            if which("kexec").is_some() {
                log::warn!("kexec_file_load failed ({e}); falling back to kexec-tools (kexec_load)");
                let status = std::process::Command::new("kexec")
                    .arg("-l")
                    .arg(kernel_path)
                    .arg(format!("--initrd={}", initrd_path.display()))
                    .arg(format!("--command-line={cmdline}"))
                    .status()
                    .context("running kexec -l")?;
                if status.success() {
                    return Ok(());
                }
                bail!("kexec -l failed too ({status})");
            }
            bail!("kexec_file_load of {} failed: {e} (install kexec-tools for the kexec_load fallback)", kernel_path.display())
        }
    }
}

/// Reboots into the loaded kernel: through systemd when it runs (services stop cleanly,
/// filesystems are unmounted), else directly after a sync.
fn execute() -> Result<()> {
    rustix::fs::sync();
    println!("booting into the installer now; follow it with `anemos deploy` or on the console");
    let _ = std::io::stdout().flush();
    if Path::new("/run/systemd/system").exists() {
        let status = std::process::Command::new("systemctl").arg("kexec").status().context("running systemctl kexec")?;
        if !status.success() {
            bail!("systemctl kexec failed ({status})");
        }
        return Ok(());
    }
    rustix::system::reboot(rustix::system::RebootCommand::Kexec).context("reboot(KEXEC)")?;
    Ok(())
}

fn confirm(args: &KexecArgs, plan: &str) -> Result<()> {
    println!("{plan}");
    if args.yes {
        return Ok(());
    }
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").context("no terminal to confirm on: pass --yes")?;
    let mut w = tty.try_clone()?;
    write!(w, "This wipes the disks above. Type the host name ({host}) to go on: ")?;
    let mut answer = String::new();
    std::io::BufReader::new(tty).read_line(&mut answer)?;
    if answer.trim() != host {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

/// A small newc archive with /anemos/net.json.
fn net_archive(work: &Path, net: &installer::net::NetConfig) -> Result<PathBuf> {
    let mut a = installer::initramfs::Archive::new();
    a.file("anemos/net.json", 0o644, serde_json::to_vec_pretty(net)?)?;
    let path = work.join("net.cpio");
    std::fs::write(&path, a.to_bytes()?)?;
    Ok(path)
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("anemos-kexec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

const fn libc_ekeyrejected() -> i32 {
    129
}
