//! Our Debian version ordering judged by `dpkg --compare-versions` on a generated table:
//! random versions built from the pieces that make the ordering tricky (epochs, `~`, `+`,
//! letters, leading zeros, hyphens in the upstream part) plus neighbouring pairs of the real
//! versions in this host's dpkg status file.

use std::cmp::Ordering;
use std::io::Write;
use std::process::{Command, Stdio};

use installer::packages::debian::version::Version;

fn generated(n: usize) -> Vec<String> {
    const PIECES: &[&str] = &["0", "1", "2", "9", "10", "01", "a", "b", "Z", "~", "~~", "+", ".", "-", "~rc1", "+b1", "deb12u", "ubuntu", "+dfsg", "0.0", "1a", "a1"];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |m: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % m
    };
    let mut out = Vec::new();
    while out.len() < n {
        let mut v = String::new();
        if next(5) == 0 {
            v.push_str(&format!("{}:", next(3)));
        }
        v.push_str(["0", "1", "2", "10"][next(4)]);
        for _ in 0..next(5) {
            v.push_str(PIECES[next(PIECES.len())]);
        }
        if Version::parse(&v).is_ok() && !v.ends_with('-') && !v.contains("-~") {
            out.push(v);
        }
    }
    out
}

fn host_versions() -> Vec<String> {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").expect("reading /var/lib/dpkg/status");
    let mut v: Vec<String> = status.lines().filter_map(|l| l.strip_prefix("Version: ")).map(str::to_string).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn ordering_matches_dpkg_compare_versions() {
    let gen = generated(1200);
    let mut pairs: Vec<(String, String)> = gen.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect();
    pairs.extend(gen.iter().take(100).map(|v| (v.clone(), v.clone())));
    let real = host_versions();
    pairs.extend(real.windows(2).map(|w| (w[0].clone(), w[1].clone())));
    pairs.push(("1.0".into(), "1.0-0".into()));
    // One shell, one dpkg call per relation: prints <, = or > per pair.
    let script = "while read -r a b; do if dpkg --compare-versions \"$a\" lt \"$b\"; then echo '<'; elif dpkg --compare-versions \"$a\" eq \"$b\"; then echo '='; else echo '>'; fi; done";
    let mut child = Command::new("sh").arg("-c").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sh");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (a, b) in &pairs {
            writeln!(stdin, "{a} {b}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let verdicts: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(verdicts.len(), pairs.len());
    let mut mismatches = Vec::new();
    for ((a, b), dpkg) in pairs.iter().zip(&verdicts) {
        let ours = match Version::parse(a).unwrap().cmp(&Version::parse(b).unwrap()) {
            Ordering::Less => "<",
            Ordering::Equal => "=",
            Ordering::Greater => ">",
        };
        if ours != *dpkg {
            mismatches.push(format!("{a} {ours} {b}, dpkg says {dpkg}"));
        }
    }
    assert!(mismatches.is_empty(), "{} of {} pairs differ:\n{}", mismatches.len(), pairs.len(), mismatches.join("\n"));
    eprintln!("{} pairs agree with dpkg", pairs.len());
}
