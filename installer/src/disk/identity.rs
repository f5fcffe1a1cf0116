//! What a disk *is*, as opposed to what the kernel called it this boot. Kernel names
//! (`/dev/sda`, `/dev/nvme0n1`) follow probe order and can swap between the old system
//! and the installer it kexecs; so `anemos kexec` records the identity of the disk the
//! operator confirmed (and of every kept disk) and the installer requires exactly those
//! disks before it writes anything ([`Confirmed::check`]).

use serde::{Deserialize, Serialize};

use anyhow::{bail, Result};

use super::Disk;
use crate::units::human_size;

/// Where `anemos kexec` puts the record in the installer's initramfs.
pub const CONFIRMED_FILE: &str = "anemos/confirmed.json";

/// One disk's identity: its size and whatever the hardware and its partition table say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The kernel's name when it was confirmed: for messages only.
    pub path: String,
    pub size: u64,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    /// The partition table's own identity: the GPT disk GUID, else the MBR disk signature.
    pub table_id: Option<String>,
}

impl Identity {
    /// The identity of `d`; an error when nothing but its size tells it apart (no serial,
    /// no WWN, no partition table): such a disk cannot be recognised after a reboot.
    pub fn of(d: &Disk) -> Result<Identity> {
        let id = Identity { path: d.path.display().to_string(), size: d.size, model: d.model.clone(), serial: d.serial.clone(), wwn: d.wwn.clone(), table_id: d.table_id.clone() };
        if id.serial.is_none() && id.wwn.is_none() && id.table_id.is_none() {
            bail!(
                "{} has no serial number, no WWN and no partition table: nothing would recognise it after the reboot into the installer (its kernel name may change). Give it a partition table, or boot the installer another way (anemos pxe)",
                d.path.display()
            );
        }
        Ok(id)
    }

    /// Whether `d` is this disk: the same size, and every recorded property the same.
    pub fn matches(&self, d: &Disk) -> bool {
        let same = |ours: &Option<String>, theirs: &Option<String>| ours.is_none() || ours == theirs;
        self.size == d.size && same(&self.model, &d.model) && same(&self.serial, &d.serial) && same(&self.wwn, &d.wwn) && same(&self.table_id, &d.table_id)
    }

    /// `/dev/sda (500 GiB, serial "S1", wwn "naa.5…", table 3f2a…)`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} ({}", self.path, human_size(self.size));
        for (label, value) in [("model", &self.model), ("serial", &self.serial), ("wwn", &self.wwn), ("table id", &self.table_id)] {
            if let Some(v) = value {
                s += &format!(", {label} {v:?}");
            }
        }
        s + ")"
    }
}

/// The disks the operator confirmed: the one to wipe and the ones to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmed {
    pub target: Identity,
    pub preserved: Vec<Identity>,
    /// The other disks to wipe (a layout over several disks), in `disk=` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<Identity>,
}

impl Confirmed {
    /// Requires that `chosen` (what the plan's selector picked on this boot) is the confirmed
    /// target, that no other disk could be it, and that every kept disk is present and
    /// distinct. Nothing has been written when this fails.
    pub fn check(&self, disks: &[Disk], chosen: &Disk, others: &[&Disk]) -> Result<()> {
        Self::one_target(&self.target, disks, chosen)?;
        if self.others.len() != others.len() {
            bail!("{} other disks were confirmed for wiping and the plan selects {} now; nothing was written", self.others.len(), others.len());
        }
        for (id, now) in self.others.iter().zip(others) {
            Self::one_target(id, disks, now)?;
        }
        for kept in &self.preserved {
            let found: Vec<&Disk> = disks.iter().filter(|d| kept.matches(d)).collect();
            match found.as_slice() {
                [one] if one.path == chosen.path || others.iter().any(|o| o.path == one.path) => bail!("the kept disk {} is a target on this boot; nothing was written", kept.describe()),
                [_] => {}
                [] => bail!("the kept disk {} is not on this machine now; nothing was written", kept.describe()),
                many => bail!("{} disks look like the kept disk {}; nothing was written", many.len(), kept.describe()),
            }
        }
        Ok(())
    }

    /// `chosen` (what a selector picked on this boot) is the disk confirmed as `id`, and no
    /// other disk could be it.
    fn one_target(id: &Identity, disks: &[Disk], chosen: &Disk) -> Result<()> {
        let target = id.describe();
        let found: Vec<&Disk> = disks.iter().filter(|d| id.matches(d)).collect();
        match found.as_slice() {
            [] => bail!("the disk confirmed for wiping, {target}, is not on this machine now; nothing was written"),
            [one] if one.path != chosen.path => bail!(
                "the plan's disk= now selects {}, but the disk confirmed for wiping, {target}, is {} on this boot: kernel names changed between the old system and the installer. Nothing was written; select the disk by serial:, wwn: or /dev/disk/by-id/ and deploy again",
                chosen.path.display(),
                one.path.display()
            ),
            [_] => Ok(()),
            many => bail!(
                "{} disks look like the one confirmed for wiping, {target} ({}); nothing was written",
                many.len(),
                many.iter().map(|d| d.path.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// The partition table's identity from a disk's first sectors (`head` holds at least two
/// logical sectors of `sector` bytes): the GPT header's disk GUID, else the MBR's 32-bit
/// disk signature (`0x1234abcd`; zero means unset).
pub fn table_id(head: &[u8], sector: usize) -> Option<String> {
    let gpt = head.get(sector..sector + 92)?;
    if &gpt[..8] == b"EFI PART" {
        let g = &gpt[56..72];
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let rev = |b: &[u8]| b.iter().rev().copied().collect::<Vec<u8>>();
        return Some(format!("{}-{}-{}-{}-{}", hex(&rev(&g[0..4])), hex(&rev(&g[4..6])), hex(&rev(&g[6..8])), hex(&g[8..10]), hex(&g[10..16])));
    }
    if head.get(510..512) == Some(&[0x55, 0xaa]) {
        let sig = u32::from_le_bytes(head.get(440..444)?.try_into().ok()?);
        return (sig != 0).then(|| format!("0x{sig:08x}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, size: u64, serial: Option<&str>, table: Option<&str>) -> Disk {
        Disk {
            name: name.into(),
            path: format!("/dev/{name}").into(),
            dev: String::new(),
            size,
            logical_sector: 512,
            physical_sector: 512,
            model: Some("QEMU HARDDISK".into()),
            serial: serial.map(String::from),
            wwn: None,
            by_id: vec![],
            removable: false,
            read_only: false,
            table: None,
            table_id: table.map(String::from),
            signatures: vec![],
            mounted: vec![],
            partitions: vec![],
        }
    }

    #[test]
    fn a_swapped_kernel_name_stops_the_install() {
        // Confirmed on the old system: sda is the system disk, sdb the kept data disk.
        let (sys, data) = (disk("sda", 20 << 30, None, Some("0xaabbccdd")), disk("sdb", 20 << 30, None, Some("0x11223344")));
        let confirmed = Confirmed { target: Identity::of(&sys).unwrap(), preserved: vec![Identity::of(&data).unwrap()], others: vec![] };
        assert!(confirmed.check(&[sys.clone(), data.clone()], &sys, &[]).is_ok());
        // After kexec the names swapped: disk=/dev/sda now selects the data disk.
        let (now_a, now_b) = (Disk { path: "/dev/sda".into(), ..data.clone() }, Disk { path: "/dev/sdb".into(), ..sys.clone() });
        let e = confirmed.check(&[now_a.clone(), now_b.clone()], &now_a, &[]).unwrap_err().to_string();
        assert!(e.contains("now selects /dev/sda") && e.contains("is /dev/sdb on this boot") && e.contains("Nothing was written"), "{e}");
        // Selected by identity the install may go on, whatever the names.
        assert!(confirmed.check(&[now_a.clone(), now_b.clone()], &now_b, &[]).is_ok());
        // A kept disk that is gone, or two disks alike, stop it too.
        assert!(confirmed.check(std::slice::from_ref(&sys), &sys, &[]).unwrap_err().to_string().contains("kept disk"));
        let twin = Disk { path: "/dev/sdc".into(), ..sys.clone() };
        assert!(confirmed.check(&[sys.clone(), data.clone(), twin], &sys, &[]).unwrap_err().to_string().contains("2 disks look like"));
        assert!(confirmed.check(std::slice::from_ref(&data), &data, &[]).unwrap_err().to_string().contains("is not on this machine now"));
    }

    #[test]
    fn identity_needs_something_besides_the_size() {
        assert!(Identity::of(&disk("vda", 1 << 30, None, None)).unwrap_err().to_string().contains("no serial number"));
        let id = Identity::of(&disk("vda", 1 << 30, Some("S1"), None)).unwrap();
        assert!(id.matches(&disk("vdb", 1 << 30, Some("S1"), Some("0x1"))), "properties not recorded do not count");
        assert!(!id.matches(&disk("vda", 2 << 30, Some("S1"), None)), "another size");
        assert!(!id.matches(&disk("vda", 1 << 30, Some("S2"), None)));
        assert_eq!(id.describe(), "/dev/vda (1 GiB, model \"QEMU HARDDISK\", serial \"S1\")");
    }

    #[test]
    fn table_ids_from_gpt_and_mbr() {
        let mut head = vec![0u8; 1024];
        head[440..444].copy_from_slice(&0x1234abcdu32.to_le_bytes());
        head[510] = 0x55;
        head[511] = 0xaa;
        assert_eq!(table_id(&head, 512).as_deref(), Some("0x1234abcd"));
        head[512..520].copy_from_slice(b"EFI PART");
        let guid = [0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
        head[512 + 56..512 + 72].copy_from_slice(&guid);
        assert_eq!(table_id(&head, 512).as_deref(), Some("00112233-4455-6677-8899-aabbccddeeff"));
        assert_eq!(table_id(&[0u8; 1024], 512), None);
    }
}
