//! Images: the root file system of a project, installed and configured once by
//! `anemos build`, then laid onto each host's new file systems in place of the package
//! path (image mode). An image is a tar stream (sorted, numeric owners, mtimes clamped,
//! file capabilities and other extended attributes as PAX `SCHILY.xattr.*` records)
//! compressed with zstd; its first member, [`MANIFEST_MEMBER`], says what it is. A sidecar
//! `IMAGE.json` holds the same manifest plus the SHA-256 and size of the compressed
//! stream — the value a plan pins (`image_sha256=`).
//!
//! The installer streams it: HTTP → SHA-256 → zstd → tar → the new root, never holding it
//! in memory, and checks the digest at the end of the stream; until then nothing on the
//! disk is bootable (the boot loader phase comes after), and a failure makes the disk
//! unbootable for good (the init's safety hook). [`peek`] reads only the manifest, before
//! the wipe, so that an unreachable image or one for another distribution or boot loader
//! stops the install while the disk is untouched.

use std::io::{self, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::event::{emit, Event};
use crate::packages::extract::{self, Placement, Root};
use crate::packages::fetch::{Expected, Fetcher};
use crate::plan::{ImageSource, Plan};

/// The first member of every image.
pub const MANIFEST_MEMBER: &str = ".anemos-image.json";
/// The manifest's `format`.
pub const FORMAT: &str = "anemos-image/1";
/// The largest image accepted (compressed).
const MAX_IMAGE: u64 = 1 << 40;

/// One installed package, as the image's package manager recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// What an image is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub imgname: String,
    /// `debian`, `arch` or `alpine`.
    pub target: String,
    /// The time every mtime was clamped to (SOURCE_DATE_EPOCH, else the build time).
    pub clamp: u64,
    /// Bytes of the files inside (the root's size once unpacked).
    pub unpacked: u64,
    pub entries: u64,
    pub packages: Vec<Package>,
    /// Secrets rendered into the image (`image_secrets=yes`); normally none.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The plan the image was built from.
    pub plan: Plan,
    /// The compressed stream's SHA-256 and size: in the sidecar `.json` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl Manifest {
    pub fn has_package(&self, name: &str) -> bool {
        self.packages.iter().any(|p| p.name == name)
    }

    /// Refuses an image that cannot become this plan's system: another distribution, or
    /// without the packages the plan's boot loader needs on this firmware, or those its
    /// layout needs at boot (mdadm, cryptsetup-initramfs, lvm2, btrfs-progs).
    pub fn check_against(&self, plan: &Plan, bootloader_packages: &[&str]) -> Result<()> {
        if self.format != FORMAT {
            bail!("the image is {:?}, this anemos reads {FORMAT}: build it again with this version", self.format);
        }
        if self.target != plan.target.name() {
            bail!("the image is a {} system ({}), the plan installs {}", self.target, self.imgname, plan.target.name());
        }
        let missing: Vec<&str> = bootloader_packages.iter().copied().filter(|p| !self.has_package(p)).collect();
        if !missing.is_empty() {
            bail!(
                "the image {} lacks {} for this machine's boot loader ({:?} on this firmware): build the image from a project with the same bootloader= and layout",
                self.imgname,
                missing.join(", "),
                plan.bootloader
            );
        }
        let storage: Vec<&str> = crate::packages::profile::of(&plan.target).storage_packages(plan).into_iter().map(|(p, _)| p).filter(|p| !self.has_package(p)).collect();
        if !storage.is_empty() {
            bail!(
                "the image {} lacks {}, which this layout needs to open its arrays, encrypted partitions, volume group or btrfs at boot: build the image from a project with the same layout (or add them to its packages=)",
                self.imgname,
                storage.join(", ")
            );
        }
        Ok(())
    }
}

/// Reads the manifest at the start of the image, and nothing more. Not verified (the
/// digest covers the whole stream): a check that the right image is there, before the wipe.
pub fn peek(fetcher: &Fetcher, source: &ImageSource) -> Result<Manifest> {
    let reader = fetcher.open(&source.location, Expected { size: None, sha256: None, limit: Some(MAX_IMAGE) })?;
    let decoded = extract::decompress(".zst", BufReader::with_capacity(256 << 10, reader))?;
    let mut archive = tar::Archive::new(decoded);
    let mut entries = archive.entries().with_context(|| format!("reading {}", source.location))?;
    let mut first = entries.next().with_context(|| format!("{} is empty", source.location))?.with_context(|| format!("reading {}", source.location))?;
    let name = String::from_utf8_lossy(&first.path_bytes()).into_owned();
    if name != MANIFEST_MEMBER {
        bail!("{} does not start with {MANIFEST_MEMBER} (it starts with {name:?}): not an image made by anemos build", source.location);
    }
    parse_manifest(&mut first, &source.location)
}

fn parse_manifest(r: &mut dyn Read, what: &str) -> Result<Manifest> {
    let mut text = Vec::new();
    r.take(extract::METADATA_LIMIT).read_to_end(&mut text).with_context(|| format!("reading the manifest of {what}"))?;
    serde_json::from_slice(&text).with_context(|| format!("the manifest of {what} is not an anemos image manifest"))
}

/// What [`install`] laid down.
#[derive(Debug)]
pub struct Installed {
    pub manifest: Manifest,
    pub entries: usize,
    pub bytes: u64,
}

/// Streams the image into `root`, verifying the SHA-256 the plan pins over every byte.
/// An error means: stop, and never make this root bootable. Two threads share the work
/// (the download, its digest and the decompression on one; the files on the other).
pub fn install(fetcher: &Fetcher, source: &ImageSource, root: &Root) -> Result<Installed> {
    let pin = source.sha256.clone().context("the plan pins no SHA-256 for the image")?;
    let reader = fetcher.open(&source.location, Expected { size: None, sha256: Some(pin.clone()), limit: Some(MAX_IMAGE) })?;
    let mut counted = Counted { inner: reader, bytes: 0, started: Instant::now(), last: Instant::now(), failed: None };
    let (result, decoded) = std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Vec<u8>>(CHUNKS);
        let decoding = s.spawn(|| decode(&mut counted, tx));
        let result = unpack(&mut Chunks { rx, buf: Vec::new(), pos: 0 }, root, &source.location);
        let decoded = decoding.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the decompression thread failed")));
        (result, decoded)
    });
    counted.report(true);
    if let Some(e) = counted.failed.take() {
        return Err(anyhow::anyhow!(e).context(format!("the image {} is not the one the plan pins (SHA-256 {pin}): it was changed or damaged; nothing was made bootable", source.location)));
    }
    match (result, decoded) {
        (Ok((manifest, entries)), Ok(())) => Ok(Installed { manifest, entries, bytes: counted.bytes }),
        (Err(e), _) => Err(e.context(format!("unpacking the image {}", source.location))),
        (_, Err(e)) => Err(e.context(format!("reading the image {}", source.location))),
    }
}

/// Chunks in flight between the two threads (of [`CHUNK`] bytes).
const CHUNKS: usize = 8;
const CHUNK: usize = 1 << 20;

/// The download → zstd, in chunks to the unpacking thread; then, whatever happened there,
/// the rest of the download is read, so that a damaged stream is reported as what it is
/// (the digest), not as the decoding error it caused.
fn decode(input: &mut Counted<crate::packages::fetch::VerifiedReader<'_>>, tx: SyncSender<Vec<u8>>) -> Result<()> {
    let result = (|| -> Result<()> {
        let mut decoded = extract::decompress(".zst", BufReader::with_capacity(256 << 10, &mut *input))?;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = read_full(&mut decoded, &mut buf).context("decompressing the image")?;
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            if tx.send(buf).is_err() {
                // The unpacking stopped (its error is the one reported).
                return Ok(());
            }
        }
    })();
    drop(tx);
    io::copy(input, &mut io::sink()).context("reading the end of the image")?;
    result
}

/// Reads until `buf` is full or the stream ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The unpacking thread's end of the channel, as a `Read` that ends when the sender does.
struct Chunks {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn unpack(input: &mut dyn Read, root: &Root, what: &str) -> Result<(Manifest, usize)> {
    let opts = extract::Options { xattrs: true, ..extract::Options::default() };
    let decide = |p: &str| if p == format!("/{MANIFEST_MEMBER}") { Placement::Capture } else { Placement::Write(None) };
    let (written, captured) = extract::unpack_tar_filtered(root, &mut *input, &opts, &decide)?;
    io::copy(input, &mut io::sink()).context("reading the end of the image")?;
    let member = captured.into_iter().next().with_context(|| format!("{what} has no {MANIFEST_MEMBER}"))?;
    let manifest = parse_manifest(&mut &member.data[..], what)?;
    Ok((manifest, written.len()))
}

/// Counts the bytes read and reports them (a log line and a progress event every 2 s);
/// keeps the download's own failure (the digest, a broken transfer), whoever read it.
struct Counted<R> {
    inner: R,
    bytes: u64,
    started: Instant,
    last: Instant,
    failed: Option<String>,
}

impl<R> Counted<R> {
    fn report(&mut self, last: bool) {
        if !last && self.last.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let mib = self.bytes as f64 / 1048576.0;
        log::info!("image: {mib:.1} MiB streamed, {:.1} MiB/s", mib / secs);
        emit(Event::Progress { phase: "image".into(), done: self.bytes, total: 0, unit: "bytes".into() });
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            self.failed.get_or_insert_with(|| e.to_string());
        })?;
        self.bytes += n as u64;
        self.report(false);
        Ok(n)
    }
}

/// The packages installed in `root`, from its package manager's own database (dpkg's
/// status, pacman's local database, apk's installed), sorted by name.
pub fn installed_packages(root: &std::path::Path, target: &crate::plan::Target) -> Result<Vec<Package>> {
    let mut out = Vec::new();
    match target {
        crate::plan::Target::Debian { .. } => {
            let text = std::fs::read_to_string(root.join("var/lib/dpkg/status")).context("reading the image's /var/lib/dpkg/status")?;
            for para in text.split("\n\n") {
                let field = |k: &str| para.lines().find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()));
                if let (Some(name), Some(version), Some(status)) = (field("Package:"), field("Version:"), field("Status:")) {
                    if status.ends_with(" installed") {
                        out.push(Package { name, version });
                    }
                }
            }
        }
        crate::plan::Target::Arch => {
            let dir = root.join("var/lib/pacman/local");
            for e in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
                let Ok(text) = std::fs::read_to_string(e?.path().join("desc")) else { continue };
                let value = |k: &str| text.split("\n\n").find_map(|b| b.strip_prefix(k).map(|v| v.trim().to_string()));
                if let (Some(name), Some(version)) = (value("%NAME%\n"), value("%VERSION%\n")) {
                    out.push(Package { name, version });
                }
            }
        }
        crate::plan::Target::Alpine => {
            let text = std::fs::read_to_string(root.join("lib/apk/db/installed")).context("reading the image's /lib/apk/db/installed")?;
            for rec in text.split("\n\n") {
                let field = |k: &str| rec.lines().find_map(|l| l.strip_prefix(k).map(str::to_string));
                if let (Some(name), Some(version)) = (field("P:"), field("V:")) {
                    out.push(Package { name, version });
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Raid, RaidLevel};

    fn manifest(plan: &Plan, packages: &[&str]) -> Manifest {
        let packages = packages.iter().map(|n| Package { name: n.to_string(), version: "1".into() }).collect();
        Manifest {
            format: FORMAT.into(),
            imgname: "img".into(),
            target: plan.target.name().into(),
            clamp: 0,
            unpacked: 0,
            entries: 0,
            packages,
            secrets: vec![],
            plan: plan.clone(),
            sha256: None,
            size: None,
        }
    }

    #[test]
    fn an_image_without_what_the_layout_opens_at_boot_is_refused() {
        let mut plan = crate::plan::tests::sample();
        plan.layout.raid = vec![Raid { partition: "root".into(), level: RaidLevel::Raid1 }];
        let e = manifest(&plan, &["grub-pc"]).check_against(&plan, &["grub-pc"]).unwrap_err().to_string();
        assert!(e.contains("lacks mdadm, which this layout needs"), "{e}");
        manifest(&plan, &["grub-pc", "mdadm"]).check_against(&plan, &["grub-pc"]).unwrap();
        let e = manifest(&plan, &["mdadm"]).check_against(&plan, &["grub-pc"]).unwrap_err().to_string();
        assert!(e.contains("lacks grub-pc for this machine's boot loader"), "{e}");
    }
}
