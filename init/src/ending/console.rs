//! The rescue console: a small command loop on the console line, without any shell binary.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use installer::event::{emit, Event};

use super::shutdown;
use crate::cmdline::Action;
use crate::logger;

struct Command {
    name: &'static str,
    args: &'static str,
    help: &'static str,
    run: fn(&[&str]) -> anyhow::Result<()>,
}

const COMMANDS: &[Command] = &[
    Command { name: "help", args: "", help: "list the commands", run: help },
    Command { name: "status", args: "", help: "show the last failure, if any", run: status },
    Command { name: "log", args: "[N]", help: "show the init's log (the last N lines)", run: log_cmd },
    Command { name: "dmesg", args: "[N]", help: "show the kernel's log (the last N records)", run: dmesg },
    Command { name: "ls", args: "[PATH]", help: "list a directory", run: ls },
    Command { name: "cat", args: "PATH", help: "print a file", run: cat },
    Command { name: "mounts", args: "", help: "list mounted filesystems", run: mounts },
    Command { name: "disks", args: "", help: "list disks and partitions", run: disks },
    Command { name: "net", args: "", help: "list network interfaces", run: net },
    Command { name: "modules", args: "", help: "list loaded kernel modules", run: modules },
    Command { name: "options", args: "", help: "list the anemos.* kernel command-line options", run: options },
    Command { name: "retry", args: "", help: "start the install over (after fixing what failed)", run: |_| super::retry() },
    Command { name: "reboot", args: "", help: "sync, unmount and reboot", run: |_| shutdown::asked(Action::Reboot) },
    Command { name: "poweroff", args: "", help: "sync, unmount and power off", run: |_| shutdown::asked(Action::Poweroff) },
];

/// Runs the rescue console forever (until `reboot` or `poweroff`).
pub fn run() -> ! {
    super::STATE.rescue_active.store(true, std::sync::atomic::Ordering::SeqCst);
    emit(Event::Rescue);
    println!();
    println!("anemos rescue console: type `help` for the commands.");
    let _ = status(&[]);
    let stdin = std::io::stdin();
    loop {
        print!("anemos-rescue> ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => {
                // No console input (yet): wait instead of spinning.
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            Ok(_) => {}
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&name, args)) = words.split_first() else { continue };
        match COMMANDS.iter().find(|c| c.name == name) {
            Some(cmd) => {
                if let Err(e) = (cmd.run)(args) {
                    println!("{name}: {e:#}");
                }
            }
            None => println!("unknown command {name:?}; type `help` for the list (there is no shell here)"),
        }
    }
}

fn help(_: &[&str]) -> anyhow::Result<()> {
    for c in COMMANDS {
        println!("  {:<9} {:<7} {}", c.name, c.args, c.help);
    }
    Ok(())
}

fn status(_: &[&str]) -> anyhow::Result<()> {
    match super::last_failure() {
        Some((step, error)) => println!("step {step} failed: {error}"),
        None => println!("no failure recorded"),
    }
    Ok(())
}

fn tail(text: &str, args: &[&str]) -> anyhow::Result<()> {
    let lines: Vec<&str> = text.lines().collect();
    let n = match args.first() {
        Some(a) => a.parse::<usize>().map_err(|_| anyhow::anyhow!("{a:?} is not a number of lines"))?,
        None => lines.len(),
    };
    for line in &lines[lines.len().saturating_sub(n)..] {
        println!("{line}");
    }
    Ok(())
}

fn log_cmd(args: &[&str]) -> anyhow::Result<()> {
    tail(&logger::memory(), args)
}

fn dmesg(args: &[&str]) -> anyhow::Result<()> {
    tail(&crate::kmsg::read_all()?, args)
}

fn ls(args: &[&str]) -> anyhow::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let path = Path::new(args.first().copied().unwrap_or("/"));
    let mut entries: Vec<_> = std::fs::read_dir(path)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(md) = e.path().symlink_metadata() else { continue };
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_fifo() {
            'p'
        } else if ft.is_socket() {
            's'
        } else {
            '-'
        };
        let name = e.file_name().to_string_lossy().into_owned();
        let extra = if ft.is_symlink() { format!(" -> {}", std::fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_default()) } else { String::new() };
        println!("{kind}{:04o} {:>12} {name}{extra}", md.mode() & 0o7777, md.size());
    }
    Ok(())
}

fn cat(args: &[&str]) -> anyhow::Result<()> {
    let path = args.first().ok_or_else(|| anyhow::anyhow!("usage: cat PATH"))?;
    let data = std::fs::read(path)?;
    const LIMIT: usize = 1 << 20;
    print!("{}", String::from_utf8_lossy(&data[..data.len().min(LIMIT)]));
    if data.len() > LIMIT {
        println!("\n[{} more bytes not shown]", data.len() - LIMIT);
    }
    println!();
    Ok(())
}

fn mounts(_: &[&str]) -> anyhow::Result<()> {
    for line in std::fs::read_to_string("/proc/self/mountinfo")?.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else { continue };
        let (target, opts) = (fields.get(4).copied().unwrap_or("?"), fields.get(5).copied().unwrap_or(""));
        let (fstype, source) = (fields.get(sep + 1).copied().unwrap_or("?"), fields.get(sep + 2).copied().unwrap_or("?"));
        println!("{source} on {} type {fstype} ({opts})", installer::mount::unescape(target));
    }
    Ok(())
}

fn disks(_: &[&str]) -> anyhow::Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let disks = installer::disk::inventory(Path::new("/sys"), &mountinfo)?;
    if disks.is_empty() {
        println!("no disks");
    }
    for d in disks {
        println!("{}", installer::disk::describe(&d));
    }
    Ok(())
}

fn net(_: &[&str]) -> anyhow::Result<()> {
    let links = installer::net::links(Path::new("/sys"))?;
    let mut nl = installer::net::Netlink::open()?;
    let indexes = nl.links()?;
    let addresses = nl.addresses()?;
    for l in links {
        println!("{:<10} {:<18} {:<8} mtu {:<5} {}", l.name, l.mac.as_deref().unwrap_or("-"), l.operstate, l.mtu, l.driver.as_deref().unwrap_or(""));
        let index = indexes.iter().find(|i| i.1 == l.name).map(|i| i.0);
        for a in addresses.iter().filter(|a| Some(a.index) == index) {
            println!("           inet {}/{}", a.address, a.prefix);
        }
    }
    for r in nl.routes()? {
        let dst = r.destination.map(|(d, p)| format!("{d}/{p}")).unwrap_or_else(|| "default".into());
        let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        let dev = r.oif.and_then(|o| indexes.iter().find(|i| i.0 == o)).map(|i| format!(" dev {}", i.1)).unwrap_or_default();
        println!("route {dst}{via}{dev}");
    }
    if let Ok(resolv) = std::fs::read_to_string("/etc/resolv.conf") {
        print!("{resolv}");
    }
    Ok(())
}

fn options(_: &[&str]) -> anyhow::Result<()> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    println!("command line: {}", cmdline.trim());
    for o in crate::cmdline::OPTIONS {
        println!("  {}={}  (default {})\n      {}", o.name, o.values, o.default, o.meaning);
    }
    Ok(())
}

fn modules(_: &[&str]) -> anyhow::Result<()> {
    for line in std::fs::read_to_string("/proc/modules")?.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        println!("{:<24} {:>8}  {}", f.first().unwrap_or(&"?"), f.get(1).unwrap_or(&"?"), f.get(3).unwrap_or(&"").trim_end_matches(','));
    }
    Ok(())
}
