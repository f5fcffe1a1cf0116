//! Initramfs sizes and the time from kernel start to a running init, ours beside Debian's
//! initramfs-tools for the same kernel.
//!
//! Debian's initramfs is the one its own kernel package's postinst builds (default
//! `MODULES=most`) in a chroot made by mmdebstrap from the host's apt sources; it is cached.
//! For the boot comparison both boots end in the same program — our init in probe mode,
//! which prints a ready event with the kernel's uptime: directly as /init of our initramfs,
//! and as /sbin/init on an ext4 root that Debian's initramfs mounts and switches to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anemos_qemu::{cache_dir, Accel, Config, Console, Disk, Kernel, Vm};
use anyhow::{Context, Result};
use installer::event::Event;

use crate::report::{mib, ratio, table};
use crate::util::{anemos_bin, host_apt_sources, init_bin, scratch, sh};

const RUNS: usize = 2;

pub fn run() -> Result<()> {
    let kernel = Kernel::cached()?;
    let dir = scratch("initramfs")?;
    let ours_base = dir.join("base.img");
    let ours_full = dir.join("default.img");
    let anemos = anemos_bin();
    sh(&format!("{} initramfs -o {} --no-modules", anemos.display(), ours_base.display()))?;
    sh(&format!("{} initramfs -o {} --modules-dir {} --no-autodetect", anemos.display(), ours_full.display(), kernel.modules_dir.display()))?;
    let debian = debian_initrd(&kernel)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let debian_size = size(&debian);
    table(
        &["artifact", "size", "goal", "vs Debian initramfs"],
        &[
            vec!["static init (anemos-init)".into(), mib(size(&init_bin())), "≤ 3 MiB".into(), "".into()],
            vec!["initramfs, no modules (zstd)".into(), mib(size(&ours_base)), "≤ 1.5 MiB".into(), ratio(size(&ours_base) as f64, debian_size as f64)],
            vec!["initramfs, default modules (zstd)".into(), mib(size(&ours_full)), "≤ 5 MiB".into(), ratio(size(&ours_full) as f64, debian_size as f64)],
            vec![format!("Debian initramfs-tools, MODULES=most ({})", kernel.release), mib(debian_size), "".into(), "1.00×".into()],
        ],
    );

    let root = debian_root(&dir)?;
    let mut rows = Vec::new();
    let mut ours_all = Vec::new();
    let mut theirs_all = Vec::new();
    for i in 0..RUNS {
        let ours = time_to_ready(&kernel, &ours_full, None, "anemos.mode=probe", &dir.join(format!("ours-{i}.log")))?;
        let theirs = time_to_ready(&kernel, &debian, Some(&root), "root=/dev/vda rw init=/sbin/init anemos.mode=probe", &dir.join(format!("debian-{i}.log")))?;
        ours_all.push(ours);
        theirs_all.push(theirs);
        rows.push(vec![format!("run {}", i + 1), format!("{ours:.2} s"), format!("{theirs:.2} s"), ratio(ours, theirs)]);
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    rows.push(vec!["best".into(), format!("{:.2} s", best(&ours_all)), format!("{:.2} s", best(&theirs_all)), ratio(best(&ours_all), best(&theirs_all))]);
    println!("\n   kernel start → init ready (kernel uptime at the ready event; TCG, 2 vCPUs, 1 GiB):");
    table(&["", "anemos initramfs", "Debian initramfs → switch_root", "ratio"], &rows);
    Ok(())
}

/// Boots and returns the kernel uptime (seconds) of the init's ready event.
fn time_to_ready(kernel: &Kernel, initrd: &Path, root: Option<&Path>, append: &str, log: &Path) -> Result<f64> {
    let mut config = Config::direct(&kernel.vmlinuz, initrd);
    config.accel = Accel::Tcg;
    config.append = format!("{append} anemos.done=poweroff");
    let scratch_disk = log.with_extension("disk");
    match root {
        Some(r) => config.disks.push(Disk { read_only: true, ..Disk::raw(r) }),
        None => {
            sh(&format!("truncate -s 64M {}", scratch_disk.display()))?;
            config.disks.push(Disk::raw(&scratch_disk));
        }
    }
    let mut vm = Vm::start(&config, Console::Capture(log.to_path_buf()))?;
    let ready = vm.expect_event(Duration::from_secs(180), |e| matches!(e, Event::Ready { .. }))?;
    let _ = vm.wait_exit(Duration::from_secs(60));
    let _ = std::fs::remove_file(&scratch_disk);
    match ready {
        Event::Ready { uptime_ms, .. } => Ok(uptime_ms as f64 / 1000.0),
        _ => unreachable!("expect_event returned another event"),
    }
}

/// Debian's own initramfs for `kernel`, built by the kernel package's postinst (cached).
fn debian_initrd(kernel: &Kernel) -> Result<PathBuf> {
    let cached = cache_dir().join(format!("bench/debian-initrd.img-{}", kernel.release));
    if cached.is_file() {
        return Ok(cached);
    }
    let sources = host_apt_sources()?;
    let suite = sh(&format!("awk '/^Suites:/ {{ print $2; exit }} /^deb / {{ print $3; exit }}' {}", sources.display()))?;
    let chroot = scratch("debian-initramfs-chroot")?;
    println!("   building Debian's initramfs for {} with mmdebstrap (once; cached in {})", kernel.release, cached.display());
    sh(&format!("mmdebstrap --quiet --mode=root --variant=apt --include=linux-image-{},initramfs-tools,zstd {} {} {}", kernel.release, suite.trim(), chroot.display(), sources.display()))
        .context("mmdebstrap (the baseline needs network access to the host's apt mirror)")?;
    std::fs::create_dir_all(cached.parent().context("cache path")?)?;
    std::fs::copy(chroot.join(format!("boot/initrd.img-{}", kernel.release)), &cached).context("copying Debian's initrd")?;
    let _ = std::fs::remove_dir_all(&chroot);
    Ok(cached)
}

/// An ext4 root holding only our init as /sbin/init, for Debian's initramfs to switch to.
fn debian_root(dir: &Path) -> Result<PathBuf> {
    let tree = dir.join("root-tree");
    for d in ["sbin", "dev", "proc", "sys", "run", "tmp"] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    std::fs::copy(init_bin(), tree.join("sbin/init")).context("copying the init")?;
    let img = dir.join("root.img");
    sh(&format!("mke2fs -q -t ext4 -d {} {} 64M", tree.display(), img.display()))?;
    Ok(img)
}
