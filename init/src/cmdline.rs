//! The init's own kernel command-line options (`anemos.*`), parsed in one place and
//! documented in one table, which `docs/kernel-cmdline.md` mirrors (a test keeps them equal).

use std::time::Duration;

use log::LevelFilter;

/// What the init does after bring-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Install the payload's plan (the default).
    Install,
    /// Go straight to the rescue console.
    Rescue,
    /// Bring up, report the hardware and the ready event, then do `anemos.done`.
    Probe,
}

/// An end state of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Rescue,
    Reboot,
    Poweroff,
    /// Boot the installed kernel directly (loaded by the install).
    Kexec,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Rescue => "rescue",
            Action::Reboot => "reboot",
            Action::Poweroff => "poweroff",
            Action::Kexec => "kexec",
        }
    }
}

/// One documented option: name, accepted values, default, meaning.
pub struct OptionDoc {
    pub name: &'static str,
    pub values: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

pub const OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        name: "anemos.mode",
        values: "install | rescue | probe",
        default: "install",
        meaning: "install the payload's plan; go straight to the rescue console; or bring up, report the hardware and stop",
    },
    OptionDoc {
        name: "anemos.log",
        values: "error | warn | info | debug | trace",
        default: "info",
        meaning: "the most detailed level written to the console and /dev/kmsg (the in-memory log keeps debug and above)",
    },
    OptionDoc { name: "anemos.on_failure", values: "rescue | reboot | poweroff", default: "the plan's on_failure, else rescue", meaning: "what the init does after logging a failure" },
    OptionDoc {
        name: "anemos.done",
        values: "rescue | reboot | poweroff | kexec",
        default: "the plan's on_success (install), poweroff (probe)",
        meaning: "what the init does when its mode finished successfully",
    },
    OptionDoc {
        name: "anemos.target",
        values: "DISK SELECTOR",
        default: "the plan's disk=",
        meaning: "the disk to install on instead of the plan's (image builds name the image: serial:anemos-image)",
    },
    OptionDoc { name: "anemos.modules", values: "NAME[,NAME…]", default: "(none)", meaning: "modules (or aliases) to load by name before coldplug" },
    OptionDoc { name: "anemos.wait", values: "NAME[,NAME…]", default: "(none)", meaning: "block devices (as in /sys/class/block) that must appear before the init goes on" },
    OptionDoc { name: "anemos.wait_timeout", values: "SECONDS", default: "20", meaning: "how long to wait for anemos.wait devices before failing with the list of devices seen" },
    OptionDoc {
        name: "anemos.net",
        values: "dhcp | off",
        default: "dhcp in install mode, off otherwise",
        meaning: "whether and how to bring up the network when the payload does not say (static settings: anemos.ip)",
    },
    OptionDoc { name: "anemos.ip", values: "ADDRESS/PREFIX", default: "(none)", meaning: "a static address instead of DHCP (with anemos.gw, anemos.dns, anemos.iface)" },
    OptionDoc { name: "anemos.gw", values: "ADDRESS", default: "(none)", meaning: "the default gateway for anemos.ip" },
    OptionDoc { name: "anemos.dns", values: "ADDRESS[,ADDRESS…]", default: "(none)", meaning: "name servers for anemos.ip (DHCP supplies its own)" },
    OptionDoc { name: "anemos.iface", values: "NAME | MAC", default: "any Ethernet link with a carrier", meaning: "the interface anemos.net or anemos.ip applies to" },
    OptionDoc { name: "anemos.status_port", values: "PORT", default: "7777", meaning: "TCP port of the event endpoint (it runs only when the payload carries a deploy token)" },
    OptionDoc { name: "anemos.fail", values: "STEP", default: "(none)", meaning: "testing aid: make the named step fail, to exercise the failure routine and the rescue console" },
];

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub log: LevelFilter,
    pub on_failure: Action,
    /// Whether anemos.on_failure was left unset (the plan may then choose).
    pub on_failure_default: bool,
    pub done: Option<Action>,
    /// `anemos.target`: the disk to install on instead of the plan's.
    pub target: Option<installer::plan::DiskSelector>,
    pub modules: Vec<String>,
    pub wait: Vec<String>,
    pub wait_timeout: Duration,
    pub fail: Option<String>,
    /// `anemos.net`: Some(true) dhcp, Some(false) off, None unspecified.
    pub net_dhcp: Option<bool>,
    pub ip: Option<(std::net::IpAddr, u8)>,
    pub gw: Option<std::net::IpAddr>,
    pub dns: Vec<std::net::IpAddr>,
    pub iface: Option<String>,
    /// `anemos.status_port`, when given (else the plan's, else 7777).
    pub status_port: Option<u16>,
    /// Devices named by `console=` options, in order (the last is /dev/console).
    pub consoles: Vec<String>,
    /// Problems found while parsing; logged once logging is up.
    pub warnings: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Install,
            log: LevelFilter::Info,
            on_failure: Action::Rescue,
            on_failure_default: true,
            done: None,
            target: None,
            modules: Vec::new(),
            wait: Vec::new(),
            wait_timeout: Duration::from_secs(20),
            fail: None,
            net_dhcp: None,
            ip: None,
            gw: None,
            dns: Vec::new(),
            iface: None,
            status_port: None,
            consoles: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Splits a kernel command line into words, honouring double quotes like the kernel does.
fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in cmdline.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn action(value: &str) -> Option<Action> {
    match value {
        "rescue" => Some(Action::Rescue),
        "reboot" => Some(Action::Reboot),
        "poweroff" => Some(Action::Poweroff),
        "kexec" => Some(Action::Kexec),
        _ => None,
    }
}

/// Parses the whole kernel command line. Unknown or malformed `anemos.*` options are not
/// fatal: they become warnings and the default stays.
pub fn parse(cmdline: &str) -> Options {
    let mut o = Options::default();
    for word in words(cmdline) {
        let (key, value) = word.split_once('=').unwrap_or((word.as_str(), ""));
        if key == "console" {
            if let Some(dev) = value.split(',').next().filter(|d| !d.is_empty()) {
                o.consoles.push(dev.to_string());
            }
            continue;
        }
        if !key.starts_with("anemos.") {
            continue;
        }
        let bad = |o: &mut Options, allowed: &str| {
            o.warnings.push(format!("ignoring {key}={value:?}: expected {allowed}"));
        };
        match key {
            "anemos.mode" => match value {
                "install" => o.mode = Mode::Install,
                "rescue" => o.mode = Mode::Rescue,
                "probe" => o.mode = Mode::Probe,
                _ => bad(&mut o, "install, rescue or probe"),
            },
            "anemos.log" => match value.parse::<LevelFilter>() {
                Ok(l) if l != LevelFilter::Off => o.log = l,
                _ => bad(&mut o, "error, warn, info, debug or trace"),
            },
            "anemos.on_failure" => match action(value) {
                Some(Action::Kexec) | None => bad(&mut o, "rescue, reboot or poweroff"),
                Some(a) => {
                    o.on_failure = a;
                    o.on_failure_default = false;
                }
            },
            "anemos.done" => match action(value) {
                Some(a) => o.done = Some(a),
                None => bad(&mut o, "rescue, reboot, poweroff or kexec"),
            },
            "anemos.target" => match installer::plan::parse::parse_selector(value) {
                Ok(sel) => o.target = Some(sel),
                Err(e) => bad(&mut o, &format!("a disk selector ({e})")),
            },
            "anemos.modules" => o.modules = list(value),
            "anemos.wait" => o.wait = list(value),
            "anemos.wait_timeout" => match value.parse::<u64>() {
                Ok(s) => o.wait_timeout = Duration::from_secs(s),
                Err(_) => bad(&mut o, "a number of seconds"),
            },
            "anemos.fail" if !value.is_empty() => o.fail = Some(value.to_string()),
            "anemos.net" => match value {
                "dhcp" => o.net_dhcp = Some(true),
                "off" => o.net_dhcp = Some(false),
                _ => bad(&mut o, "dhcp or off"),
            },
            "anemos.ip" => match value.split_once('/').and_then(|(a, p)| Some((a.parse().ok()?, p.parse().ok()?))) {
                Some(ip) => o.ip = Some(ip),
                None => bad(&mut o, "ADDRESS/PREFIX, e.g. 192.0.2.10/24"),
            },
            "anemos.gw" => match value.parse() {
                Ok(gw) => o.gw = Some(gw),
                Err(_) => bad(&mut o, "an IP address"),
            },
            "anemos.dns" => match list(value).iter().map(|d| d.parse()).collect::<Result<Vec<_>, _>>() {
                Ok(d) => o.dns = d,
                Err(_) => bad(&mut o, "IP addresses separated by commas"),
            },
            "anemos.status_port" => match value.parse() {
                Ok(p) => o.status_port = Some(p),
                Err(_) => bad(&mut o, "a TCP port number"),
            },
            "anemos.iface" if !value.is_empty() => o.iface = Some(value.to_string()),
            _ => {
                let known: Vec<&str> = OPTIONS.iter().map(|d| d.name).collect();
                o.warnings.push(format!("ignoring unknown option {word:?} (known: {})", known.join(", ")));
            }
        }
    }
    o
}

impl Options {
    /// The network the command line asks for: `Some(Some(cfg))` a configuration,
    /// `Some(None)` explicitly off, `None` when the command line does not say.
    pub fn network(&self) -> Option<Option<installer::net::NetConfig>> {
        use installer::net::{Interface, Match, Method, NetConfig};
        let matches = match &self.iface {
            Some(i) if i.contains(':') => Match::Mac(i.clone()),
            Some(i) => Match::Name(i.clone()),
            None => Match::Any,
        };
        let method = match (self.ip, self.net_dhcp) {
            (Some(ip), _) => Method::Static { addresses: vec![ip], gateway: self.gw },
            (None, Some(false)) => return Some(None),
            (None, Some(true)) => Method::Dhcp,
            (None, None) => return None,
        };
        Some(Some(NetConfig { interfaces: vec![Interface { matches, method, routes: Vec::new() }], dns: self.dns.clone() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_consoles() {
        let o = parse("BOOT_IMAGE=/vmlinuz console=tty0 console=ttyS0,115200n8 anemos.mode=probe anemos.log=debug anemos.wait=vda,vdb anemos.modules=virtio_blk anemos.wait_timeout=5 quiet");
        assert_eq!(o.mode, Mode::Probe);
        assert_eq!(o.log, LevelFilter::Debug);
        assert_eq!(o.wait, ["vda", "vdb"]);
        assert_eq!(o.modules, ["virtio_blk"]);
        assert_eq!(o.wait_timeout, Duration::from_secs(5));
        assert_eq!(o.consoles, ["tty0", "ttyS0"]);
        assert!(o.warnings.is_empty());
    }

    #[test]
    fn bad_values_warn_and_keep_defaults() {
        let o = parse("anemos.mode=destroy anemos.on_failure=explode anemos.colour=red");
        assert_eq!(o.mode, Mode::Install);
        assert_eq!(o.on_failure, Action::Rescue);
        assert_eq!(o.warnings.len(), 3);
        assert!(o.warnings[2].contains("anemos.colour"));
    }

    #[test]
    fn network_options() {
        let o = parse("anemos.mode=probe anemos.ip=10.0.2.15/24 anemos.gw=10.0.2.2 anemos.dns=10.0.2.3 anemos.iface=52:54:00:12:34:56");
        let net = o.network().unwrap().unwrap();
        assert_eq!(net.dns, ["10.0.2.3".parse::<std::net::IpAddr>().unwrap()]);
        assert!(matches!(net.interfaces[0].matches, installer::net::Match::Mac(_)));
        assert!(parse("anemos.mode=probe").network().is_none());
        assert_eq!(parse("anemos.mode=install anemos.net=off").network(), Some(None));
        assert!(matches!(parse("anemos.net=dhcp").network().unwrap().unwrap().interfaces[0].method, installer::net::Method::Dhcp));
        assert_eq!(parse("anemos.ip=nonsense").warnings.len(), 1);
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(words("a \"b c\" d"), ["a", "b c", "d"]);
    }

    #[test]
    fn every_option_is_documented() {
        let doc = include_str!("../../docs/kernel-cmdline.md");
        for opt in OPTIONS {
            assert!(doc.contains(&format!("`{}=", opt.name)), "docs/kernel-cmdline.md lacks {}", opt.name);
        }
    }
}
