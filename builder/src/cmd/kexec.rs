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
    let host = crate::payload_plan::check_against_host(&payload, &args.append)?;
    confirm(&args, &host.text)?;
    let initrd = initramfs(&args, &payload, &release, &host)?;
    let cmdline = command_line(&args.append)?;
    log::info!("loading {} with a {} initramfs (in memory); command line: {cmdline}", kernel_path.display(), installer::units::human_size(initrd.len() as u64));
    let initrd = memfd("anemos-initramfs", &initrd)?;
    load(&kernel, &initrd, &cmdline, &kernel_path)?;
    if args.dry_run {
        installer::sys::kexec_file_load(None, None, "", installer::sys::KEXEC_FILE_UNLOAD).context("unloading after the dry run")?;
        println!("dry run: the kernel and initramfs loaded fine and were unloaded again; nothing else changed");
        return Ok(());
    }
    if args.load_only {
        println!("the installer is loaded; `anemos kexec --exec-loaded` boots it (a reboot discards it)");
        return Ok(());
    }
    execute()
}

/// The installer's initramfs, in memory: our init, the running kernel's modules, the
/// payload, and a small archive with what this host adds — the disks the operator
/// confirmed and, where the plan asks for it (the default), the captured network.
fn initramfs(args: &KexecArgs, payload: &Path, release: &str, host: &crate::payload_plan::HostCheck) -> Result<Vec<u8>> {
    let mut extra = installer::initramfs::Archive::new();
    extra.file(installer::disk::identity::CONFIRMED_FILE, 0o644, serde_json::to_vec_pretty(&host.confirmed)?)?;
    // A plan saying dhcp or static gets what it says.
    if !args.dhcp && host.plan.network == installer::plan::Network::Captured {
        let net = installer::net::capture(Path::new("/etc/resolv.conf")).context("capturing this host's network configuration")?;
        if net.interfaces.is_empty() {
            bail!("this host has no interface with a global address to capture; use --dhcp");
        }
        for i in &net.interfaces {
            log::info!("captured {:?}: {:?}", i.matches, i.method);
        }
        extra.file("anemos/net.json", 0o644, serde_json::to_vec_pretty(&net)?)?;
    }
    let built = build(&Request {
        // Used once: made fast (zstd level 19 takes half a minute here, minutes under TCG).
        compression: Compression::ZstdFast,
        modules: ModuleChoice::Tree { release: Some(release.to_string()), dir: args.modules_dir.clone(), defaults: true, extra: args.modules.clone(), autodetect: Some(true) },
        payload: Some(payload.to_path_buf()),
    })?;
    let mut bytes = built.bytes;
    crate::initramfs::append(&mut bytes, &extra.to_bytes()?);
    Ok(bytes)
}

/// `bytes` in an anonymous memory file, sealed against change: kexec_file_load reads the
/// initramfs from a file descriptor, so it never needs a name in a file system (where the
/// payload's secrets would sit on disk, readable by whoever can reach the path).
fn memfd(name: &str, bytes: &[u8]) -> Result<File> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).context("memfd_create for the initramfs")?;
    let mut file = File::from(fd);
    file.write_all(bytes).context("writing the initramfs to memory")?;
    rustix::fs::fcntl_add_seals(&file, SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL).context("sealing the initramfs")?;
    Ok(file)
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

fn load(kernel: &File, initrd: &File, cmdline: &str, kernel_path: &Path) -> Result<()> {
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
                // kexec-tools opens the initramfs by name: this process's descriptor of the
                // memory file, so it still never touches a file system.
                let initrd_path = format!("/proc/{}/fd/{}", std::process::id(), std::os::fd::AsRawFd::as_raw_fd(initrd));
                let status = std::process::Command::new("kexec")
                    .arg("-l")
                    .arg(kernel_path)
                    .arg(format!("--initrd={initrd_path}"))
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

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

const fn libc_ekeyrejected() -> i32 {
    129
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_initramfs_lives_in_sealed_memory_only() {
        let tmp = std::env::temp_dir();
        let before: Vec<_> = std::fs::read_dir(&tmp).unwrap().filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        let mut f = super::memfd("anemos-test", b"payload bytes").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert!(link.to_string_lossy().starts_with("/memfd:anemos-test"), "{}", link.display());
        let mut back = Vec::new();
        std::io::Seek::rewind(&mut f).unwrap();
        std::io::Read::read_to_end(&mut f, &mut back).unwrap();
        assert_eq!(back, b"payload bytes");
        assert!(std::io::Write::write_all(&mut f, b"x").is_err(), "the memory file is not sealed");
        let after: Vec<_> = std::fs::read_dir(&tmp).unwrap().filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        assert!(after.iter().all(|n| before.contains(n) || !n.to_string_lossy().starts_with("anemos-kexec")), "a file appeared in {}", tmp.display());
    }
}
