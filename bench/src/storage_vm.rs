//! storage, stacked, inside a guest: the layout of issue 15 (RAID1 over two disks, LUKS2 on
//! the array, btrfs inside) laid out by the installer's own code and by mdadm, cryptsetup and
//! mkfs.btrfs, alternately, on the same two virtual disks of one QEMU guest. The guest has
//! the md and device-mapper drivers this host's kernel lacks, so the layers really stack.
//!
//! The guest's `/init` is this bench binary itself (`main` runs [`guest`] when it is PID 1).
//! Its initramfs carries the test kernel's modules (the installer's default set with md,
//! dm-crypt and btrfs) and the host's three tools with the shared libraries `ldd` names.
//! Both sides do what an install does: the arrays start their initial resync (the
//! installer's superblocks ask for it, mdadm --create does it), the LUKS2 cost is the same
//! (Argon2id 64 MiB × 4, one lane), and the shell installer opens what it formatted with
//! `cryptsetup open`, which derives the key a second time; the installer opens with the
//! volume key it still holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anemos_qemu::{Accel, Config, Console, Disk, Kernel, Vm};
use anyhow::{bail, Context, Result};
use installer::initramfs::{base_archive, BaseSpec, ModulesSpec};
use installer::kmod::{self, ModuleIndex};

use crate::util::sh;

/// Rounds in the guest; each lays the layout out once with each side.
pub const RUNS: usize = 3;
/// Each virtual disk (a RAID1 member).
const DISK: u64 = 1 << 30;
/// What the guest prints: a line per side and round, then the end.
const LINE: &str = "ANEMOS-BENCH-STORAGE ";
const DONE: &str = "ANEMOS-BENCH-STORAGE-DONE";
const PASSPHRASE: &[u8] = b"bench passphrase";
/// The host's tools, carried into the guest as /bin/NAME.
const TOOLS: &[&str] = &["mdadm", "cryptsetup", "mkfs.btrfs"];
const LIBS: &str = "/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu";

/// Seconds per step of one layout.
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    pub raid: f64,
    pub luks: f64,
    pub btrfs: f64,
}

impl Steps {
    pub fn total(&self) -> f64 {
        self.raid + self.luks + self.btrfs
    }
}

/// The best round of each side (by total).
#[derive(Debug)]
pub struct Stacked {
    pub ours: Steps,
    pub tools: Steps,
}

/// Boots the guest on two blank disks and returns what it measured.
pub fn run(dir: &Path) -> Result<Stacked> {
    let kernel = Kernel::cached()?;
    let initrd = dir.join("guest-initramfs.img");
    std::fs::write(&initrd, initramfs(&kernel)?).with_context(|| format!("writing {}", initrd.display()))?;
    let mut config = Config::direct(&kernel.vmlinuz, &initrd);
    config.accel = Accel::Tcg;
    config.smp = 1;
    config.append = "quiet panic=-1".into();
    for name in ["vm-a.img", "vm-b.img"] {
        let disk = dir.join(name);
        std::fs::File::create(&disk).and_then(|f| f.set_len(DISK)).with_context(|| format!("creating {}", disk.display()))?;
        config.disks.push(Disk::raw(&disk));
    }
    let log = dir.join("guest.log");
    let mut vm = Vm::start(&config, Console::Capture(log.clone()))?;
    vm.expect(DONE, Duration::from_secs(1800)).with_context(|| format!("the guest did not finish; its console: {}", log.display()))?;
    let _ = vm.wait_exit(Duration::from_secs(60));
    parse(&vm.output_text()).with_context(|| format!("the guest's console: {}", log.display()))
}

/// The guest's lines: `ANEMOS-BENCH-STORAGE ours|tools raid=S luks=S btrfs=S`, then
/// `ANEMOS-BENCH-STORAGE-DONE ok` (or `failed: why`).
fn parse(console: &str) -> Result<Stacked> {
    if let Some(why) = console.lines().find_map(|l| l.trim().strip_prefix(DONE)).filter(|rest| rest.trim() != "ok") {
        bail!("the guest's layout failed:{why}");
    }
    let (mut ours, mut tools): (Vec<Steps>, Vec<Steps>) = (Vec::new(), Vec::new());
    for line in console.lines().filter_map(|l| l.trim().strip_prefix(LINE)) {
        let side = line.split_whitespace().next().unwrap_or_default();
        let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse::<f64>().ok());
        let (Some(raid), Some(luks), Some(btrfs)) = (field("raid"), field("luks"), field("btrfs")) else { bail!("unreadable line {line:?}") };
        match side {
            "ours" => ours.push(Steps { raid, luks, btrfs }),
            "tools" => tools.push(Steps { raid, luks, btrfs }),
            other => bail!("unknown side {other:?} in {line:?}"),
        }
    }
    let best = |v: &[Steps]| v.iter().copied().min_by(|a, b| a.total().total_cmp(&b.total()));
    match (best(&ours), best(&tools)) {
        (Some(ours), Some(tools)) => Ok(Stacked { ours, tools }),
        _ => bail!("the guest printed no complete round"),
    }
}

/// The guest's initramfs: this binary as /init, the modules, the tools and their libraries.
fn initramfs(kernel: &Kernel) -> Result<Vec<u8>> {
    let index = ModuleIndex::load(&kernel.modules_dir)?;
    let extra: Vec<String> = installer::fs::btrfs::MODULES.iter().map(|m| m.to_string()).collect();
    let selection = kmod::select(&index, true, &extra, &[])?;
    let me = std::fs::read(std::env::current_exe()?).context("reading the bench binary")?;
    let modules = ModulesSpec { index: &index, release: &kernel.release, modules: &selection.modules };
    let mut archive = base_archive(&BaseSpec { init: &me, skel: &[], modules: Some(modules) })?;
    // The archive makes the parent directories, and takes a library two tools share twice.
    for tool in TOOLS {
        let path = find_tool(tool)?;
        archive.file(&format!("bin/{tool}"), 0o755, std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?;
        for lib in libraries(&path)? {
            archive.file(&lib, 0o755, std::fs::read(&lib).with_context(|| format!("reading {lib}"))?)?;
        }
    }
    archive.to_bytes()
}

fn find_tool(name: &str) -> Result<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not installed (apt install mdadm cryptsetup-bin btrfs-progs)"))
}

/// The shared libraries and the program interpreter `ldd` names for `program`.
fn libraries(program: &Path) -> Result<Vec<String>> {
    let out = sh(&format!("ldd {}", program.display()))?;
    Ok(out.split_whitespace().filter(|w| w.starts_with('/')).map(str::to_string).collect())
}

/// PID 1 in the guest: lays the layout out [`RUNS`] times each way, prints the lines
/// [`parse`] reads, and powers the guest off.
pub fn guest() -> ! {
    let outcome = guest_rounds();
    match &outcome {
        Ok(()) => println!("{DONE} ok"),
        Err(e) => println!("{DONE} failed: {e:#}"),
    }
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn guest_rounds() -> Result<()> {
    use rustix::mount::{mount, MountFlags};
    for (source, target, fstype) in [("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs"), ("tmpfs", "/run", "tmpfs"), ("tmpfs", "/tmp", "tmpfs")] {
        mount(source, target, fstype, MountFlags::empty(), c"").with_context(|| format!("mounting {target}"))?;
    }
    let names: Vec<&str> = ["virtio_pci", "virtio_blk"].iter().chain(installer::md::MODULES).chain(installer::crypt::MODULES).chain(installer::fs::btrfs::MODULES).copied().collect();
    kmod::load_running(&names).context("loading the modules")?;
    let disks = [PathBuf::from("/dev/vda"), PathBuf::from("/dev/vdb")];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !disks.iter().all(|d| d.exists()) {
        if Instant::now() > deadline {
            bail!("the virtual disks did not appear");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write("/tmp/key", PASSPHRASE)?;
    for _ in 0..RUNS {
        let s = ours(&disks)?;
        println!("{LINE}ours raid={:.3} luks={:.3} btrfs={:.3}", s.raid, s.luks, s.btrfs);
        let s = tools(&disks)?;
        println!("{LINE}tools raid={:.3} luks={:.3} btrfs={:.3}", s.raid, s.luks, s.btrfs);
    }
    Ok(())
}

/// The installer's calls, as its disks phase makes them; closed and stopped afterwards.
fn ours(disks: &[PathBuf]) -> Result<Steps> {
    let t = Instant::now();
    let array = installer::md::create("bench", "bench", installer::plan::RaidLevel::Raid1, disks, 0)?;
    let raid = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let opened = installer::crypt::format_and_open(&array.device, "bench", PASSPHRASE)?;
    let luks = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let target = installer::fs::Target::open(&opened.device)?;
    installer::fs::make(installer::fs::FsKind::Btrfs, &target, &installer::fs::FsOptions { label: Some("bench".into()), ..Default::default() })?;
    drop(target);
    let btrfs = t.elapsed().as_secs_f64();
    installer::crypt::close(&opened)?;
    installer::md::stop(&array.device)?;
    Ok(Steps { raid, luks, btrfs })
}

/// What a shell installer runs for the same layout; closed and stopped afterwards.
fn tools(disks: &[PathBuf]) -> Result<Steps> {
    let t = Instant::now();
    tool("mdadm", &["--create", "/dev/md/tools", "--run", "--metadata=1.2", "--level=1", "--raid-devices=2", &disks[0].to_string_lossy(), &disks[1].to_string_lossy()])?;
    let raid = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut format = crate::storage::luks_format_args();
    format.extend(["/tmp/key".into(), "/dev/md/tools".into()]);
    tool("cryptsetup", &format.iter().map(String::as_str).collect::<Vec<_>>())?;
    tool("cryptsetup", &["open", "--key-file", "/tmp/key", "/dev/md/tools", "tools"])?;
    let luks = t.elapsed().as_secs_f64();
    let t = Instant::now();
    tool("mkfs.btrfs", &["-q", "-f", "-L", "bench", "/dev/mapper/tools"])?;
    let btrfs = t.elapsed().as_secs_f64();
    tool("cryptsetup", &["close", "tools"])?;
    tool("mdadm", &["--stop", "/dev/md/tools"])?;
    Ok(Steps { raid, luks, btrfs })
}

fn tool(tool: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(format!("/bin/{tool}")).args(args).env("LD_LIBRARY_PATH", LIBS).stdin(Stdio::null()).output().with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!("{tool} {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_best_round_of_each_side_and_a_failure_are_read_from_the_console() {
        let console = "[ 1.0] kernel noise\nANEMOS-BENCH-STORAGE ours raid=0.2 luks=3.0 btrfs=0.3\nANEMOS-BENCH-STORAGE tools raid=0.1 luks=7.0 btrfs=0.7\n\
                       ANEMOS-BENCH-STORAGE ours raid=0.1 luks=2.9 btrfs=0.2\nANEMOS-BENCH-STORAGE tools raid=0.1 luks=7.5 btrfs=0.7\nANEMOS-BENCH-STORAGE-DONE ok\n";
        let s = super::parse(console).unwrap();
        assert_eq!((s.ours.raid, s.ours.luks, s.ours.btrfs), (0.1, 2.9, 0.2));
        assert_eq!((s.tools.luks, s.tools.total()), (7.0, 0.1 + 7.0 + 0.7));
        let failed = super::parse("ANEMOS-BENCH-STORAGE-DONE failed: mdadm --create failed\n").unwrap_err();
        assert!(format!("{failed:#}").contains("mdadm --create failed"), "{failed:#}");
        assert!(super::parse("ANEMOS-BENCH-STORAGE-DONE ok\n").is_err(), "no round is no result");
    }
}
