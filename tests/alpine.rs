//! Alpine installs from generated repositories (`tests/src/apk_fixture.rs`: apk v2 packages
//! and signed indexes made per the format, keys by openssl) served by a loopback mirror.
//! There is no apk tool on this host: the result is judged by reading
//! `/lib/apk/db/installed` back (every listed file exists with the recorded SHA-1), by GNU tar
//! listing the generated packages, and by the scripts' and triggers' own traces. Hostile
//! inputs either recover or stop naming the URL and the package, never writing outside the
//! target root.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anemos_tests::apk_fixture::{generate, Entry, Pkg, KEY};
use anemos_tests::{scratch, serve, sh};
use anyhow::Result;
use installer::packages::alpine::{self, index, Config, InstallOptions, Keys, Repository};
use sha1::Digest;

const CANARY: &str = "/tmp/anemos-canary";

fn packages() -> (Vec<Pkg>, Vec<Pkg>) {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let mut base = Pkg::new("alpine-baselayout", "3.6.5-r0");
    base.entries = vec![
        Entry::Dir("bin", 0o755),
        Entry::Dir("etc", 0o755),
        Entry::Dir("lib", 0o755),
        Entry::Dir("tmp", 0o1777),
        Entry::Dir("usr", 0o755),
        Entry::Dir("usr/share", 0o755),
        Entry::File("etc/os-release", 0o644, b"ID=anemostest\n".to_vec()),
    ];
    let mut musl = Pkg::new("musl", "1.2.5-r0");
    musl.provides = "so:libc.musl-x86_64.so.1=1";
    musl.entries = vec![Entry::Dir("lib", 0o755), Entry::File("lib/ld-musl-x86_64.so.1", 0o755, b"not really musl\n".to_vec()), Entry::Symlink("lib/libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1")];
    let mut bb = Pkg::new("busybox", "1.36.1-r2");
    bb.depends = "so:libc.musl-x86_64.so.1";
    bb.provides = "/bin/sh cmd:sh=1.36.1-r2 cmd:busybox=1.36.1-r2";
    bb.entries = vec![Entry::Dir("bin", 0o755), Entry::File("bin/busybox", 0o755, busybox), Entry::Symlink("bin/sh", "/bin/busybox")];
    bb.scripts = vec![("post-install", "#!/bin/sh\n/bin/busybox mkdir -p /var/lib/bb\necho \"$1\" >/var/lib/bb/post-install\n")];
    let mut hello = Pkg::new("hello", "2.12_p1-r3");
    hello.depends = "/bin/sh so:libc.musl-x86_64.so.1 !hello-legacy";
    hello.sha256 = true;
    hello.entries = vec![Entry::Dir("usr/share/hello", 0o755), Entry::File("usr/share/hello/greeting", 0o644, b"hello\n".to_vec()), Entry::File("usr/share/hello/secret", 0o600, b"s\n".to_vec())];
    hello.scripts = vec![("pre-install", "#!/bin/sh\n/bin/busybox mkdir -p /var/log\necho \"pre $1\" >>/var/log/hello.log\n"), ("post-install", "#!/bin/sh\necho \"post $1\" >>/var/log/hello.log\n")];
    let mut watcher = Pkg::new("hello-watcher", "1-r0");
    watcher.depends = "/bin/sh";
    watcher.install_if = "hello";
    watcher.triggers = "/usr/share/hello*";
    watcher.scripts = vec![("trigger", "#!/bin/sh\n/bin/busybox mkdir -p /var/lib\necho \"$@\" >/var/lib/hello-trigger\n")];
    let mut mkinitfs = Pkg::new("mkinitfs", "3.10.1-r0");
    mkinitfs.depends = "/bin/sh";
    mkinitfs.triggers = "/usr/share/kernel/*";
    mkinitfs.scripts = vec![("trigger", "#!/bin/sh\n/bin/busybox mkdir -p /boot\necho \"$@\" >/boot/initramfs-fake\n")];
    let mut kernel = Pkg::new("linux-fake", "6.6.1-r0");
    kernel.depends = "mkinitfs";
    kernel.entries = vec![Entry::Dir("usr/share/kernel", 0o755), Entry::Dir("usr/share/kernel/fake", 0o755), Entry::File("usr/share/kernel/fake/kernel.release", 0o644, b"6.6.1-0-fake\n".to_vec())];
    let mut meta = Pkg::new("alpine-base", "3.20.3-r0");
    meta.depends = "alpine-baselayout busybox hello linux-fake";
    let legacy = Pkg::new("hello-legacy", "0.1-r0");
    let mut dotdot = Pkg::new("dotdot", "1-r0");
    dotdot.dotdot = true;
    dotdot.entries = vec![Entry::Dir("usr/share/dotdot", 0o755)];
    let mut tool = Pkg::new("extra-tool", "0.9a_rc2-r0");
    tool.depends = "cmd:sh";
    tool.entries = vec![Entry::Dir("usr/bin", 0o755), Entry::File("usr/bin/extra-tool", 0o755, b"#!/bin/sh\necho extra\n".to_vec())];
    (vec![base, musl, bb, hello, watcher, mkinitfs, kernel, meta, legacy, dotdot], vec![tool])
}

fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("alpine-fixture");
        let (main, community) = packages();
        generate(&dir, &main, &community).unwrap();
        dir
    })
}

/// Index modes: `other`, `tampered`, `unsigned`, `wronghash` serve that variant of main's
/// APKINDEX.tar.gz.
fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let rename = |mode: &str, file: &str| (["other", "tampered", "unsigned", "wronghash"].contains(&mode) && file == "main/x86_64/APKINDEX.tar.gz").then(|| format!("{file}.{mode}"));
        serve::start(fixture().join("repo"), |f| f.ends_with(".apk"), Box::new(rename))
    })
}

fn config(mode: &str, world: &[&str]) -> Config {
    let repos = ["main", "community"].iter().map(|r| Repository { url: format!("{}/{mode}/{r}", server()), tag: None }).collect();
    let keys = Keys::load_dir(&fixture().join("keys")).unwrap();
    let mut c = Config::new(repos, keys, world.iter().map(|s| s.to_string()).collect());
    c.arch = "x86_64".into();
    c.fetch.read_timeout = Duration::from_millis(700);
    c.fetch.backoff = Duration::from_millis(20);
    c.fetch.retries = 3;
    c
}

fn run(name: &str, c: &Config, configure: bool) -> (PathBuf, Result<alpine::Report>) {
    let root = scratch(&format!("alpine-{name}")).join("root");
    let r = alpine::prepare(c).and_then(|p| alpine::install(&p, &root, &InstallOptions { configure, ..InstallOptions::default() }));
    (root, r)
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `R:` of the installed database exists in the root with its `Z:` SHA-1 (of the
/// contents, or of the link target) and `a:` mode; returns the number of files.
fn audit(root: &Path, db: &str) -> usize {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let (mut dir, mut file, mut n) = (String::new(), None::<PathBuf>, 0);
    for line in db.lines() {
        if let Some(d) = line.strip_prefix("F:") {
            dir = d.to_string();
            assert!(root.join(&dir).is_dir(), "F:{dir}");
        } else if let Some(r) = line.strip_prefix("R:") {
            let p = root.join(&dir).join(r);
            assert!(std::fs::symlink_metadata(&p).is_ok(), "R:{r} in {dir}");
            file = Some(p);
            n += 1;
        } else if let Some(z) = line.strip_prefix("Z:Q1") {
            let p = file.clone().unwrap();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let content = if meta.file_type().is_symlink() { std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes() } else { std::fs::read(&p).unwrap() };
            assert_eq!(base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(&content)), z, "Z: of {}", p.display());
        } else if let Some(a) = line.strip_prefix("a:") {
            let mode = u32::from_str_radix(a.rsplit(':').next().unwrap(), 8).unwrap();
            assert_eq!(std::fs::symlink_metadata(file.clone().unwrap()).unwrap().permissions().mode() & 0o7777, mode, "a:{a}");
        }
    }
    n
}

#[test]
fn alpine_base_installs_with_scripts_triggers_and_database() {
    let c = config("ok", &["alpine-base", "extra-tool"]);
    let (root, r) = run("base", &c, true);
    let report = r.unwrap();
    let db = read(root.join("lib/apk/db/installed"));
    let mut names: Vec<String> = index::parse(&db, "installed", 0).unwrap().into_iter().map(|p| format!("{}-{}", p.name, p.version)).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "alpine-base-3.20.3-r0",
            "alpine-baselayout-3.6.5-r0",
            "busybox-1.36.1-r2",
            "extra-tool-0.9a_rc2-r0",
            "hello-2.12_p1-r3",
            "hello-watcher-1-r0",
            "linux-fake-6.6.1-r0",
            "mkinitfs-3.10.1-r0",
            "musl-1.2.5-r0"
        ]
    );
    assert_eq!(audit(&root, &db), 9);
    assert!(db.contains("F:usr/share/hello\nR:greeting\nZ:Q1"), "{db}");
    assert!(db.contains("R:secret\na:0:0:600\n"), "{db}");
    assert!(db.contains("F:tmp\nM:0:0:1777\n"), "{db}");
    // Scripts in the chroot, pre-install before post-install, with the new version.
    assert_eq!(read(root.join("var/lib/bb/post-install")), "1.36.1-r2\n");
    assert_eq!(read(root.join("var/log/hello.log")), "pre 2.12_p1-r3\npost 2.12_p1-r3\n");
    // The install_if package joined and its trigger ran with the matched directory; the
    // mkinitfs trigger waits for finish().
    assert_eq!(read(root.join("var/lib/hello-trigger")), "/usr/share/hello\n");
    assert_eq!(report.deferred, ["mkinitfs"]);
    assert!(!root.join("boot/initramfs-fake").exists());
    assert_eq!(alpine::finish(&root).unwrap(), ["mkinitfs"]);
    assert_eq!(read(root.join("boot/initramfs-fake")), "/usr/share/kernel/fake\n");
    assert_eq!(read(root.join("etc/apk/world")), "alpine-base\nextra-tool\n");
    assert!(read(root.join("etc/apk/repositories")).ends_with("/ok/community\n"));
    assert_eq!(read(root.join(format!("etc/apk/keys/{KEY}"))), read(fixture().join(format!("keys/{KEY}"))));
    assert!(read(root.join("lib/apk/db/triggers")).contains(" /usr/share/hello*"));
    let scripts = sh(&format!("tar -tf {}", root.join("lib/apk/db/scripts.tar").display())).unwrap();
    assert!(scripts.contains("hello-2.12_p1-r3.Q1") && scripts.contains(".post-install"), "{scripts}");
    assert!(!root.join("proc/self").exists());
}

#[test]
fn generated_packages_read_as_one_tar_stream_by_gnu_tar() {
    // abuild's cut tars concatenate into one stream, which is how apk(8) documents
    // inspecting a package: `tar -tzvf pkg.apk`.
    let list = sh(&format!("tar -tzf {}", fixture().join("repo/main/x86_64/hello-2.12_p1-r3.apk").display())).unwrap();
    assert_eq!(list, format!(".SIGN.RSA256.{KEY}\n.PKGINFO\n.pre-install\n.post-install\nusr/share/hello/\nusr/share/hello/greeting\nusr/share/hello/secret\n"));
    let idx = sh(&format!("tar -xzOf {} APKINDEX", fixture().join("repo/main/x86_64/APKINDEX.tar.gz").display())).unwrap();
    assert!(idx.contains("P:hello\nV:2.12_p1-r3\n"), "{idx}");
}

#[test]
fn bad_missing_and_wrong_hash_index_signatures_stop_prepare() {
    for (mode, what) in [("other", "UNTRUSTED: signed by anemos-other"), ("tampered", "BAD signature"), ("unsigned", "not signed"), ("wronghash", "BAD signature")] {
        let err = format!("{:#}", alpine::prepare(&config(mode, &["hello"])).unwrap_err());
        assert!(err.contains(what) && err.contains(&format!("/{mode}/main/x86_64/APKINDEX.tar.gz")), "{mode}: {err}");
    }
    let err = format!("{:#}", alpine::prepare(&config("ok", &["nothing-such"])).unwrap_err());
    assert!(err.contains("no package provides nothing-such"), "{err}");
    let err = format!("{:#}", alpine::prepare(&config("ok", &["hello", "hello-legacy"])).unwrap_err());
    assert!(err.contains("hello conflicts with hello-legacy"), "{err}");
}

#[test]
fn corrupt_truncated_and_missing_packages_stop_naming_url_and_package() {
    for mode in ["corrupt", "trunc"] {
        let (root, r) = run(mode, &config(mode, &["musl"]), false);
        let err = format!("{:#}", r.unwrap_err());
        assert!(err.contains("package musl 1.2.5-r0") && err.contains(&format!("/{mode}/main/x86_64/musl-1.2.5-r0.apk")), "{mode}: {err}");
        assert!(!root.join("lib/ld-musl-x86_64.so.1").exists(), "{mode}: unpacked before it was verified");
    }
    let err = format!("{:#}", alpine::prepare(&config("missing", &["musl"])).unwrap_err());
    assert!(err.contains("404") && err.contains("package musl 1.2.5-r0"), "{err}");
}

#[test]
fn server_errors_and_stalls_are_retried_and_resumed() {
    for mode in ["flaky", "stall"] {
        let (root, r) = run(mode, &config(mode, &["hello"]), false);
        r.unwrap_or_else(|e| panic!("{mode}: {e:#}"));
        assert_eq!(read(root.join("usr/share/hello/greeting")), "hello\n");
    }
}

#[test]
fn a_dotdot_member_never_writes_outside_the_root() {
    let (_, r) = run("dotdot", &config("ok", &["dotdot"]), false);
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("`..`") && err.contains("package dotdot 1-r0"), "{err}");
    assert!(!Path::new(CANARY).exists(), "something was written to {CANARY}");
}

#[test]
fn a_package_whose_control_is_not_the_indexed_one_is_refused() {
    // An index record whose C: names another control segment.
    let c = config("ok", &["extra-tool"]);
    let p = alpine::prepare(&c).unwrap();
    let mut p2 = p.clone();
    let i = p2.packages.iter().position(|x| x.name == "extra-tool").unwrap();
    p2.packages[i].checksum = "Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let root = scratch("alpine-checksum").join("root");
    let err = format!("{:#}", alpine::install(&p2, &root, &InstallOptions { configure: false, ..InstallOptions::default() }).unwrap_err());
    assert!(err.contains("checksum mismatch") && err.contains("package extra-tool"), "{err}");
    assert!(!root.join("usr/bin/extra-tool").exists(), "nothing of it was unpacked");
}
