//! Writing the payload on the workstation. The archive is [`Archive`]'s reproducible newc
//! (sorted, root-owned, mtime 0) compressed with ruzstd, which has no threads and no
//! clock, so identical inputs give identical bytes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::{BUILD_TIME_FILE, DIR, IMGBUILD_FILE, KEYRINGS_DIR, PACKED_AT_FILE, PLAN_FILE, PROJECT_DIR, SECRETS_DIR, TOKEN_FILE};
use crate::files::{scan, EntryKind, InputDir};
use crate::initramfs::Archive;
use crate::plan::Plan;

/// What a payload carries besides the project: set by `anemos pack`, `pxe`, `deploy` and
/// image builds.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// The per-deploy token guarding the init's event endpoint.
    pub token: Option<String>,
    /// When the payload's newest input was modified (seconds since the epoch, from
    /// [`build_time`]).
    pub build_time: Option<u64>,
    /// The workstation's clock when it packed ([`packed_at`]). With the build time, the
    /// installer's clock floor: a mirror's `Date` can then not replay indexes that had
    /// expired when the operator packed.
    pub packed_at: Option<u64>,
}

/// The packing workstation's clock, seconds since the epoch; `SOURCE_DATE_EPOCH` instead
/// when set, so that a reproducible build stays reproducible (its floor is then that time).
pub fn packed_at() -> Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v.trim().parse().with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"));
    }
    Ok(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// The payload's build time, reproducibly: `SOURCE_DATE_EPOCH` when set, else the newest
/// modification time among the project's inputs (the IMGBUILD, every file and symlink of
/// the input trees, the project files such as pacman.conf), so the same project gives the
/// same payload. A time in the future (a skewed workstation clock) is capped at now.
pub fn build_time(project: &Path, plan: &Plan) -> Result<u64> {
    build_time_with(project, plan, std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
}

fn build_time_with(project: &Path, plan: &Plan, source_date_epoch: Option<&str>) -> Result<u64> {
    if let Some(v) = source_date_epoch {
        return v.trim().parse().with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"));
    }
    let mut paths = vec![project.join("IMGBUILD")];
    for input in &plan.inputs {
        let tree = scan(&InputDir { path: project.join(&input.source), label: input.source.clone() })?;
        paths.extend(tree.entries.iter().filter(|e| !matches!(e.kind, EntryKind::Dir)).map(|e| tree.source(e)));
    }
    paths.extend(plan.project_files.iter().map(|rel| project.join(rel)));
    let mut newest = std::time::UNIX_EPOCH;
    for p in &paths {
        let meta = std::fs::symlink_metadata(p).with_context(|| format!("reading the modification time of {}", p.display()))?;
        newest = newest.max(meta.modified().with_context(|| format!("reading the modification time of {}", p.display()))?);
    }
    let now = std::time::SystemTime::now();
    if newest > now {
        log::warn!("a project file is dated {} (in the future): the payload's build time is now instead", crate::clock::format(newest));
        newest = now;
    }
    Ok(newest.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// A fresh per-deploy token: 32 random bytes from the kernel, in hex.
pub fn new_token() -> Result<String> {
    let mut b = [0u8; 32];
    let mut done = 0;
    while done < b.len() {
        done += rustix::rand::getrandom(&mut b[done..], rustix::rand::GetRandomFlags::empty()).context("reading random bytes for the deploy token")?;
    }
    Ok(hex::encode(b))
}

/// The payload archive for a checked plan and its revealed secrets.
pub fn archive(project: &Path, plan: &Plan, secrets: &BTreeMap<String, Vec<u8>>, extras: &Extras) -> Result<Archive> {
    let mut a = Archive::new();
    let mut json = serde_json::to_vec_pretty(plan).context("serialising the plan")?;
    json.push(b'\n');
    a.file(&format!("{DIR}/{PLAN_FILE}"), 0o644, json)?;
    let imgbuild = std::fs::read(project.join("IMGBUILD")).with_context(|| format!("reading {}/IMGBUILD", project.display()))?;
    a.file(&format!("{DIR}/{IMGBUILD_FILE}"), 0o644, imgbuild)?;
    for input in &plan.inputs {
        let tree = scan(&InputDir { path: project.join(&input.source), label: input.source.clone() })?;
        let base = format!("{DIR}/{}", input.payload_dir);
        a.dir(&base, 0o755)?;
        for e in &tree.entries {
            let path = format!("{base}/{}", e.rel);
            match &e.kind {
                EntryKind::Dir => a.dir(&path, e.mode)?,
                EntryKind::Symlink { target } => a.symlink(&path, target)?,
                EntryKind::File | EntryKind::Patch | EntryKind::Template => {
                    let data = std::fs::read(tree.source(e)).with_context(|| format!("reading {}/{}", input.source, e.rel))?;
                    a.file(&path, e.mode, data)?;
                }
            }
        }
    }
    if !plan.secrets.is_empty() {
        a.dir(&format!("{DIR}/{SECRETS_DIR}"), 0o700)?;
    }
    for s in &plan.secrets {
        let value = secrets.get(&s.name).with_context(|| format!("secret {:?} was not revealed", s.name))?;
        a.file(&format!("{DIR}/{SECRETS_DIR}/{}", s.name), 0o600, value.clone())?;
    }
    for rel in &plan.project_files {
        let data = std::fs::read(project.join(rel)).with_context(|| format!("reading {}/{rel}", project.display()))?;
        a.file(&format!("{DIR}/{PROJECT_DIR}/{rel}"), 0o644, data)?;
    }
    let profile = crate::packages::profile::of(&plan.target);
    if let Some((host, name)) = profile.archive_keyring {
        // The installer verifies the archive's signatures with the keyring of the host
        // that packed the payload: the initramfs has no other.
        let key = std::fs::read(host).with_context(|| format!("reading {host}: install the {} package on this workstation", name.trim_end_matches(".gpg")))?;
        a.file(&format!("{DIR}/{KEYRINGS_DIR}/{name}"), 0o644, key)?;
    }
    if plan.hostconf.contains(&crate::plan::HostConf::Keyring) {
        // hostconf keyring: the host's pacman keyrings or apk keys verify the packages.
        let (host, slot) = profile.host_keyring.unwrap_or(("", ""));
        if !host.is_empty() && !std::path::Path::new(host).is_dir() {
            // Packing on a workstation without them is not an error in itself: the
            // installer then refuses signed packages and says it has no keys.
            log::warn!("hostconf keyring: {host} does not exist on this workstation; the payload carries no {slot} keys, so signed packages will be refused");
        } else if !host.is_empty() {
            let mut names: Vec<_> =
                std::fs::read_dir(host).with_context(|| format!("hostconf keyring: reading {host} on this workstation"))?.filter_map(|e| e.ok()).filter(|e| e.path().is_file()).collect();
            names.sort_by_key(|e| e.file_name());
            for e in names {
                let name = e.file_name().to_string_lossy().into_owned();
                a.file(&format!("{DIR}/{KEYRINGS_DIR}/{slot}/{name}"), 0o644, std::fs::read(e.path())?)?;
            }
        }
    }
    if let Some(token) = &extras.token {
        a.file(&format!("{DIR}/{TOKEN_FILE}"), 0o600, format!("{token}\n"))?;
    }
    if let Some(t) = extras.build_time {
        a.file(&format!("{DIR}/{BUILD_TIME_FILE}"), 0o644, format!("{t}\n"))?;
    }
    if let Some(t) = extras.packed_at {
        a.file(&format!("{DIR}/{PACKED_AT_FILE}"), 0o644, format!("{t}\n"))?;
    }
    Ok(a)
}

/// The payload bytes: the archive, zstd-compressed.
pub fn pack(project: &Path, plan: &Plan, secrets: &BTreeMap<String, Vec<u8>>, extras: &Extras) -> Result<Vec<u8>> {
    let cpio = archive(project, plan, secrets, extras)?.to_bytes()?;
    Ok(ruzstd::encoding::compress_to_vec(&cpio[..], ruzstd::encoding::CompressionLevel::Fastest))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use proptest::prelude::*;

    use crate::initramfs::Node;
    use crate::plan::{InputTree, SecretRef, SecretSource};

    /// One member of a generated tree: a file (contents, mode) or a symlink (target).
    #[derive(Debug, Clone)]
    enum Member {
        File(Vec<u8>, u32),
        Link(String),
    }

    fn member() -> impl Strategy<Value = Member> {
        prop_oneof![
            (proptest::collection::vec(any::<u8>(), 0..64), prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4755, 0o640])).prop_map(|(d, m)| Member::File(d, m)),
            "[a-z/.]{1,12}".prop_map(Member::Link),
        ]
    }

    fn write_project(dir: &Path, members: &[(String, Member)], mtime_shift: i64) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(dir.join("IMGBUILD"), "imgname=x\ntarget=debian\n").unwrap();
        for (rel, m) in members {
            let p = dir.join("files").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            match m {
                Member::File(data, mode) => {
                    std::fs::write(&p, data).unwrap();
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
                    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((1_000_000 + mtime_shift) as u64);
                    std::fs::File::options().write(true).open(&p).unwrap().set_modified(t).unwrap();
                }
                Member::Link(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
            }
        }
    }

    fn set_mtime(p: &Path, secs: u64) {
        use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
        let t = Timespec { tv_sec: secs as i64, tv_nsec: 0 };
        utimensat(CWD, p, &Timestamps { last_access: t, last_modification: t }, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    /// The newest file or symlink (its own time, not its target's) of the IMGBUILD and the
    /// input trees; directories do not count; the future is capped at now.
    #[test]
    fn build_time_is_the_newest_input() {
        let dir = std::env::temp_dir().join(format!("anemos-build-time-{}", std::process::id()));
        write_project(&dir, &[("a/f".into(), Member::File(b"x".to_vec(), 0o644)), ("a/l".into(), Member::Link("f".into()))], 0);
        let mut plan = crate::plan::tests::sample();
        plan.inputs = vec![InputTree { source: "files".into(), payload_dir: "inputs/0".into(), files: 0, symlinks: 0, patches: vec![], templates: vec![] }];
        set_mtime(&dir.join("IMGBUILD"), 1_500_000_000);
        set_mtime(&dir.join("files/a/f"), 1_600_000_000);
        set_mtime(&dir.join("files/a/l"), 1_650_000_000);
        set_mtime(&dir.join("files/a"), 1_700_000_000);
        assert_eq!(super::build_time_with(&dir, &plan, None).unwrap(), 1_650_000_000, "the symlink's own time");
        set_mtime(&dir.join("files/a/l"), 1_400_000_000);
        assert_eq!(super::build_time_with(&dir, &plan, None).unwrap(), 1_600_000_000);
        set_mtime(&dir.join("IMGBUILD"), 1_610_000_000);
        assert_eq!(super::build_time_with(&dir, &plan, None).unwrap(), 1_610_000_000);
        assert_eq!(super::build_time_with(&dir, &plan, Some("1234\n")).unwrap(), 1234);
        assert!(super::build_time_with(&dir, &plan, Some("soon")).unwrap_err().to_string().contains("SOURCE_DATE_EPOCH"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        set_mtime(&dir.join("files/a/f"), now + 86_400 * 365);
        let capped = super::build_time_with(&dir, &plan, None).unwrap();
        assert!(capped >= now && capped < now + 60, "{capped} vs {now}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn build_time_and_token_travel_in_the_payload() {
        let dir = std::env::temp_dir().join(format!("anemos-build-time-payload-{}", std::process::id()));
        write_project(&dir, &[], 0);
        let mut plan = crate::plan::tests::sample();
        plan.secrets.clear();
        let token = super::new_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(token, super::new_token().unwrap());
        let extras = super::Extras { token: Some(token.clone()), build_time: Some(1_650_000_000), packed_at: Some(1_700_000_000) };
        let a = super::archive(&dir, &plan, &BTreeMap::new(), &extras).unwrap();
        let file = |name: &str| match a.get(&format!("{}/{name}", crate::payload::DIR)) {
            Some(Node::File { mode, data }) => (*mode, String::from_utf8(data.clone()).unwrap()),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(file("build-time"), (0o644, "1650000000\n".to_string()));
        assert_eq!(file("packed-at"), (0o644, "1700000000\n".to_string()));
        assert_eq!(file("token"), (0o600, format!("{token}\n")));
        let none = super::archive(&dir, &plan, &BTreeMap::new(), &Default::default()).unwrap();
        assert!(none.get(&format!("{}/build-time", crate::payload::DIR)).is_none());
        // The init reads it back.
        let payload = crate::payload::Payload { dir: dir.join("unpacked"), plan };
        std::fs::create_dir_all(&payload.dir).unwrap();
        assert_eq!(payload.build_time().unwrap(), None);
        std::fs::write(payload.dir.join("build-time"), "1650000000\n").unwrap();
        assert_eq!(payload.build_time().unwrap(), Some(crate::clock::from_unix(1_650_000_000)));
        std::fs::write(payload.dir.join("build-time"), "tomorrow\n").unwrap();
        assert!(payload.build_time().unwrap_err().to_string().contains("not a number"));
        std::fs::write(payload.dir.join("build-time"), format!("{}\n", u64::MAX)).unwrap();
        assert!(payload.build_time().unwrap_err().to_string().contains("after the year 9999"));
        // The floor is the later of the build time and the packing clock.
        std::fs::write(payload.dir.join("build-time"), "1650000000\n").unwrap();
        assert_eq!(payload.clock_floor().unwrap(), Some(crate::clock::from_unix(1_650_000_000)));
        std::fs::write(payload.dir.join("packed-at"), "1700000000\n").unwrap();
        assert_eq!(payload.clock_floor().unwrap(), Some(crate::clock::from_unix(1_700_000_000)));
        std::fs::write(payload.dir.join("build-time"), "1750000000\n").unwrap();
        assert_eq!(payload.clock_floor().unwrap(), Some(crate::clock::from_unix(1_750_000_000)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// The same project, written in another order at other times, packs to the same bytes.
        #[test]
        fn pack_is_deterministic(
            members in proptest::collection::btree_map((0u8..3, 0u8..4), member(), 0..10),
            secret in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let members: Vec<(String, Member)> = members.into_iter().map(|((d, f), m)| (format!("d{d}/f{f}"), m)).collect();
            let base = tempfile::Builder::new().prefix("anemos-pack-prop-").tempdir().unwrap();
            let (a, b) = (base.path().join("a"), base.path().join("b"));
            write_project(&a, &members, 0);
            let reversed: Vec<_> = members.iter().rev().cloned().collect();
            write_project(&b, &reversed, 86_400);
            let mut plan = crate::plan::tests::sample();
            plan.inputs = vec![InputTree { source: "files".into(), payload_dir: "inputs/0".into(), files: 0, symlinks: 0, patches: vec![], templates: vec![] }];
            plan.secrets = vec![SecretRef { name: "db".into(), source: SecretSource::Plain }];
            let secrets: BTreeMap<String, Vec<u8>> = [("db".to_string(), secret)].into();
            let pa = super::pack(&a, &plan, &secrets, &Default::default()).unwrap();
            let pb = super::pack(&b, &plan, &secrets, &Default::default()).unwrap();
            prop_assert_eq!(&pa, &pb);
            prop_assert_eq!(&pa, &super::pack(&a, &plan, &secrets, &Default::default()).unwrap());
            // And the archive inside is what ruzstd's own decoder gives back.
            let mut dec = ruzstd::decoding::StreamingDecoder::new(&pa[..]).unwrap();
            let mut cpio = Vec::new();
            std::io::Read::read_to_end(&mut dec, &mut cpio).unwrap();
            prop_assert_eq!(cpio, super::archive(&a, &plan, &secrets, &Default::default()).unwrap().to_bytes().unwrap());
        }
    }
}
