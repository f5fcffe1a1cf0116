//! storage: laying out what `encrypt=`, `volume_group=` and `raid=` need, ours beside the tools a
//! shell installer calls, in the same run, on files of this machine (device-mapper is not
//! used on the host: opening and activating happen only in the installer).
//!
//! - LUKS2: `installer::crypt::luks2::header` written and fsynced, beside `cryptsetup
//!   luksFormat` with the same cipher, key size and Argon2id cost (64 MiB, 4 passes, one
//!   lane), both on a fresh 64 MiB file. Nearly all of either is the Argon2id derivation.
//! - LVM: two physical volumes' labels and the group's metadata (three volumes) written
//!   and fsynced, beside `pvcreate` and `vgcreate` on loop devices of files of the same
//!   size. `lvcreate` needs device-mapper, which the host does not offer, so the baseline
//!   writes the same labels and metadata without the volumes (it does less).
//! - RAID1: two members' md superblocks (both ends zeroed first, as the installer does)
//!   written and fsynced, beside `mdadm --create` of a RAID1 over loop devices of files of
//!   the same size (`--assume-clean`, then `--stop`). mdadm needs the kernel's md driver;
//!   on a host without it the baseline is reported as not measurable, not guessed.
//! - btrfs: the file system made in-process (`installer::fs::btrfs`, fsynced) beside
//!   `mkfs.btrfs` with its defaults, on a fresh sparse 1 GiB file each (btrfs's least
//!   size is 128 MiB, more than the other rows' files).
//! - Then the layout stacked, RAID1 under LUKS2 under btrfs, in a guest that has the
//!   drivers the host lacks ([`crate::storage_vm`]).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use installer::crypt::luks2::{self, Params};
use installer::lvm;
use installer::plan::{Filesystem, PartSize, Volume, VolumeGroup};

use crate::report::{ratio, table};
use crate::util::scratch;

const RUNS: usize = 5;
const SIZE: u64 = 64 << 20;

pub fn run() -> Result<()> {
    let dir = scratch("storage")?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ours.push(time(|| luks_ours(&dir))?);
        theirs.push(time(|| luks_cryptsetup(&dir))?);
    }
    let (lo, lt) = (min(&ours), min(&theirs));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ours.push(time(|| lvm_ours(&dir))?);
        theirs.push(time(|| lvm_tools(&dir))?);
    }
    let (vo, vt) = (min(&ours), min(&theirs));
    let mut ours = Vec::new();
    for _ in 0..RUNS {
        ours.push(time(|| md_ours(&dir))?);
    }
    let mo = min(&ours);
    let mdadm = if md_driver() {
        let mut theirs = Vec::new();
        for _ in 0..RUNS {
            theirs.push(time(|| md_mdadm(&dir))?);
        }
        Some(min(&theirs))
    } else {
        None
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ours.push(time(|| btrfs_ours(&dir))?);
        theirs.push(time(|| btrfs_mkfs(&dir))?);
    }
    let (bo, bt) = (min(&ours), min(&theirs));
    println!("   wall time, best of {RUNS}, on 64 MiB files (btrfs: 1 GiB):");
    table(
        &["layout step", "anemos (in-process)", "baseline", "ratio"],
        &[
            vec!["LUKS2 format (Argon2id 64 MiB × 4)".into(), format!("{lo:.3} s"), format!("{lt:.3} s (cryptsetup luksFormat)"), ratio(lo, lt)],
            vec!["LVM: 2 PVs, a group, 3 volumes".into(), format!("{vo:.3} s"), format!("{vt:.3} s (pvcreate + vgcreate, no volumes)"), ratio(vo, vt)],
            match mdadm {
                Some(mt) => vec!["RAID1 superblocks on 2 members".into(), format!("{mo:.3} s"), format!("{mt:.3} s (mdadm --create --assume-clean, --stop)"), ratio(mo, mt)],
                None => vec!["RAID1 superblocks on 2 members".into(), format!("{mo:.3} s"), "not measurable here: this host's kernel has no md driver (see the guest's table)".into(), "-".into()],
            },
            vec!["btrfs (DUP metadata, free-space tree)".into(), format!("{bo:.3} s"), format!("{bt:.3} s (mkfs.btrfs)"), ratio(bo, bt)],
        ],
    );
    // A failure keeps the guest's console log in the scratch directory.
    let stacked = crate::storage_vm::run(&dir)?;
    let _ = std::fs::remove_dir_all(&dir);
    stacked_table(&stacked);
    Ok(())
}

/// The layout stacked in the guest ([`crate::storage_vm`]), its best round each way.
fn stacked_table(s: &crate::storage_vm::Stacked) {
    let row = |step: &str, o: f64, t: f64, tools: &str| vec![step.to_string(), format!("{o:.2} s"), format!("{t:.2} s ({tools})"), ratio(o, t)];
    let (o, t) = (&s.ours, &s.tools);
    println!("\n   RAID1 over two 1 GiB disks, LUKS2 on the array, btrfs inside, in a QEMU guest (TCG, one vCPU),");
    println!("   the best of {} rounds each way on the same disks:", crate::storage_vm::RUNS);
    table(
        &["layout step", "anemos (in-process)", "baseline", "ratio"],
        &[
            row("RAID1 made and started", o.raid, t.raid, "mdadm --create"),
            row("LUKS2 formatted and opened", o.luks, t.luks, "cryptsetup luksFormat, open"),
            row("btrfs made", o.btrfs, t.btrfs, "mkfs.btrfs"),
            row("the whole layout", o.total(), t.total(), "mdadm + cryptsetup + mkfs.btrfs"),
        ],
    );
}

fn time(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn fresh(path: &Path) -> Result<std::fs::File> {
    let _ = std::fs::remove_file(path);
    let f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(SIZE)?;
    Ok(f)
}

fn luks_ours(dir: &Path) -> Result<()> {
    let mut f = fresh(&dir.join("ours.img"))?;
    let mut key = [0u8; luks2::KEY_BYTES];
    luks2::random(&mut key)?;
    let header = luks2::header(&Params::random(b"bench passphrase", &key, "5f0c4ad2-77a9-4b7e-9a43-0c3e5b6f8e21", "bench")?)?;
    f.write_all(&header)?;
    f.sync_all()?;
    Ok(())
}

/// `cryptsetup luksFormat` with the installer's cipher, key size and Argon2id cost (its
/// constants); the key file and the device follow.
pub fn luks_format_args() -> Vec<String> {
    let args = ["luksFormat", "--batch-mode", "--type", "luks2", "--cipher", luks2::CIPHER, "--key-size"].map(String::from);
    let cost = [
        (luks2::KEY_BYTES * 8).to_string(),
        "--pbkdf".into(),
        "argon2id".into(),
        "--pbkdf-memory".into(),
        luks2::ARGON2_MEMORY_KIB.to_string(),
        "--pbkdf-force-iterations".into(),
        luks2::ARGON2_TIME.to_string(),
        "--pbkdf-parallel".into(),
        luks2::ARGON2_LANES.to_string(),
        "--key-file".into(),
    ];
    args.into_iter().chain(cost).collect()
}

fn luks_cryptsetup(dir: &Path) -> Result<()> {
    let img = dir.join("theirs.img");
    drop(fresh(&img)?);
    std::fs::write(dir.join("key"), b"bench passphrase")?;
    let status = Command::new("cryptsetup").args(luks_format_args()).arg(dir.join("key")).arg(&img).status().context("running cryptsetup (apt install cryptsetup-bin)")?;
    if !status.success() {
        bail!("cryptsetup luksFormat failed: {status}");
    }
    Ok(())
}

fn group() -> VolumeGroup {
    let v = |name: &str, size| Volume { name: name.into(), size, fs: Filesystem::Ext4, mountpoint: None, options: "defaults".into() };
    VolumeGroup { name: "bench".into(), members: vec!["a".into(), "b".into()], volumes: vec![v("root", PartSize::Bytes(40 << 20)), v("swap", PartSize::Percent(20)), v("srv", PartSize::Rest)] }
}

fn lvm_ours(dir: &Path) -> Result<()> {
    let g = group();
    let paths = [dir.join("pv0.img"), dir.join("pv1.img")];
    let pvs: Vec<lvm::Pv> = paths.iter().map(|p| lvm::Pv { device: p.clone(), size: SIZE }).collect();
    let alloc = lvm::allocate(&g, &[SIZE, SIZE])?;
    let ids = lvm::Ids::random(&g, 2, "bench", 0)?;
    let text = lvm::metadata(&g, &pvs, &alloc, &ids);
    for (p, id) in paths.iter().zip(&ids.pvs) {
        let mut f = fresh(p)?;
        f.write_all(&lvm::pv_header(id, SIZE, &text)?)?;
        f.sync_all()?;
    }
    Ok(())
}

fn lvm_tools(dir: &Path) -> Result<()> {
    let mut loops = Vec::new();
    for i in 0..2 {
        let p = dir.join(format!("tools{i}.img"));
        drop(fresh(&p)?);
        let out = Command::new("losetup").args(["--find", "--show"]).arg(&p).output().context("running losetup")?;
        loops.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let devices: Vec<String> = loops.iter().flat_map(|l| ["--devices".to_string(), l.clone()]).collect();
    let run = |cmd: &str, extra: &[&str]| -> Result<()> {
        let status = Command::new(cmd)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .args(&devices)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("running {cmd} (apt install lvm2)"))?;
        if status.success() {
            Ok(())
        } else {
            bail!("{cmd} failed: {status}")
        }
    };
    let result = run("pvcreate", &[&loops[0], &loops[1]]).and_then(|_| run("vgcreate", &["benchvg", &loops[0], &loops[1]]));
    for l in &loops {
        let _ = Command::new("losetup").args(["-d", l]).status();
    }
    result
}

const BTRFS_SIZE: u64 = 1 << 30;

fn btrfs_file(path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(BTRFS_SIZE)?;
    Ok(())
}

fn btrfs_ours(dir: &Path) -> Result<()> {
    let path = dir.join("btrfs-ours.img");
    btrfs_file(&path)?;
    let target = installer::fs::Target::open(&path)?;
    installer::fs::make(installer::fs::FsKind::Btrfs, &target, &installer::fs::FsOptions { label: Some("bench".into()), ..Default::default() })?;
    Ok(())
}

fn btrfs_mkfs(dir: &Path) -> Result<()> {
    let path = dir.join("btrfs-mkfs.img");
    btrfs_file(&path)?;
    let status = Command::new("mkfs.btrfs").args(["-q", "-f", "-L", "bench"]).arg(&path).stdout(std::process::Stdio::null()).status().context("running mkfs.btrfs (apt install btrfs-progs)")?;
    if !status.success() {
        bail!("mkfs.btrfs failed: {status}");
    }
    Ok(())
}

fn md_ours(dir: &Path) -> Result<()> {
    let members = [dir.join("md0.img"), dir.join("md1.img")];
    for m in &members {
        drop(fresh(m)?);
    }
    installer::md::write_superblocks("bench", "bench", installer::plan::RaidLevel::Raid1, &members, 0)?;
    Ok(())
}

/// Whether mdadm can create arrays here: the md driver is loaded or loads.
fn md_driver() -> bool {
    let _ = Command::new("modprobe").arg("md_mod").stderr(std::process::Stdio::null()).status();
    Path::new("/sys/module/md_mod").exists()
}

fn md_mdadm(dir: &Path) -> Result<()> {
    let mut loops = Vec::new();
    for i in 0..2 {
        let p = dir.join(format!("mdadm{i}.img"));
        drop(fresh(&p)?);
        let out = Command::new("losetup").args(["--find", "--show"]).arg(&p).output().context("running losetup")?;
        loops.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let created = Command::new("mdadm")
        .args(["--create", "/dev/md/anemos-bench", "--run", "--assume-clean", "--metadata=1.2", "--level=1", "--raid-devices=2"])
        .args(&loops)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running mdadm (apt install mdadm)")?;
    let _ = Command::new("mdadm").args(["--stop", "/dev/md/anemos-bench"]).stderr(std::process::Stdio::null()).status();
    for l in &loops {
        let _ = Command::new("losetup").args(["-d", l]).status();
    }
    if !created.success() {
        bail!("mdadm --create failed: {created}");
    }
    Ok(())
}
