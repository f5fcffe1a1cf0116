//! `make bench`: each section measures ours beside the baseline tools in the same run.
//! `anemos-bench [SECTION…]` runs the named sections (default: all); `anemos-bench --measure
//! CMD ARGS…` is the wrapper the sections use to read a command tree's peak RSS.

mod bootstrap;
mod initramfs;
mod report;
mod util;

type Section = (&'static str, fn() -> anyhow::Result<()>);

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--measure") {
        return util::measure_child(&args[1..]);
    }
    let sections: &[Section] = &[("initramfs", initramfs::run), ("bootstrap", bootstrap::run)];
    let mut failed = false;
    for (name, run) in sections {
        if !args.is_empty() && !args.iter().any(|a| a == name) {
            continue;
        }
        println!("== {name}");
        if let Err(e) = run() {
            eprintln!("bench section {name} failed: {e:#}");
            failed = true;
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
