//! VM profiles and the QEMU command line they make.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::Accel;

/// The firmware the VM boots through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF. A private copy of the variable store is made for each VM.
    Uefi(Ovmf),
}

/// Where OVMF's code and variable-store template are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ovmf {
    pub code: PathBuf,
    pub vars: PathBuf,
}

impl Ovmf {
    /// Finds OVMF as Debian's `ovmf` package installs it.
    pub fn find() -> Result<Ovmf> {
        for (code, vars) in [("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"), ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd")] {
            if Path::new(code).is_file() && Path::new(vars).is_file() {
                return Ok(Ovmf { code: code.into(), vars: vars.into() });
            }
        }
        bail!("UEFI firmware not found in /usr/share/OVMF: install the `ovmf` package")
    }
}

/// A disk image attached as a virtio block device.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    /// `raw` or `qcow2`.
    pub format: String,
    pub serial: Option<String>,
    pub read_only: bool,
}

impl Disk {
    pub fn raw(path: impl Into<PathBuf>) -> Self {
        Disk { path: path.into(), format: "raw".into(), serial: None, read_only: false }
    }
}

/// User-mode networking: the guest reaches the host's loopback as 10.0.2.2.
#[derive(Debug, Clone, Default)]
pub struct Net {
    /// (host port on 127.0.0.1, guest port) TCP forwards.
    pub forwards: Vec<(u16, u16)>,
    pub mac: Option<String>,
    /// A directory QEMU serves over TFTP at 10.0.2.2.
    pub tftp: Option<PathBuf>,
    /// The boot file QEMU's DHCP server names (relative to `tftp`); with no kernel given,
    /// the VM then boots from the network through the NIC's iPXE option ROM.
    pub bootfile: Option<String>,
}

/// TCG with a 64 MiB translation cache instead of QEMU's default 1 GiB. With the large
/// cache, translated blocks pile up on the physical pages of code that ran at many
/// addresses (shared libraries in short-lived processes, as in an initramfs that waits for
/// a missing disk), and every later write to those pages walks them in QEMU's
/// `page_collection_lock`: a Debian guest then forked and zeroed pages so slowly that
/// systemd's generators passed their 90 s limit and no fstab mount was made (measured
/// with perf: 87 % of QEMU's time there). A small cache is flushed whole instead; the
/// same boot ran the generators in 3 s instead of 125 s, and the next boot of that system
/// queued its jobs 21 s after the kernel started instead of 42 s.
const TCG: &str = "tcg,thread=multi,tb-size=64";

/// A VM profile.
#[derive(Debug, Clone)]
pub struct Config {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    /// Kernel command line (direct kernel boot only); `console=ttyS0,115200` is prepended.
    pub append: String,
    pub disks: Vec<Disk>,
    pub net: Option<Net>,
    pub firmware: Firmware,
    pub memory_mib: u32,
    pub smp: u32,
    pub accel: Accel,
    pub extra: Vec<String>,
    /// Let a guest reboot reset the machine (a server that reboots into its new system)
    /// instead of ending QEMU.
    pub allow_reboot: bool,
}

impl Config {
    /// A direct kernel boot with the serial console, 1 GiB, 2 CPUs, TCG, BIOS.
    pub fn direct(kernel: impl Into<PathBuf>, initrd: impl Into<PathBuf>) -> Self {
        Config {
            kernel: Some(kernel.into()),
            initrd: Some(initrd.into()),
            append: String::new(),
            disks: Vec::new(),
            net: None,
            firmware: Firmware::Bios,
            memory_mib: 1024,
            smp: 2,
            accel: Accel::Tcg,
            extra: Vec::new(),
            allow_reboot: false,
        }
    }

    /// A boot from the first disk through the firmware (no kernel given).
    pub fn from_disk(disk: Disk, firmware: Firmware) -> Self {
        Config { kernel: None, initrd: None, disks: vec![disk], firmware, ..Config::direct("", "") }
    }

    /// A network boot (PXE through iPXE, BIOS): QEMU's DHCP hands out `bootfile` from the
    /// TFTP directory `tftp` (an iPXE script such as `anemos pxe` writes, or a binary).
    pub fn netboot(tftp: impl Into<PathBuf>, bootfile: &str) -> Self {
        let net = Net { tftp: Some(tftp.into()), bootfile: Some(bootfile.to_string()), ..Net::default() };
        Config { kernel: None, initrd: None, net: Some(net), ..Config::direct("", "") }
    }

    /// Whether the firmware boots from the network rather than the first disk.
    fn boots_from_net(&self) -> bool {
        self.kernel.is_none() && self.net.as_ref().is_some_and(|n| n.bootfile.is_some())
    }

    /// The QEMU command. `vars` is this VM's private copy of the UEFI variable store.
    pub fn command(&self, vars: Option<&Path>) -> Result<Command> {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-machine", "q35", "-nodefaults", "-no-user-config", "-display", "none"]);
        if !self.allow_reboot {
            c.arg("-no-reboot");
        }
        c.args(["-serial", "stdio", "-monitor", "none"]);
        match self.accel {
            Accel::Tcg => c.args(["-accel", TCG, "-cpu", "max"]),
            Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        };
        c.arg("-m").arg(self.memory_mib.to_string());
        c.arg("-smp").arg(self.smp.to_string());
        c.args(["-device", "virtio-rng-pci"]);
        if let Firmware::Uefi(ovmf) = &self.firmware {
            let Some(vars) = vars else { bail!("a UEFI VM needs its own copy of the variable store") };
            c.arg("-drive").arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", ovmf.code.display()));
            c.arg("-drive").arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
        }
        if let Some(kernel) = &self.kernel {
            c.arg("-kernel").arg(kernel);
            if let Some(initrd) = &self.initrd {
                c.arg("-initrd").arg(initrd);
            }
            c.arg("-append").arg(format!("console=ttyS0,115200 {}", self.append).trim_end());
        }
        for (i, d) in self.disks.iter().enumerate() {
            // werror/rerror=report: a host disk that fills up gives the guest I/O errors it
            // reports, where QEMU's default would pause it silently (no monitor resumes it).
            let mut spec = format!("file={},format={},if=none,id=d{i},discard=unmap,werror=report,rerror=report", d.path.display(), d.format);
            if d.read_only {
                spec += ",readonly=on";
            }
            c.arg("-drive").arg(spec);
            let mut dev = format!("virtio-blk-pci,drive=d{i}");
            if i == 0 && self.kernel.is_none() && !self.boots_from_net() {
                dev += ",bootindex=0";
            }
            if let Some(s) = &d.serial {
                dev += &format!(",serial={s}");
            }
            c.arg("-device").arg(dev);
        }
        if let Some(net) = &self.net {
            let mut spec = "user,id=n0".to_string();
            for (host, guest) in &net.forwards {
                spec += &format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}");
            }
            if let Some(dir) = &net.tftp {
                spec += &format!(",tftp={}", option_value(&dir.to_string_lossy())?);
            }
            if let Some(file) = &net.bootfile {
                spec += &format!(",bootfile={}", option_value(file)?);
            }
            c.arg("-netdev").arg(spec);
            let mut dev = "virtio-net-pci,netdev=n0".to_string();
            if let Some(mac) = &net.mac {
                dev += &format!(",mac={mac}");
            }
            if self.boots_from_net() {
                dev += ",bootindex=0";
            }
            c.arg("-device").arg(dev);
        }
        c.args(&self.extra);
        Ok(c)
    }
}

/// A value inside a QEMU `-netdev` option list, where `,` separates options.
fn option_value(v: &str) -> Result<&str> {
    if v.contains(',') {
        bail!("{v:?} contains a comma, which QEMU's option syntax cannot take here; use another path");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(c: &Config) -> Vec<String> {
        c.command(None).unwrap().get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_netboot_serves_tftp_and_boots_the_nic_first() {
        let mut c = Config::netboot("/srv/pxe", "boot.ipxe");
        c.disks = vec![Disk::raw("/tmp/disk.img")];
        let a = args(&c);
        assert!(a.contains(&"user,id=n0,tftp=/srv/pxe,bootfile=boot.ipxe".to_string()), "{a:?}");
        assert!(a.contains(&"virtio-net-pci,netdev=n0,bootindex=0".to_string()), "{a:?}");
        assert!(a.iter().any(|x| x.starts_with("virtio-blk-pci") && !x.contains("bootindex")), "{a:?}");
        assert!(!a.contains(&"-kernel".to_string()));
        assert!(Config::netboot("/srv/a,b", "boot.ipxe").command(None).is_err());
        // A disk boot is unchanged: the disk first, the NIC without a boot index.
        let mut d = Config::from_disk(Disk::raw("/tmp/disk.img"), Firmware::Bios);
        d.net = Some(Net::default());
        let a = args(&d);
        assert!(a.iter().any(|x| x.starts_with("virtio-blk-pci") && x.contains("bootindex=0")), "{a:?}");
        assert!(a.contains(&"virtio-net-pci,netdev=n0".to_string()), "{a:?}");
    }

    #[test]
    fn a_full_host_disk_is_an_error_the_guest_sees_not_a_pause() {
        let mut c = Config::direct("/k", "/i");
        c.disks = vec![Disk::raw("/tmp/a.img"), Disk { read_only: true, ..Disk::raw("/tmp/b.img") }];
        let drives: Vec<String> = args(&c).into_iter().filter(|x| x.starts_with("file=")).collect();
        assert_eq!(drives.len(), 2, "{drives:?}");
        assert!(drives.iter().all(|d| d.contains(",werror=report,rerror=report")), "{drives:?}");
    }
}
