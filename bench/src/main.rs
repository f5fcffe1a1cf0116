//! `make bench`: each section measures anemos and the baseline tool in the same run and
//! prints them side by side. `anemos-bench [SECTION…]` runs only the named sections.

mod initramfs;
mod mkfs;
mod report;
mod util;

use std::process::ExitCode;

/// (name, what it compares, function)
type Section = (&'static str, &'static str, fn() -> anyhow::Result<()>);

const SECTIONS: &[Section] = &[
    ("initramfs", "initramfs sizes and time to ready vs Debian's initramfs-tools", initramfs::run),
    ("mkfs", "in-process ext4 vs mke2fs -t ext4: time and bytes written on sparse files", mkfs::run),
];

fn main() -> ExitCode {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
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
