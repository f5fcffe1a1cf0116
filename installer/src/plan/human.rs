//! The plan as a person reads it before a destructive act: what is wiped and created on
//! which disk, what is kept, what is installed, and what goes into the new system.

use std::fmt::{self, Display, Write};

use crate::units::human_size;

use super::types::*;

impl Display for DiskSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskSelector::Path(p) => write!(f, "{p}"),
            DiskSelector::ById(n) => write!(f, "/dev/disk/by-id/{n}"),
            DiskSelector::Serial(s) => write!(f, "serial:{s}"),
            DiskSelector::Wwn(w) => write!(f, "wwn:{w}"),
            DiskSelector::Size(b) => write!(f, "size:{} (±1 %)", human_size(*b)),
        }
    }
}

impl Display for PartSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartSize::Bytes(b) => write!(f, "{}", human_size(*b)),
            PartSize::Percent(p) => write!(f, "{p} %"),
            PartSize::Rest => write!(f, "rest"),
        }
    }
}

impl Display for PartKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartKind::Esp => write!(f, "esp"),
            PartKind::BiosBoot => write!(f, "bios-boot"),
            PartKind::Root => write!(f, "root"),
            PartKind::Swap => write!(f, "swap"),
            PartKind::Linux => write!(f, "linux"),
            PartKind::Home => write!(f, "home"),
            PartKind::Srv => write!(f, "srv"),
            PartKind::Lvm => write!(f, "lvm"),
            PartKind::Guid(g) => write!(f, "{g}"),
        }
    }
}

impl Display for PreserveTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreserveTarget::Disk { disk } => write!(f, "disk {disk}"),
            PreserveTarget::Partition { disk, number } => write!(f, "partition {number} of {disk}"),
            PreserveTarget::PartLabel { label } => write!(f, "PARTLABEL={label}"),
            PreserveTarget::Uuid { uuid } => write!(f, "UUID={uuid}"),
        }
    }
}

impl Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Raw { size } => write!(f, "raw image of {}", human_size(*size)),
            Format::Tar { compression } => write!(f, "tar archive (.tar.{})", compression.suffix()),
            Format::Dir => write!(f, "directory"),
        }
    }
}

impl Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::Dhcp => write!(f, "DHCP"),
            Network::Captured => write!(f, "captured (the running server's static configuration, taken by `anemos kexec`)"),
            Network::Static { interfaces } => {
                let parts: Vec<String> = interfaces
                    .iter()
                    .map(|i| {
                        let iface = match &i.iface {
                            IfaceSelector::Name(n) => n.clone(),
                            IfaceSelector::Mac(m) => format!("mac {m}"),
                        };
                        let mut s = format!("{iface} {}/{}", i.address, i.prefix);
                        if let Some(gw) = i.gateway {
                            s += &format!(" gateway {gw}");
                        }
                        if !i.dns.is_empty() {
                            let dns: Vec<String> = i.dns.iter().map(|d| d.to_string()).collect();
                            s += &format!(" dns {}", dns.join(","));
                        }
                        s
                    })
                    .collect();
                write!(f, "static: {}", parts.join("; "))
            }
        }
    }
}

/// The whole plan, one labelled line per subject, disks first.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = render_into(&mut out, plan);
    out
}

/// What an image install adds to each host's part when the layout is opened at boot: the
/// initramfs made again, with what it must know of this host.
fn initramfs_again(l: &Layout) -> String {
    if !l.opened_at_boot() {
        return String::new();
    }
    let mut with = Vec::new();
    if !l.raid.is_empty() {
        with.push("mdadm.conf");
    }
    if !l.encrypted.is_empty() {
        with.push("crypttab and key files");
    }
    if l.volume_group.is_some() {
        with.push("the volume group");
    }
    format!(", the initramfs (with {})", with.join(", "))
}

fn render_into(o: &mut String, p: &Plan) -> fmt::Result {
    let target = match &p.target {
        Target::Debian { suite } => format!("debian {suite}"),
        t => t.name().to_string(),
    };
    writeln!(o, "plan for {} (target {target}, host name {})", p.imgname, p.hostname)?;
    let origin = match &p.format_origin {
        FormatOrigin::Imgbuild { line: Some(l) } => format!("IMGBUILD:{l}"),
        FormatOrigin::Imgbuild { line: None } => "IMGBUILD".into(),
        FormatOrigin::CommandLine => "--format".into(),
        FormatOrigin::Default => "default".into(),
    };
    writeln!(o, "  image format  {} (from {origin})", p.format)?;
    render_disks(o, p)?;
    match &p.image {
        Some(img) => {
            writeln!(
                o,
                "  image         {} (SHA-256 {}): laid onto the new file systems instead of the packages; templates, host name, fstab, ssh host keys{} and the boot loader made on each host",
                img.location,
                img.sha256.as_deref().unwrap_or("computed when it is served"),
                initramfs_again(&p.layout)
            )?;
            let needs: Vec<&str> = crate::packages::profile::of(&p.target).storage_packages(p).into_iter().map(|(p, _)| p).collect();
            if !needs.is_empty() {
                writeln!(o, "                the image must hold {} (checked before the wipe)", needs.join(" "))?;
            }
        }
        None => {
            let n = p.packages.len();
            writeln!(o, "  packages      {n}: {}", if n == 0 { "(none beyond the base system)".into() } else { p.packages.join(" ") })?;
            let added = crate::packages::profile::of(&p.target).added(p);
            if !added.is_empty() {
                writeln!(o, "  and adds      {}", added.join("; "))?;
            }
        }
    }
    let cmdline = if p.kernel_cmdline.inherit_console { format!("{} + the installer's console=", p.kernel_cmdline.args) } else { p.kernel_cmdline.args.clone() };
    // The firmware does not matter for the hybrid: it is chosen by the layout alone.
    let mut loader = match crate::bootloader::choose(p.bootloader, &p.layout, false) {
        Some(crate::bootloader::Kind::GrubHybrid) => "grub, for BIOS and UEFI (bios-boot and esp)".to_string(),
        _ => p.bootloader.name().to_string(),
    };
    if !p.layout.raid.is_empty() && p.bootloader != crate::plan::Bootloader::None {
        loader += ", on every disk (either boots alone)";
    }
    writeln!(o, "  bootloader    {loader}; kernel command line: {cmdline}")?;
    let from = match &p.mirror.origin {
        MirrorOrigin::Imgbuild { line: Some(l) } => format!("IMGBUILD:{l}"),
        MirrorOrigin::Imgbuild { line: None } => "IMGBUILD".into(),
        MirrorOrigin::Host { file } => format!("this host's {file}"),
        MirrorOrigin::CommandLine => "--mirror".into(),
    };
    writeln!(o, "  mirror        {} (from {from})", p.mirror.url)?;
    if let Some(s) = &p.mirror.security_url {
        writeln!(o, "  security      {s}")?;
    }
    writeln!(o, "  proxy         {}", p.proxy.as_deref().unwrap_or("none"))?;
    writeln!(o, "  network       {}", p.network)?;
    render_inputs(o, p)?;
    let on_fail = match p.on_failure {
        OnFailure::Rescue => "rescue console",
        OnFailure::Reboot => "reboot",
        OnFailure::Poweroff => "power off",
    };
    let on_ok = match p.on_success {
        OnSuccess::Reboot => "reboot",
        OnSuccess::Kexec => "kexec into the new kernel",
        OnSuccess::Poweroff => "power off",
    };
    writeln!(o, "  provision()   {}", if p.functions.provision { "yes, in the new system's chroot" } else { "none" })?;
    writeln!(o, "  afterwards    {on_ok}; on failure: {on_fail}; status on port {}", p.status_port)
}

fn render_disks(o: &mut String, p: &Plan) -> fmt::Result {
    let disk = match &p.disk {
        Some(d) => std::iter::once(d).chain(&p.other_disks).map(|d| d.to_string()).collect::<Vec<_>>().join(" and "),
        None => "the only non-removable disk (the install stops if there are several)".into(),
    };
    let table = match p.layout.table {
        TableType::Gpt => "gpt",
        TableType::Msdos => "msdos",
    };
    let each = if p.other_disks.is_empty() { "" } else { " on each" };
    writeln!(o, "  WIPED         {disk}: every byte may be lost; a new {table} table{each} with:")?;
    for part in &p.layout.partitions {
        let mp = part.mountpoint.as_deref().unwrap_or("-");
        let boot = if part.bootable { " (bootable)" } else { "" };
        let crypt = match p.layout.encryption(&part.name) {
            Some(e) => format!(" (LUKS2, secret {}, {})", e.secret, if e.unlock == Unlock::Unattended { "unlocked at boot by a key file" } else { "passphrase asked at boot" }),
            None => String::new(),
        };
        let raid = match p.layout.raid_of(&part.name) {
            Some(r) => format!(" ({} array /dev/md/{} across the disks)", r.level.name(), part.name),
            None if !p.other_disks.is_empty() && part.kind == PartKind::Esp => " (a copy on each disk)".into(),
            None => String::new(),
        };
        writeln!(o, "                  {:<10} {:>9}  {:<9} {:<5} {mp}{boot}{raid}{crypt}", part.name, part.size.to_string(), part.kind.to_string(), part.fs.name())?;
    }
    if let Some(g) = &p.layout.volume_group {
        writeln!(o, "  LVM           volume group {} over {}, with:", g.name, g.members.join(", "))?;
        for v in &g.volumes {
            writeln!(o, "                  {:<10} {:>9}  {:<9} {:<5} {}", v.name, v.size.to_string(), "volume", v.fs.name(), v.mountpoint.as_deref().unwrap_or("-"))?;
        }
    }
    for s in &p.layout.subvolumes {
        let options = if s.options == "defaults" { String::new() } else { format!(" ({})", s.options) };
        writeln!(o, "  btrfs         subvolume {} on {}, mounted at {}{options}", s.name, s.filesystem, s.mountpoint.as_deref().unwrap_or("- (not mounted)"))?;
    }
    if p.preserve.is_empty() {
        writeln!(o, "  preserved     nothing")?;
    }
    for k in &p.preserve {
        let mount = match &k.mountpoint {
            Some(m) => format!(", mounted at {m} ({} {})", k.fstype, k.options),
            None => String::new(),
        };
        writeln!(o, "  preserved     {}: never written{mount}", k.what)?;
    }
    for m in &p.mounts {
        writeln!(o, "  fstab         {} {} {} {} {} {}", m.spec, m.file, m.vfstype, m.options, m.freq, m.passno)?;
    }
    Ok(())
}

fn render_inputs(o: &mut String, p: &Plan) -> fmt::Result {
    for t in &p.inputs {
        writeln!(o, "  files         {}/: files {}, symlinks {}, patches {}, templates {}", t.source, t.files, t.symlinks, t.patches.len(), t.templates.len())?;
    }
    if p.inputs.is_empty() {
        writeln!(o, "  files         none")?;
    }
    if !p.hostconf.is_empty() {
        writeln!(o, "  hostconf      keyring (from this host)")?;
    }
    for f in &p.project_files {
        writeln!(o, "  project file  {f}")?;
    }
    let secrets: Vec<String> = p
        .secrets
        .iter()
        .map(|s| {
            let src = match s.source {
                SecretSource::Age => "age",
                SecretSource::Plain => "plain file",
                SecretSource::Command => "secrets_command",
            };
            format!("{} ({src})", s.name)
        })
        .collect();
    writeln!(o, "  secrets       {}", if secrets.is_empty() { "none".into() } else { secrets.join(", ") })
}
