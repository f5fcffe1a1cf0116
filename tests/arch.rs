//! Arch Linux installs from genuine fixture repositories (`tests/fixtures/arch-repo.sh`:
//! makepkg-built, gpg-signed packages, repo-add databases) served by a loopback mirror,
//! judged by the real pacman (`pacman -Q`, `-Qi`, `-Qk`, `-Qkk` with `--root`) and by an
//! install of the same packages made by that pacman; plus the hostile inputs, each either
//! recovered from or stopped with an error naming the URL and the package, never writing
//! outside the target root (the hostile package aims at /tmp/anemos-canary).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anemos_tests::{scratch, serve, sh, workspace};
use anyhow::Result;
use installer::packages::arch::{self, Config, InstallOptions, PacmanConf};

const CANARY: &str = "/tmp/anemos-canary";

fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("arch-fixture");
        sh(&format!("sh {}/tests/fixtures/arch-repo.sh {}", workspace().display(), dir.display())).unwrap();
        dir
    })
}

/// `badsig` serves another database's signature for core.db.
fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let rename = |mode: &str, file: &str| (mode == "badsig" && file.ends_with("/core.db.sig")).then(|| file.replace("core/os/x86_64/core.db.sig", "evil/os/x86_64/evil.db.sig"));
        serve::start(fixture().join("repo"), |f| f.contains(".pkg.tar."), Box::new(rename))
    })
}

/// A pacman.conf for the fixture repositories behind `/MODE/`.
fn conf_text(mode: &str, siglevel: &str, repos: &[&str]) -> String {
    let mut t = format!("[options]\nArchitecture = auto\nSigLevel = {siglevel}\n");
    for r in repos {
        t.push_str(&format!("\n[{r}]\nServer = {}/{mode}/$repo/os/$arch\n", server()));
    }
    t
}

fn config(mode: &str, siglevel: &str, repos: &[&str], targets: &[&str]) -> Config {
    let text = conf_text(mode, siglevel, repos);
    let conf = PacmanConf::parse(&text, "test pacman.conf", &|p: &str| anyhow::bail!("no include {p}")).unwrap();
    let mut c = Config::new(conf, targets.iter().map(|s| s.to_string()).collect());
    c.conf_text = Some(text);
    c.keyring = Some(fixture().join("keys/good.gpg"));
    c.arch = "x86_64".into();
    c.fetch.read_timeout = Duration::from_millis(700);
    c.fetch.backoff = Duration::from_millis(20);
    c.fetch.retries = 3;
    c
}

fn run(name: &str, c: &Config, configure: bool) -> (PathBuf, Result<arch::Report>) {
    let root = scratch(&format!("arch-{name}")).join("root");
    let r = arch::prepare(c).and_then(|p| arch::install(&p, &root, &InstallOptions { configure, ..InstallOptions::default() }));
    (root, r)
}

fn canary_untouched() {
    assert!(!Path::new(CANARY).exists(), "something was written to {CANARY}");
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn base_installs_and_pacman_reads_the_local_database() {
    let c = config("ok", "Required DatabaseOptional", &["core", "extra"], &["base"]);
    let (root, r) = run("base", &c, true);
    let report = r.unwrap();
    let r = root.display();
    let q = sh(&format!("pacman -Q --root {r}")).unwrap();
    assert_eq!(q, "busybox 1.35.0-1\nfilesystem 2024.1-1\ngreeter 1:2.1-3\nhooktest 1-1\nlibgreet-ng 3.0-1\n");
    let qk = sh(&format!("pacman -Qk --root {r}")).unwrap();
    assert_eq!(qk.lines().count(), 5, "{qk}");
    assert!(qk.lines().all(|l| l.ends_with(", 0 missing files")), "{qk}");
    let qkk = sh(&format!("pacman -Qkk --root {r} 2>&1")).unwrap();
    assert!(qkk.lines().all(|l| l.contains("0 altered files")), "{qkk}");
    assert!(sh(&format!("pacman -Qi --root {r} greeter")).unwrap().contains("Explicitly installed"));
    assert!(sh(&format!("pacman -Qi --root {r} libgreet-ng")).unwrap().contains("Installed as a dependency"));
    assert_eq!(sh(&format!("pacman -Qdq --root {r}")).unwrap(), "libgreet-ng\n");
    // .INSTALL functions ran in the chroot with the new version, pre before post.
    assert_eq!(read(root.join("var/lib/greeter/installed")), "1:2.1-3\n");
    assert_eq!(read(root.join("var/log/greeter.log")), "pre_install 1:2.1-3\npost_install 1:2.1-3\n");
    // The path hook got its matches (the directory too, bye.txt negated) on stdin.
    assert_eq!(read(root.join("var/lib/hooktest-targets")), "usr/share/greet/\nusr/share/greet/hello-hardlink.txt\nusr/share/greet/hello.txt\n");
    assert_eq!(report.hooks, ["50-greet-files.hook"]);
    assert_eq!(report.deferred, ["90-mkinitcpio-install.hook"]);
    assert!(!root.join("boot/initramfs-fake.img").exists());
    assert_eq!(arch::finish(&root).unwrap(), ["90-mkinitcpio-install.hook"]);
    assert_eq!(read(root.join("boot/initramfs-fake.img")), "built\n");
    assert!(arch::finish(&root).unwrap().is_empty());
    // The hard link is one inode; /etc/pacman.conf is the one the install used.
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(root.join("usr/share/greet/hello.txt")).unwrap();
    assert_eq!(a.ino(), std::fs::metadata(root.join("usr/share/greet/hello-hardlink.txt")).unwrap().ino());
    assert_eq!(read(root.join("etc/pacman.conf")), c.conf_text.clone().unwrap());
    assert!(!root.join("proc/self").exists(), "the chroot mounts are gone");
}

/// The local database we write equals the one pacman itself writes for the same packages
/// (install dates and validation aside).
#[test]
fn local_database_matches_pacmans_own() {
    let c = config("ok", "Never", &["core", "extra"], &["base"]);
    let (ours, r) = run("vs-pacman-ours", &c, false);
    r.unwrap();
    let golden = scratch("arch-vs-pacman-golden");
    let groot = golden.join("root");
    std::fs::create_dir_all(groot.join("var/lib/pacman")).unwrap();
    std::fs::write(golden.join("pacman.conf"), conf_text("ok", "Never", &["core", "extra"])).unwrap();
    sh(&format!(
        "pacman -Sy --noconfirm --noscriptlet --noprogressbar --config {g}/pacman.conf --root {r} --dbpath {r}/var/lib/pacman --cachedir {g}/cache --hookdir {g}/nohooks base >/dev/null",
        g = golden.display(),
        r = groot.display()
    ))
    .unwrap();
    let strip = |t: String| -> String {
        let mut out = Vec::new();
        let mut skip = false;
        for l in t.lines() {
            if l == "%INSTALLDATE%" || l == "%VALIDATION%" {
                skip = true;
            } else if l.is_empty() {
                if !skip {
                    out.push(l);
                }
                skip = false;
            } else if !skip {
                out.push(l);
            }
        }
        out.join("\n")
    };
    let local = |r: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(r.join("var/lib/pacman/local")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(local(&ours), local(&groot));
    for entry in local(&groot).iter().filter(|e| *e != "ALPM_DB_VERSION") {
        let (a, b) = (ours.join("var/lib/pacman/local").join(entry), groot.join("var/lib/pacman/local").join(entry));
        assert_eq!(strip(read(a.join("desc"))), strip(read(b.join("desc"))), "{entry}/desc");
        assert_eq!(read(a.join("files")), read(b.join("files")), "{entry}/files");
        assert_eq!(std::fs::read(a.join("mtree")).unwrap(), std::fs::read(b.join("mtree")).unwrap(), "{entry}/mtree");
        assert_eq!(a.join("install").exists(), b.join("install").exists(), "{entry}/install");
    }
    assert_eq!(read(ours.join("var/lib/pacman/local/ALPM_DB_VERSION")), read(groot.join("var/lib/pacman/local/ALPM_DB_VERSION")));
}

#[test]
fn server_errors_and_stalls_are_retried_and_resumed() {
    for mode in ["flaky", "stall"] {
        let (root, r) = run(mode, &config(mode, "Required DatabaseOptional", &["core", "extra"], &["greeter"]), false);
        r.unwrap_or_else(|e| panic!("{mode}: {e:#}"));
        assert!(root.join("usr/share/greet/hello.txt").is_file());
    }
}

#[test]
fn corrupt_truncated_and_missing_packages_stop_naming_url_and_package() {
    for (mode, what) in [("corrupt", "SHA-256 mismatch"), ("trunc", "broke")] {
        let (root, r) = run(mode, &config(mode, "Required DatabaseOptional", &["core", "extra"], &["libgreet-ng"]), false);
        let err = format!("{:#}", r.unwrap_err());
        assert!(err.contains("package libgreet-ng 3.0-1") && err.contains("/core/os/x86_64/libgreet-ng-3.0-1-x86_64.pkg.tar.zst") && err.contains(what), "{mode}: {err}");
        assert!(!root.join("usr/lib/libgreet.so.3").exists(), "{mode}: unpacked before it was verified");
    }
    // A package missing from the mirror fails prepare (the URL probe), before any disk.
    let err = format!("{:#}", arch::prepare(&config("missing", "Required DatabaseOptional", &["core", "extra"], &["greeter"])).unwrap_err());
    assert!(err.contains("404") && err.contains("package ") && err.contains(".pkg.tar.zst"), "{err}");
}

#[test]
fn signatures_are_checked_before_and_while_installing() {
    // A package signed by a key outside the keyring: prepare refuses it.
    let err = format!("{:#}", arch::prepare(&config("ok", "Required", &["evil"], &["othersig"])).unwrap_err());
    assert!(err.contains("package othersig 1-1") && err.contains("no signature by a key of"), "{err}");
    // A package changed after signing (the database's SHA-256 fits the new file): the
    // signature fails over the downloaded bytes, before any of them is unpacked.
    let (root, r) = run("tampered", &config("ok", "Required", &["evil"], &["tampered"]), false);
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("package tampered 1-1") && err.contains("BAD signature"), "{err}");
    assert!(!root.join("usr/share/tampered").exists(), "the tampered package was unpacked before its signature was checked");
    // A database with another database's signature; one with none where it is required.
    let err = format!("{:#}", arch::prepare(&config("badsig", "Required", &["core"], &["greeter"])).unwrap_err());
    assert!(err.contains("BAD signature") && err.contains("/core/os/x86_64/core.db"), "{err}");
    let err = format!("{:#}", arch::prepare(&config("ok", "Required DatabaseRequired", &["extra"], &["hooktest"])).unwrap_err());
    assert!(err.contains("extra.db has no signature"), "{err}");
    // Signatures required but no keyring to check them with.
    let mut c = config("ok", "Required", &["core"], &["filesystem"]);
    c.keyring = None;
    assert!(format!("{:#}", arch::prepare(&c).unwrap_err()).contains("no keyring was given"));
    // A keyring without the signing key.
    let mut c = config("ok", "Required", &["core"], &["filesystem"]);
    c.keyring = Some(fixture().join("keys/sub.gpg"));
    assert!(format!("{:#}", arch::prepare(&c).unwrap_err()).contains("no signature by a key of"));
}

#[test]
fn a_dotdot_member_never_writes_outside_the_root() {
    let (_, r) = run("dotdot", &config("ok", "Required", &["evil"], &["dotdot"]), false);
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("`..`") && err.contains("package dotdot 1-1"), "{err}");
    canary_untouched();
}

#[test]
fn unknown_targets_and_unmet_dependencies_fail_prepare() {
    let err = format!("{:#}", arch::prepare(&config("ok", "Required", &["core"], &["nonexistent"])).unwrap_err());
    assert!(err.contains("target not found: nonexistent"), "{err}");
    // Without extra, greeter's libgreet>=1.2 is met (libgreet-ng in core); libgreet-old alone would not do.
    let err = format!("{:#}", arch::prepare(&config("ok", "Required DatabaseOptional", &["extra"], &["hooktest"])).unwrap_err());
    assert!(err.contains("(hooktest) → hooktest: no package satisfies the dependency sh"), "{err}");
}
