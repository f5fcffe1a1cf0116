//! The test server of the install and deploy tests and of the deploy bench:
//! examples/debian-minimal (UEFI, systemd-boot) with a swap partition and a second disk that
//! every install keeps, built once as an image by `anemos build` (natively, from the
//! caching mirror) and installed from it by `anemos image --image`, booted from copies of
//! its disks with ssh and the installer's event endpoint forwarded to loopback, and
//! reinstalled with `anemos deploy`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anemos_qemu::{Config, Console, Disk, Firmware, Net, Ovmf, Vm};
use anyhow::{bail, Context, Result};

use crate::mirror::MirrorProxy;
use crate::{anemos, anemos_bin, free_port, scratch, sh, shell_quote, workspace};

/// How long a boot to the login prompt may take under TCG.
pub const BOOT: Duration = Duration::from_secs(300);

/// The caching proxy for this process, and the mirror arguments for `anemos image` (as the
/// workstation sees it: 127.0.0.1).
pub fn mirror_args() -> Result<Vec<String>> {
    static PROXY: OnceLock<MirrorProxy> = OnceLock::new();
    let proxy = match PROXY.get() {
        Some(p) => p,
        None => {
            let started = MirrorProxy::start(0).context("starting the caching mirror")?;
            PROXY.get_or_init(|| started)
        }
    };
    let sources = proxy.sources_for("bookworm").context("the host's apt sources")?;
    let Some(main) = sources.first() else { bail!("the host's apt sources name no Debian mirror") };
    let mut args = vec!["--mirror".to_string(), main.uri.clone()];
    if let Some(sec) = sources.iter().find(|s| s.suite.ends_with("-security")) {
        args.extend(["--security-mirror".to_string(), sec.uri.clone()]);
    }
    Ok(args)
}

/// The same mirrors as a QEMU guest reaches them (user networking: the host is 10.0.2.2).
pub fn guest_mirror_args() -> Result<Vec<String>> {
    Ok(mirror_args()?.iter().map(|a| a.replace("://127.0.0.1", "://10.0.2.2")).collect())
}

/// A scratch copy of an example with a fresh ssh key for its `demo` user; returns
/// (project, scratch dir). The private key is `id_ed25519` in the scratch dir.
pub fn project(name: &str, from: &str) -> Result<(PathBuf, PathBuf)> {
    let dir = scratch(name);
    sh(&format!("cp -a {}/. {}/project", workspace().join(from).display(), dir.display()))?;
    let key = dir.join("id_ed25519");
    sh(&format!("ssh-keygen -q -t ed25519 -N '' -f {}", key.display()))?;
    let auth = dir.join("project/files/home/demo/.ssh/authorized_keys");
    if auth.exists() {
        std::fs::copy(key.with_extension("pub"), &auth)?;
    }
    Ok((dir.join("project"), dir))
}

/// `anemos image` with the test mirror and the console log in `out/install.log`; returns
/// the image path.
pub fn build(project: &Path, out: &Path, extra: &[&str]) -> Result<PathBuf> {
    let mut args: Vec<String> = vec!["image".into(), project.display().to_string(), "-o".into(), out.display().to_string()];
    args.extend(mirror_args()?);
    args.extend(["--log".into(), out.join("install.log").display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = anemos(&refs)?;
    let path = summary.lines().next().and_then(|l| l.strip_prefix("built ")).and_then(|l| l.split(" in ").next());
    path.map(PathBuf::from).with_context(|| format!("`anemos image` printed no `built … in …`: {summary}"))
}

/// `anemos build PROJECT` (natively, as root) through the caching mirror into `out`;
/// returns the image and the SHA-256 `anemos build` printed.
pub fn build_image(project: &Path, out: &Path) -> Result<(PathBuf, String)> {
    let name = project.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "project".into());
    let image = out.join(format!("{name}.image.tar.zst"));
    let mut args: Vec<String> = vec!["build".into(), project.display().to_string(), "-o".into(), image.display().to_string()];
    args.extend(mirror_args()?);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = anemos(&refs)?;
    let sha = summary.lines().find_map(|l| l.trim().strip_prefix("image_sha256=")).with_context(|| format!("`anemos build` printed no image_sha256=: {summary}"))?;
    Ok((image, sha.to_string()))
}

/// Serves the files of `dir` on loopback for QEMU guests: returns the base URL they use
/// (`http://10.0.2.2:PORT/ok`), under which `NAME` is `dir/NAME`.
pub fn serve_for_guests(dir: &Path) -> String {
    let base = crate::serve::start(dir.to_path_buf(), |_| false, Box::new(|_, _| None));
    format!("{}/ok", base.replace("://127.0.0.1", "://10.0.2.2"))
}

/// Waits for the login prompt, which may already have been printed before a later line the
/// caller waited for (getty and the example's report unit race).
pub fn wait_login(vm: &mut Vm) -> Result<()> {
    if !vm.output_text().contains(" login: ") {
        vm.expect("login:", BOOT)?;
    }
    Ok(())
}

/// The built server.
pub struct ServerBuild {
    pub project: PathBuf,
    pub dir: PathBuf,
    pub image: PathBuf,
    /// The kept disk (ext4 with files), its image checksum before the build, and the
    /// checksums of its files as [`DATA_SUMS`] prints them.
    pub data: PathBuf,
    pub data_sum: String,
    pub data_files: String,
    /// The system image (`anemos build`) the server was installed from, and its SHA-256.
    pub os_image: PathBuf,
    pub os_image_sha: String,
}

const SERVER_LAYOUT: &str = "
# The test's variant: swap, and a second disk kept across installs.
hostname=server
disk=serial:server-system
partitions=\"
\tesp   256M  esp   vfat  /boot/efi
\tswap  256M  swap  swap
\troot  rest  root  ext4  /
\"
preserve=\"
\tserial:server-data  /srv/data  ext4  defaults
\"
";

/// The checksums of the kept disk's files, read in the guest (as the demo user, with sudo).
pub const DATA_SUMS: &str = "sudo sh -c \"cd /srv/data && find . -type f | sort | xargs -d '\\n' sha256sum\"";

/// Builds the server in the scratch dir `name`: its image natively (about a minute), then
/// the server's disk from it in a QEMU guest (about a minute under TCG).
pub fn build_server(name: &str) -> Result<ServerBuild> {
    let (project, dir) = project(name, "examples/debian-minimal")?;
    let imgbuild = project.join("IMGBUILD");
    let text = std::fs::read_to_string(&imgbuild)? + SERVER_LAYOUT;
    std::fs::write(&imgbuild, text)?;
    let seed = dir.join("data-seed");
    sh(&format!("mkdir -p {0}/notes && echo 'kept across installs' > {0}/notes/kept.txt && head -c 4194304 /dev/urandom > {0}/blob", seed.display()))?;
    let data_files = sh(&format!("cd {} && find . -type f | sort | xargs -d '\\n' sha256sum", seed.display()))?;
    let data = dir.join("data.img");
    sh(&format!("mke2fs -q -t ext4 -L data -d {} {} 64M", seed.display(), data.display()))?;
    let data_sum = sh(&format!("sha256sum < {}", data.display()))?;
    let attach = format!("{}:server-data", data.display());
    let (os_image, os_image_sha) = build_image(&project, &dir)?;
    let image = build(&project, &dir, &["--attach", &attach, "--image", &os_image.display().to_string()])?;
    Ok(ServerBuild { project, dir, image, data, data_sum, data_files, os_image, os_image_sha })
}

impl ServerBuild {
    /// The server an earlier run built in the scratch dir `name`, if it is there (by hand:
    /// `ANEMOS_TEST_REUSE_IMAGES=1`, or the bench's reuse switch). Its data disk is as built.
    pub fn kept(name: &str) -> Option<Result<ServerBuild>> {
        let dir = workspace().join("target/test-scratch").join(name);
        let image = dir.join("debian-minimal.img");
        let os_image = dir.join("project.image.tar.zst");
        if !image.is_file() || !os_image.is_file() || !dir.join("data-seed").is_dir() {
            return None;
        }
        let load = || -> Result<ServerBuild> {
            let data_files = sh(&format!("cd {} && find . -type f | sort | xargs -d '\\n' sha256sum", dir.join("data-seed").display()))?;
            let data = dir.join("data.img");
            let data_sum = sh(&format!("sha256sum < {}", data.display()))?;
            let os_image_sha = sh(&format!("sha256sum < {} | cut -d' ' -f1", os_image.display()))?.trim().to_string();
            Ok(ServerBuild { project: dir.join("project"), image, data, data_sum, data_files, os_image, os_image_sha, dir })
        };
        Some(load())
    }

    /// Copies of the server's disks in `dir`, with the serials its IMGBUILD selects.
    pub fn disks(&self, dir: &Path) -> Result<Vec<Disk>> {
        let (image, data) = (dir.join("server.img"), dir.join("data.img"));
        sh(&format!("cp --sparse=always {} {} && cp --sparse=always {} {}", self.image.display(), image.display(), self.data.display(), data.display()))?;
        Ok(vec![Disk { serial: Some("server-system".into()), ..Disk::raw(&image) }, Disk { serial: Some("server-data".into()), ..Disk::raw(&data) }])
    }

    /// A copy of the server's project in the scratch dir `name` with `lines` appended to its
    /// IMGBUILD (later assignments win in the shell).
    pub fn variant(&self, name: &str, lines: &str) -> Result<PathBuf> {
        let dir = scratch(name);
        sh(&format!("cp -a {}/. {}/", self.project.display(), dir.display()))?;
        let imgbuild = dir.join("IMGBUILD");
        let text = std::fs::read_to_string(&imgbuild)? + lines;
        std::fs::write(&imgbuild, text)?;
        Ok(dir)
    }

    /// Boots copies of the disks in the scratch dir `name` with `memory_mib` of memory and
    /// waits for the login prompt. Reboots reset the VM (a real machine), they do not end it.
    pub fn start(&self, name: &str, memory_mib: u32) -> Result<Server> {
        let dir = scratch(name);
        let (ssh_port, events_port) = (free_port(), free_port());
        let disks = self.disks(&dir)?;
        let mut config = Config::from_disk(disks[0].clone(), Firmware::Uefi(Ovmf::find()?));
        config.disks = disks;
        config.memory_mib = memory_mib;
        config.net = Some(Net { forwards: vec![(ssh_port, 22), (events_port, 7777)], ..Default::default() });
        config.allow_reboot = true;
        let mut vm = Vm::start(&config, Console::Capture(dir.join("console.log")))?;
        // Consumed, so that a later expect("login:") waits for the next boot's prompt.
        vm.expect("login:", BOOT)?;
        // The demo user of the example, with sudo: how its owner would deploy to it.
        let ssh_config = dir.join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host server\n  HostName 127.0.0.1\n  Port {ssh_port}\n  User demo\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  ConnectTimeout 20\n",
                self.dir.join("id_ed25519").display()
            ),
        )?;
        Ok(Server { vm, config, dir, events_port, ssh_config, install_timeout_s: 2400 })
    }
}

/// A running server.
pub struct Server {
    pub vm: Vm,
    /// The VM's profile (its disks are the copies in `dir`).
    pub config: Config,
    pub dir: PathBuf,
    pub events_port: u16,
    pub ssh_config: PathBuf,
    /// `anemos deploy --timeout`: how long the install may take.
    pub install_timeout_s: u64,
}

/// What `anemos deploy` did.
pub struct Deployed {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Server {
    /// Runs a command on the server over ssh as the demo user, retrying while sshd is not
    /// up yet.
    pub fn ssh(&self, cmd: &str) -> Result<String> {
        let line = format!("ssh -F {} server {}", self.ssh_config.display(), shell_quote(cmd));
        for _ in 0..20 {
            if let Ok(out) = sh(&line) {
                return Ok(out);
            }
            std::thread::sleep(Duration::from_secs(5));
        }
        sh(&line)
    }

    /// Powers the server off from inside and boots the same disks again through `firmware`
    /// (the console in `dir/console-NAME.log`), without waiting for it to come up.
    pub fn restart_with(&mut self, firmware: Firmware, name: &str) -> Result<()> {
        // The connection drops as the system goes down: the command's status says nothing.
        let _ = sh(&format!("ssh -F {} server 'sudo systemctl poweroff'", self.ssh_config.display()));
        if self.vm.wait_exit(Duration::from_secs(180)).is_err() {
            self.vm.kill()?;
            bail!("the server did not power off within 3 minutes (console: {})", self.dir.join("console.log").display());
        }
        self.config.firmware = firmware;
        self.vm = Vm::start(&self.config, Console::Capture(self.dir.join(format!("console-{name}.log"))))?;
        Ok(())
    }

    /// `anemos deploy server --sudo` of `project` through the guest's view of the mirror.
    pub fn deploy(&self, project: &Path, extra: &[&str]) -> Result<Deployed> {
        let mirrors = guest_mirror_args()?;
        let events = format!("127.0.0.1:{}", self.events_port);
        let ssh_config = self.ssh_config.display().to_string();
        let project = project.display().to_string();
        let timeout = self.install_timeout_s.to_string();
        let mut args = vec!["deploy", "server", "-C", &project, "--ssh-config", &ssh_config, "--sudo", "--events", &events, "--yes", "--timeout", &timeout, "--ssh-timeout", "900"];
        args.extend(mirrors.iter().map(String::as_str));
        args.extend(extra);
        let out = std::process::Command::new(anemos_bin()).args(&args).output().context("running anemos deploy")?;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        std::fs::write(self.dir.join(format!("deploy-{}.log", self.vm.elapsed().as_secs())), format!("{stdout}\n{stderr}"))?;
        Ok(Deployed { ok: out.status.success(), stdout, stderr })
    }
}
