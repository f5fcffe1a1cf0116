//! `anemos pxe DIR -o OUTDIR`: the same payload `anemos pack` makes (with a deploy token),
//! inside an initramfs for a named kernel, plus that kernel and an iPXE script, so that a
//! fleet can boot the installer from any HTTP or TFTP server:
//!
//! ```text
//! OUTDIR/vmlinuz         the kernel (a copy of --kernel)
//! OUTDIR/initramfs.img   our init, the kernel's modules (the default set, no host
//!                        autodetection: the target is another machine), the payload; 0600
//! OUTDIR/payload.token   the event endpoint's token; 0600
//! OUTDIR/boot.ipxe       `kernel`, `initrd`, `boot` with URLs relative to the script
//! ```
//!
//! Every file is written under a temporary name and renamed (the script last, so a server
//! never offers a script whose files are not there yet). The same inputs and `--token` give
//! the same bytes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use installer::payload;
use installer::units::human_size;

use crate::cli::{Compression, PxeArgs};
use crate::initramfs::{append, build, with_layout_modules, ModuleChoice, Request};
use crate::private::write_atomic;
use crate::project::Project;

pub const KERNEL_FILE: &str = "vmlinuz";
pub const INITRD_FILE: &str = "initramfs.img";
pub const SCRIPT_FILE: &str = "boot.ipxe";
pub const TOKEN_FILE: &str = "payload.token";

/// The consoles when `--console` is not given: the screen, and the first serial port, where
/// the rescue console then runs (most servers' serial-over-LAN).
const DEFAULT_CONSOLES: &[&str] = &["tty0", "ttyS0,115200"];

pub fn run(args: PxeArgs) -> Result<()> {
    let running = rustix::system::uname().release().to_string_lossy().into_owned();
    let kernel_path = args.kernel.clone().unwrap_or_else(|| PathBuf::from(format!("/boot/vmlinuz-{running}")));
    let kernel = std::fs::read(&kernel_path).with_context(|| format!("reading the kernel {} (name another with --kernel)", kernel_path.display()))?;
    let in_image = bzimage_release(&kernel);
    let release = choose_release(args.kernel_release.as_deref(), in_image.as_deref(), args.modules_dir.as_deref(), &running, &kernel_path)?;
    let consoles: Vec<String> = if args.consoles.is_empty() { DEFAULT_CONSOLES.iter().map(|c| c.to_string()).collect() } else { args.consoles.clone() };
    let cmdline = command_line(&consoles, &args.append)?;
    let token = match &args.token {
        Some(t) => check_token(t)?,
        None => payload::new_token()?,
    };
    let project = Project::load(&args.project)?;
    project.require_image_url("anemos pxe")?;
    let payload = project.payload(Some(token.clone()))?;
    let mut built = build(&Request {
        compression: Compression::Zstd,
        // The payload is appended below (it stays in memory), so the modules its plan
        // needs (btrfs) are named here.
        modules: ModuleChoice::Tree {
            release: Some(release.clone()),
            dir: args.modules_dir.clone(),
            defaults: true,
            extra: with_layout_modules(&args.modules, &project.plan.layout),
            autodetect: Some(false),
        },
        payload: None,
    })?;
    append(&mut built.bytes, &payload);
    let out = &args.output;
    std::fs::create_dir_all(out).with_context(|| format!("creating the output directory {}", out.display()))?;
    write_atomic(&out.join(KERNEL_FILE), &kernel, 0o644)?;
    write_atomic(&out.join(INITRD_FILE), &built.bytes, 0o600)?;
    write_atomic(&out.join(TOKEN_FILE), format!("{token}\n").as_bytes(), 0o600)?;
    write_atomic(&out.join(SCRIPT_FILE), ipxe_script(&project.plan.imgname, &cmdline).as_bytes(), 0o644)?;
    let modules = built.selection.as_ref().map(|s| s.modules.len()).unwrap_or(0);
    println!("wrote {}:", out.display());
    println!("  {KERNEL_FILE:<15} {} (Linux {release}, from {})", human_size(kernel.len() as u64), kernel_path.display());
    println!(
        "  {INITRD_FILE:<15} {} ({modules} modules, payload {} for {}, built {})",
        human_size(built.bytes.len() as u64),
        human_size(payload.len() as u64),
        project.plan.imgname,
        installer::clock::format(installer::clock::from_unix(project.build_time))
    );
    println!("  {SCRIPT_FILE:<15} kernel {KERNEL_FILE} {cmdline}");
    println!("  {TOKEN_FILE:<15} the event endpoint's token (Authorization: Bearer …)");
    print!("{}", serving_note(out));
    Ok(())
}

/// The iPXE script. URLs are relative, so iPXE resolves them against the script's own URL
/// (`http://…/boot.ipxe`, `tftp://…/boot.ipxe`): the directory can be served from anywhere.
/// `initrd=` on the command line names the initrd for kernels booted through the EFI stub.
pub fn ipxe_script(imgname: &str, cmdline: &str) -> String {
    format!(
        "#!ipxe\n\
         # The anemos installer for {imgname}, written by `anemos pxe`. It WIPES the disk its plan names.\n\
         echo anemos: loading the installer for {imgname}\n\
         kernel {KERNEL_FILE} {cmdline}\n\
         initrd {INITRD_FILE}\n\
         boot\n"
    )
}

/// `initrd=… anemos.mode=install`, the consoles, then the user's options (the init takes
/// the last value of an option, so `--append` can override the mode).
fn command_line(consoles: &[String], append: &str) -> Result<String> {
    let mut words = vec![format!("initrd={INITRD_FILE}"), "anemos.mode=install".to_string()];
    for c in consoles {
        if c.is_empty() || !c.chars().all(|ch| ch.is_ascii_graphic()) {
            bail!("--console {c:?}: a console is one word such as ttyS0,115200n8");
        }
        words.push(format!("console={c}"));
    }
    if append.chars().any(|c| c.is_control()) {
        bail!("--append holds a line break or control character; the iPXE script takes one line of kernel options");
    }
    words.extend(append.split_whitespace().map(String::from));
    Ok(words.join(" "))
}

/// A user-given token: it travels in an HTTP header, so printable ASCII without spaces.
fn check_token(t: &str) -> Result<String> {
    if t.len() < 16 || !t.chars().all(|c| c.is_ascii_graphic()) {
        bail!("--token must be at least 16 printable characters without spaces (leave it out for a random one)");
    }
    Ok(t.to_string())
}

/// The kernel release whose modules go in: `--kernel-release`, else what the kernel image
/// says, else the name of `--modules-dir`, else the running kernel's. A kernel image that
/// names another release than the one chosen is refused: its modules would not load.
fn choose_release(explicit: Option<&str>, in_image: Option<&str>, modules_dir: Option<&Path>, running: &str, kernel_path: &Path) -> Result<String> {
    let from_dir = modules_dir.and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned());
    let release = explicit.or(in_image).map(String::from).or(from_dir).unwrap_or_else(|| running.to_string());
    if let Some(image) = in_image {
        if image != release {
            bail!("the kernel {} is Linux {image}, but the modules chosen are for {release}: name the matching --kernel-release/--modules-dir (or the matching --kernel)", kernel_path.display());
        }
    }
    Ok(release)
}

/// The release a bzImage names in its setup header (`kernel_version`, boot protocol 2.00+):
/// the first word of the version string, e.g. `6.1.0-18-amd64`.
pub fn bzimage_release(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let offset = u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?]) as usize;
    if offset == 0 {
        return None;
    }
    let text = image.get(0x200 + offset..)?;
    let text = &text[..text.iter().position(|&b| b == 0)?.min(256)];
    let word = std::str::from_utf8(text).ok()?.split_whitespace().next()?;
    (!word.is_empty()).then(|| word.to_string())
}

/// How to serve the directory, printed at the end.
fn serving_note(out: &Path) -> String {
    let d = out.display();
    format!(
        "\nTo boot machines from it (they WIPE the disk their plan names):\n\
         - HTTP: serve {d} (e.g. `python3 -m http.server -d {d} 8080`) and let iPXE run\n\
         \x20 `chain http://SERVER:8080/{SCRIPT_FILE}` (typed at its prompt, or as the DHCP boot file for iPXE clients).\n\
         - TFTP: copy the files into the TFTP root and hand out {SCRIPT_FILE} as the boot file to iPXE\n\
         \x20 clients (dnsmasq: `dhcp-match=set:ipxe,175` and `dhcp-boot=tag:ipxe,{SCRIPT_FILE}`).\n\
         - QEMU: `-netdev user,id=n0,tftp={d},bootfile={SCRIPT_FILE} -device virtio-net-pci,netdev=n0,bootindex=0`.\n\
         The installer gets its address by DHCP unless the plan or --append says otherwise, and\n\
         serves its events to whoever holds {d}/{TOKEN_FILE}.\n\
         {INITRD_FILE} holds the revealed secrets (mode 0600): let only the boot server read it, on a trusted network.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal bzImage setup header naming `version`.
    fn image(version: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        img[0x300..0x300 + version.len()].copy_from_slice(version);
        img
    }

    #[test]
    fn the_release_comes_from_the_setup_header() {
        assert_eq!(bzimage_release(&image(b"6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP\0")).as_deref(), Some("6.1.0-18-amd64"));
        assert_eq!(bzimage_release(&image(b"\0")), None);
        let mut no_magic = image(b"6.1.0\0");
        no_magic[0x202] = b'X';
        assert_eq!(bzimage_release(&no_magic), None);
        let mut unterminated = image(b"");
        unterminated[0x300..].fill(b'6');
        assert_eq!(bzimage_release(&unterminated), None);
        assert_eq!(bzimage_release(b"short"), None);
    }

    #[test]
    fn the_release_must_match_the_kernel() {
        let k = Path::new("/k");
        assert_eq!(choose_release(None, Some("6.1.0-18-amd64"), None, "6.12.0-1-amd64", k).unwrap(), "6.1.0-18-amd64");
        assert_eq!(choose_release(None, None, Some(Path::new("/m/6.1.0-9")), "run", k).unwrap(), "6.1.0-9");
        assert_eq!(choose_release(None, None, None, "run", k).unwrap(), "run");
        assert_eq!(choose_release(Some("x"), None, Some(Path::new("/m/y")), "run", k).unwrap(), "x");
        let err = choose_release(Some("6.12.0-1-amd64"), Some("6.1.0-18-amd64"), None, "run", k).unwrap_err().to_string();
        assert!(err.contains("/k is Linux 6.1.0-18-amd64") && err.contains("for 6.12.0-1-amd64"), "{err}");
    }

    #[test]
    fn the_script_boots_relative_files_with_the_options() {
        let cmdline = command_line(&["ttyS0,115200".into()], "  anemos.on_failure=reboot quiet ").unwrap();
        assert_eq!(cmdline, "initrd=initramfs.img anemos.mode=install console=ttyS0,115200 anemos.on_failure=reboot quiet");
        let script = ipxe_script("web", &cmdline);
        assert_eq!(
            script.lines().filter(|l| !l.starts_with('#') || l.starts_with("#!")).collect::<Vec<_>>(),
            ["#!ipxe", "echo anemos: loading the installer for web", &format!("kernel vmlinuz {cmdline}"), "initrd initramfs.img", "boot"]
        );
        assert!(command_line(&[], "a\nchain http://evil/").is_err(), "a line break would add script commands");
        assert!(command_line(&["tty S0".into()], "").is_err());
        assert!(check_token("short").is_err() && check_token("sixteen chars ok").is_err());
        assert_eq!(check_token("0123456789abcdef").unwrap(), "0123456789abcdef");
    }
}
