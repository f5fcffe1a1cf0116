//! `make bench`: each section measures anemos beside the baseline tools in the same run and
//! prints them side by side. `anemos-bench [SECTION…]` runs only the named sections;
//! `anemos-bench --measure CMD ARGS…` is the wrapper sections use to read a command tree's
//! peak RSS.

mod bootstrap;
mod codecs;
mod deploy;
mod image;
mod initramfs;
mod install;
mod install_memory;
mod mkfs;
mod report;
mod storage;
mod storage_vm;
mod util;

use std::process::ExitCode;

/// (name, what it compares, function)
type Section = (&'static str, &'static str, fn() -> anyhow::Result<()>);

const SECTIONS: &[Section] = &[
    ("initramfs", "initramfs sizes and time to ready vs Debian's initramfs-tools", initramfs::run),
    ("mkfs", "in-process ext4 vs mke2fs -t ext4: time and bytes written on sparse files", mkfs::run),
    ("bootstrap", "Debian minbase into a directory: anemos vs mmdebstrap vs debootstrap", bootstrap::run),
    ("install", "anemos test examples/debian-minimal phase by phase vs mmdebstrap; least guest memory", install::run),
    ("deploy", "anemos deploy of a running server split by phase; least server memory vs nixos-anywhere's 1 GiB", deploy::run),
    ("storage", "LUKS2 format, LVM metadata, RAID1 superblocks and btrfs in-process vs cryptsetup luksFormat, pvcreate + vgcreate, mdadm --create and mkfs.btrfs; the RAID1 + LUKS2 + btrfs layout stacked in a guest", storage::run),
    ("codecs", "SHA-256 and zstd, xz, gzip decoding through the installer vs sha256sum, zstd, xz, gzip on the same data", codecs::run),
    ("image", "build once, install many: an install from the image vs through the packages, phase by phase; sizes; least memory", image::run),
];

fn main() -> ExitCode {
    // As PID 1 this binary is the init of the storage section's guest.
    if std::process::id() == 1 {
        storage_vm::guest();
    }
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    if wanted.first().map(String::as_str) == Some("--measure") {
        return util::measure_child(&wanted[1..]);
    }
    if let [child, path] = &wanted[..] {
        if child == mkfs::CHILD {
            return match mkfs::child(path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    if let Some(unknown) = wanted.iter().find(|w| !SECTIONS.iter().any(|(n, _, _)| n == w)) {
        let names: Vec<&str> = SECTIONS.iter().map(|(n, _, _)| *n).collect();
        eprintln!("anemos-bench: no section {unknown:?}; the sections are {}", names.join(", "));
        return ExitCode::FAILURE;
    }
    let mut failed = false;
    for (name, about, run) in SECTIONS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        println!("\n== {name}: {about}");
        if let Err(e) = run() {
            println!("   section {name} failed: {e:#}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
