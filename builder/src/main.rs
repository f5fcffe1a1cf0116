//! `anemos`: the host-side CLI. `main` only sets up logging and dispatches one subcommand to
//! one function; each subcommand lives in `cmd/`.

mod cli;
mod cmd;
mod compress;
mod deploy;
mod embedded;
mod image;
mod imagedir;
mod imagefile;
mod initramfs;
mod payload_plan;
mod private;
mod progress;
mod project;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    env_logger::Builder::new()
        .filter_level(if cli.verbose { log::LevelFilter::Debug } else { log::LevelFilter::Info })
        // Directory builds run the install here: no secret value reaches this output either.
        .format(|buf, record| {
            use std::io::Write;
            writeln!(buf, "[{:<5}] {}", record.level(), installer::redact::redact(&record.args().to_string()))
        })
        .init();
    let result = match cli.command {
        cli::Command::Initramfs(args) => cmd::initramfs::run(args),
        cli::Command::Boot(args) => cmd::boot::run(args),
        cli::Command::Disks(args) => cmd::disks::run(args),
        cli::Command::Check(args) => cmd::check::run(args),
        cli::Command::Pack(args) => cmd::pack::run(args),
        cli::Command::Build(args) => cmd::build::run(args),
        cli::Command::Bootstrap(args) => cmd::bootstrap::run(args),
        cli::Command::Image(args) => cmd::image::run(args),
        cli::Command::Test(args) => cmd::test::run(args),
        cli::Command::Kexec(args) => cmd::kexec::run(args),
        cli::Command::Deploy(args) => cmd::deploy::run(args),
        cli::Command::Rescue(args) => cmd::rescue::run(args),
        cli::Command::Pxe(args) => cmd::pxe::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("anemos: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
