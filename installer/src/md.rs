//! Software RAID (`raid=`): an md array over the same partition of every disk. The members'
//! superblocks (format 1.2: 4 KiB into each member, data from 1 MiB) are written
//! in-process, and the kernel's md driver assembles the array through its ioctls, as
//! `mdadm --assemble` does: no mdadm and no udev in the installer. The new system gets
//! `mdadm.conf`, and its own mdadm assembles the arrays at boot, also with a disk missing.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::plan::RaidLevel;
use crate::sys::{md_ioctl, MdCommand};
use crate::units::human_size;

/// The kernel modules an array needs (md_mod comes with each as a dependency).
pub const MODULES: &[&str] = &["raid1", "raid0", "raid10"];

const MAGIC: u32 = 0xa92b_4efc;
const SECTOR: u64 = 512;
/// Where a 1.2 superblock is (sectors from the member's start) and where the data starts:
/// 1 MiB, aligned, like mdadm on small devices.
const SUPER_OFFSET: u64 = 8;
pub const DATA_OFFSET: u64 = 2048;
/// Room for roles in the superblock (`max_dev`): 256 + 2 × 128 bytes, one sector.
const MAX_DEV: usize = 128;
/// RAID0/10 chunk: mdadm's default, 512 KiB.
const CHUNK: u64 = 1024;
/// RAID10 layout "near=2": two copies of each chunk on neighbouring members.
const RAID10_NEAR2: u32 = 0x102;
/// Zeroed at both ends of each member before its superblock goes on: old file system,
/// md and partition-table signatures must not outlive the new array.
const WIPE: u64 = 1 << 20;

/// What the superblocks of one array say.
#[derive(Debug, Clone)]
pub struct Params {
    /// `HOST:NAME` (at most 32 bytes), mdadm's array name.
    pub set_name: String,
    pub level: RaidLevel,
    pub set_uuid: [u8; 16],
    /// One per member, in role order.
    pub device_uuids: Vec<[u8; 16]>,
    /// Creation time, seconds since the epoch.
    pub time: u64,
    /// The smallest member's size in sectors.
    pub member_sectors: u64,
}

impl Params {
    /// Sectors of each member the array uses (the superblock's `size`), after the data
    /// offset, rounded down to the chunk (64 KiB for RAID1, like mdadm).
    pub fn used_sectors(&self) -> u64 {
        match self.level {
            RaidLevel::Raid1 => member_data_bytes(self.member_sectors * SECTOR) / SECTOR,
            _ => self.member_sectors.saturating_sub(DATA_OFFSET) / CHUNK * CHUNK,
        }
    }

    /// The array's size in bytes.
    pub fn array_bytes(&self) -> u64 {
        array_bytes(self.level, self.device_uuids.len() as u64, self.used_sectors() * SECTOR)
    }
}

/// What a member of `bytes` gives a mirror: the data area after the superblock's megabyte,
/// rounded down to 64 KiB.
pub fn member_data_bytes(bytes: u64) -> u64 {
    (bytes / SECTOR).saturating_sub(DATA_OFFSET) / 128 * 128 * SECTOR
}

/// The size of an array of `members` members that each give it `per_member` bytes.
pub fn array_bytes(level: RaidLevel, members: u64, per_member: u64) -> u64 {
    match level {
        RaidLevel::Raid1 => per_member,
        RaidLevel::Raid0 => per_member * members,
        RaidLevel::Raid10 => per_member * members / 2 / (CHUNK * SECTOR) * (CHUNK * SECTOR),
    }
}

/// The superblock of member `role` (one 512-byte sector), checksummed.
pub fn superblock(p: &Params, role: usize) -> Vec<u8> {
    let mut sb = vec![0u8; 256 + 2 * MAX_DEV];
    let put32 = |sb: &mut [u8], at: usize, v: u32| sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |sb: &mut [u8], at: usize, v: u64| sb[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut sb, 0, MAGIC);
    put32(&mut sb, 4, 1); // major_version
    sb[16..32].copy_from_slice(&p.set_uuid);
    let name = p.set_name.as_bytes();
    sb[32..32 + name.len().min(32)].copy_from_slice(&name[..name.len().min(32)]);
    put64(&mut sb, 64, p.time & ((1 << 40) - 1)); // ctime: seconds in the low 40 bits
    let (level, layout, chunk) = match p.level {
        RaidLevel::Raid0 => (0, 0, CHUNK as u32),
        RaidLevel::Raid1 => (1, 0, 0),
        RaidLevel::Raid10 => (10, RAID10_NEAR2, CHUNK as u32),
    };
    put32(&mut sb, 72, level);
    put32(&mut sb, 76, layout);
    put64(&mut sb, 80, p.used_sectors()); // size
    put32(&mut sb, 88, chunk);
    put32(&mut sb, 92, p.device_uuids.len() as u32); // raid_disks
    put64(&mut sb, 128, DATA_OFFSET);
    put64(&mut sb, 136, p.member_sectors - DATA_OFFSET); // data_size
    put64(&mut sb, 144, SUPER_OFFSET);
    put32(&mut sb, 160, role as u32); // dev_number
    sb[168..184].copy_from_slice(&p.device_uuids[role]);
    put64(&mut sb, 192, p.time & ((1 << 40) - 1)); // utime
    put64(&mut sb, 200, 0); // events
                            // resync_offset: a mirror is made in sync by the kernel from sector 0, as after
                            // `mdadm --create`; a stripe has nothing to resync.
    put64(&mut sb, 208, if p.level == RaidLevel::Raid0 { u64::MAX } else { 0 });
    put32(&mut sb, 220, MAX_DEV as u32);
    for (i, role) in sb[256..].chunks_exact_mut(2).enumerate() {
        let r: u16 = if i < p.device_uuids.len() { i as u16 } else { 0xffff };
        role.copy_from_slice(&r.to_le_bytes());
    }
    let csum = checksum(&sb);
    put32(&mut sb, 216, csum);
    sb
}

/// md's superblock checksum: the little-endian 32-bit words up to the last role, summed
/// in 64 bits, the carry folded in once (the `sb_csum` field counting as zero).
pub fn checksum(sb: &[u8]) -> u32 {
    let max_dev = u32::from_le_bytes([sb[220], sb[221], sb[222], sb[223]]) as usize;
    let len = (256 + 2 * max_dev).min(sb.len());
    let mut sum: u64 = 0;
    for (i, w) in sb[..len].chunks(4).enumerate() {
        if i == 216 / 4 {
            continue;
        }
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        sum += u64::from(u32::from_le_bytes(b));
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// An array's UUID as mdadm writes it in `mdadm.conf` and `--examine`: the 16 bytes in hex,
/// a colon after every four.
pub fn uuid_text(uuid: &[u8; 16]) -> String {
    uuid.chunks(4).map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>()).collect::<Vec<_>>().join(":")
}

/// mdadm's name of an array: `HOST:NAME`, or NAME alone when that would not fit its 32 bytes.
pub fn set_name(host: &str, name: &str) -> String {
    let full = format!("{host}:{name}");
    if full.len() <= 32 {
        full
    } else {
        name.chars().take(32).collect()
    }
}

/// An array, assembled and running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Array {
    /// The partition's name in the layout (`/dev/md/NAME` in the new system).
    pub name: String,
    /// The kernel's node, `/dev/mdN`.
    pub device: PathBuf,
    /// mdadm's form of the array UUID.
    pub uuid: String,
    pub set_name: String,
    pub level: RaidLevel,
    pub members: Vec<PathBuf>,
}

impl Array {
    /// The array's line in `mdadm.conf`.
    pub fn conf_line(&self) -> String {
        format!("ARRAY /dev/md/{} metadata=1.2 UUID={} name={}", self.name, self.uuid, self.set_name)
    }
}

/// Writes a superblock on every member (whatever was on them is lost) and assembles the
/// array; returns it running.
pub fn create(name: &str, host: &str, level: RaidLevel, members: &[PathBuf], time: u64) -> Result<Array> {
    let p = write_superblocks(name, host, level, members, time)?;
    let device = assemble(members).with_context(|| format!("assembling array {name} from {}", list(members)))?;
    let uuid = uuid_text(&p.set_uuid);
    log::info!("RAID: {name} {} of {} ({}), UUID={uuid}, as {}", level.name(), list(members), human_size(p.array_bytes()), device.display());
    Ok(Array { name: name.to_string(), device, uuid, set_name: p.set_name, level, members: members.to_vec() })
}

/// The members (block devices, or image files) made members of a new array: both ends
/// zeroed, a superblock each. Returns what the superblocks say.
pub fn write_superblocks(name: &str, host: &str, level: RaidLevel, members: &[PathBuf], time: u64) -> Result<Params> {
    ensure!(members.len() >= 2, "array {name}: RAID needs two or more members, got {}", members.len());
    let mut sizes = Vec::new();
    for m in members {
        let f = std::fs::File::open(m).with_context(|| format!("opening {} (member of array {name})", m.display()))?;
        let size = if f.metadata()?.is_file() { f.metadata()?.len() } else { crate::sys::block_size_bytes(&f).with_context(|| format!("reading the size of {}", m.display()))? };
        sizes.push(size);
    }
    let smallest = sizes.iter().copied().min().unwrap_or(0);
    ensure!(smallest >= 2 * WIPE + (1 << 20), "array {name}: member of {} is too small for an md superblock and data", human_size(smallest));
    let mut p = Params { set_name: set_name(host, name), level, set_uuid: random_uuid()?, device_uuids: Vec::new(), time, member_sectors: smallest / SECTOR };
    for _ in members {
        p.device_uuids.push(random_uuid()?);
    }
    for (role, (m, size)) in members.iter().zip(&sizes).enumerate() {
        write_member(m, *size, &superblock(&p, role)).with_context(|| format!("writing the md superblock of array {name} to {}", m.display()))?;
    }
    Ok(p)
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + ")
}

fn random_uuid() -> Result<[u8; 16]> {
    let mut u = [0u8; 16];
    crate::crypt::luks2::random(&mut u)?;
    Ok(u)
}

/// Zeroes both ends of the member, then writes its superblock.
fn write_member(path: &Path, size: u64, sb: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let zeros = vec![0u8; WIPE as usize];
    f.write_all(&zeros)?;
    f.seek(SeekFrom::Start(size - WIPE))?;
    f.write_all(&zeros)?;
    f.seek(SeekFrom::Start(SUPER_OFFSET * SECTOR))?;
    f.write_all(sb)?;
    f.sync_all()?;
    Ok(())
}

/// The kernel's md driver reads the members' superblocks and starts the array on a new
/// `/dev/mdN`.
fn assemble(members: &[PathBuf]) -> Result<PathBuf> {
    crate::kmod::load_running(MODULES).context("loading the kernel's md modules")?;
    let sys = Path::new("/sys/module/md_mod/parameters/new_array");
    ensure!(sys.exists(), "the kernel has no md driver ({} is missing): the installer's initramfs must carry md_mod and raid1", sys.display());
    let n = (0..1000).find(|n| !Path::new(&format!("/sys/block/md{n}")).exists()).context("no free md device number")?;
    std::fs::write(sys, format!("md{n}")).with_context(|| format!("creating md{n} through {}", sys.display()))?;
    let node = PathBuf::from(format!("/dev/md{n}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.exists() {
        if Instant::now() > deadline {
            bail!("{} did not appear (is devtmpfs mounted on /dev?)", node.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let array = std::fs::OpenOptions::new().read(true).write(true).open(&node).with_context(|| format!("opening {}", node.display()))?;
    md_ioctl(&array, MdCommand::SuperblockVersion { major: 1, minor: 2 }).with_context(|| format!("{}: setting superblock format 1.2", node.display()))?;
    for m in members {
        let rdev = std::fs::metadata(m).with_context(|| format!("reading the device number of {}", m.display()))?.rdev();
        md_ioctl(&array, MdCommand::AddMember { major: rustix::fs::major(rdev), minor: rustix::fs::minor(rdev) })
            .with_context(|| format!("{}: adding member {} (the kernel refused its superblock)", node.display(), m.display()))?;
    }
    md_ioctl(&array, MdCommand::Run).with_context(|| format!("{}: starting the array (see the kernel log for md's reason)", node.display()))?;
    Ok(node)
}

/// Stops an array (after its file systems are unmounted and what is above it is closed);
/// the kernel writes the superblocks' last state, resync position included.
pub fn stop(array: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(array).with_context(|| format!("opening {}", array.display()))?;
    md_ioctl(&f, MdCommand::Stop).with_context(|| format!("stopping {}", array.display()))
}

/// `/etc/mdadm/mdadm.conf` for the new system: its arrays by UUID, so its mdadm assembles
/// them (in the initramfs too) under `/dev/md/NAME`.
pub fn mdadm_conf(arrays: &[Array]) -> String {
    let mut text = String::from("# Written by anemos for the arrays of raid=: mdadm assembles them at boot, in the initramfs too.\nHOMEHOST <system>\nMAILADDR root\n");
    for a in arrays {
        text += &a.conf_line();
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(level: RaidLevel, members: usize) -> Params {
        Params { set_name: "host:root".into(), level, set_uuid: [7; 16], device_uuids: vec![[1; 16]; members], time: 1_700_000_000, member_sectors: 1_000_001 }
    }

    #[test]
    fn the_checksum_covers_the_roles_and_skips_itself() {
        let sb = superblock(&params(RaidLevel::Raid1, 2), 1);
        let stored = u32::from_le_bytes(sb[216..220].try_into().unwrap());
        assert_eq!(checksum(&sb), stored);
        let mut changed = sb.clone();
        changed[256 + 2 * 100] ^= 1;
        assert_ne!(checksum(&changed), stored, "a role's change must change the checksum");
        assert_eq!(u16::from_le_bytes([sb[258], sb[259]]), 1);
        assert_eq!(u16::from_le_bytes([sb[260], sb[261]]), 0xffff, "slots past the members are unused");
        assert_eq!(u32::from_le_bytes(sb[160..164].try_into().unwrap()), 1, "dev_number");
    }

    #[test]
    fn sizes_per_level() {
        // 1,000,001 sectors, minus 2048 of data offset, rounded down per level.
        assert_eq!(params(RaidLevel::Raid1, 2).used_sectors(), (1_000_001 - 2048) / 128 * 128);
        let stripe = params(RaidLevel::Raid0, 3);
        assert_eq!(stripe.used_sectors() % CHUNK, 0);
        assert_eq!(stripe.array_bytes(), 3 * stripe.used_sectors() * 512);
        let r10 = params(RaidLevel::Raid10, 2);
        assert_eq!(r10.array_bytes(), r10.used_sectors() * 512);
        assert_eq!(superblock(&stripe, 0)[208..216], u64::MAX.to_le_bytes(), "a stripe needs no resync");
    }

    #[test]
    fn names_and_uuids_as_mdadm_writes_them() {
        assert_eq!(uuid_text(&[0x0a; 16]), "0a0a0a0a:0a0a0a0a:0a0a0a0a:0a0a0a0a");
        assert_eq!(set_name("web1", "root"), "web1:root");
        assert_eq!(set_name("a-very-long-host-name-of-a-server", "root"), "root");
    }
}
