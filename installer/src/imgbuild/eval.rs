//! Evaluating an IMGBUILD the way makeimg and makepkg do: `/bin/sh` sources it in the
//! project directory with a clean environment, and we read back every variable exactly as
//! the shell holds it (quotes, multi-line lists, values built from other variables) and
//! which functions it defined.
//!
//! How the values come back: the file is sourced under `set -a`, so every assignment is
//! exported, and the names the pre-scan found are exported explicitly as well (in case the
//! file said `set +a`). The shell then `exec`s `cat /proc/self/environ`, whose environment
//! is exactly the exported variables, NUL-separated: no quoting to undo, any byte but NUL
//! survives. The IMGBUILD's own output goes to stderr; the dump travels on fd 3.
//!
//! Sourcing runs the file's top-level code on the workstation, as makepkg does with a
//! PKGBUILD; it is bounded by a timeout so a stray loop cannot hang `anemos check`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::diag::{Diagnostics, Location};
use super::prescan::Prescan;

/// The functions whose presence the plan records; any other function the pre-scan found is
/// checked too.
pub const KNOWN_FUNCTIONS: &[&str] = &["provision", "setup", "cleanup"];

/// How long sourcing may take.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The PATH of the clean environment.
const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What sourcing the IMGBUILD left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluated {
    pub variables: BTreeMap<String, String>,
    pub functions: BTreeSet<String>,
}

/// Sources `project/IMGBUILD`. Shell messages while sourcing (a command not found) become
/// warnings in `diags`; a syntax error, an `exit`, or a timeout is an error and `None`.
pub fn evaluate(project: &Path, prescan: &Prescan, diags: &mut Diagnostics) -> Option<Evaluated> {
    let script = script(prescan);
    let out = match run(project, &script, TIMEOUT) {
        Ok(o) => o,
        Err(msg) => {
            diags.error(Location::Imgbuild { line: None }, msg);
            return None;
        }
    };
    let messages = shell_messages(&out.stderr);
    let env = parse_environ(&out.stdout);
    let complete = out.success && env.as_ref().is_some_and(|e| e.contains_key("__anemos_fns"));
    if !complete {
        if messages.iter().all(|(line, _)| line.is_none()) {
            let status = out.status_text;
            diags.error(Location::Imgbuild { line: None }, format!("the shell stopped ({status}) before the IMGBUILD was fully read; an IMGBUILD must not call exit or fail to parse"));
        }
        for (line, msg) in messages {
            diags.error(Location::Imgbuild { line }, format!("shell: {msg}"));
        }
        return None;
    }
    for (line, msg) in messages {
        diags.warn(Location::Imgbuild { line }, format!("shell: {msg}"));
    }
    let mut env = env?;
    let functions = env.remove("__anemos_fns").unwrap_or_default().split_whitespace().map(str::to_string).collect();
    let variables = env.into_iter().filter(|(k, v)| !is_shell_internal(k, v)).collect();
    Some(Evaluated { variables, functions })
}

fn script(prescan: &Prescan) -> String {
    let names: Vec<&str> = prescan.assignments.keys().map(String::as_str).collect();
    let mut fns: Vec<&str> = KNOWN_FUNCTIONS.to_vec();
    fns.extend(prescan.functions.keys().map(String::as_str).filter(|f| !KNOWN_FUNCTIONS.contains(f)));
    let export = if names.is_empty() { String::new() } else { format!("export {} 2>/dev/null\n", names.join(" ")) };
    format!(
        "exec 3>&1 1>&2\nset -a\n. ./IMGBUILD\nset +a\n{export}__anemos_fns=\nfor __anemos_f in {}; do\n  if [ \"$(command -v \"$__anemos_f\")\" = \"$__anemos_f\" ]; then __anemos_fns=\"$__anemos_fns $__anemos_f\"; fi\ndone\nexport __anemos_fns\nexec cat /proc/self/environ >&3\n",
        fns.join(" ")
    )
}

/// Variables the shell or our clean environment put there, not the IMGBUILD.
fn is_shell_internal(name: &str, value: &str) -> bool {
    name.starts_with("__anemos_") || matches!(name, "PWD" | "OLDPWD" | "SHLVL" | "_") || (name == "PATH" && value == CLEAN_PATH) || (name == "LC_ALL" && value == "C")
}

struct Output {
    success: bool,
    status_text: String,
    stdout: Vec<u8>,
    stderr: String,
}

fn run(project: &Path, script: &str, timeout: Duration) -> Result<Output, String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("anemos-eval")
        .current_dir(project)
        .env_clear()
        .env("PATH", CLEAN_PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run /bin/sh to read the IMGBUILD in {}: {e}", project.display()))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    });
    // Wait in a thread so the exit is seen at once (no polling); past the timeout, kill the
    // shell by its pid (it cannot have been reaped: the waiter has not returned).
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(format!("waiting for /bin/sh: {e}")),
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            return Err(format!("sourcing the IMGBUILD took longer than {} s; does its top level wait for input or loop?", timeout.as_secs_f32()));
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output { success: status.success(), status_text: status.to_string(), stdout, stderr })
}

fn parse_environ(bytes: &[u8]) -> Option<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for entry in bytes.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let text = String::from_utf8_lossy(entry);
        let (k, v) = text.split_once('=')?;
        env.insert(k.to_string(), v.to_string());
    }
    Some(env)
}

/// The shell's messages about the IMGBUILD, with their line when the shell gave one:
/// dash writes `anemos-eval: 3: ./IMGBUILD: MSG`, bash `./IMGBUILD: line 3: MSG`. Other
/// lines are the IMGBUILD's own output and are only logged.
fn shell_messages(stderr: &str) -> Vec<(Option<usize>, String)> {
    let mut out = Vec::new();
    for raw in stderr.lines() {
        let line = raw.strip_prefix("anemos-eval: ").unwrap_or(raw);
        let parsed = if let Some((num, rest)) = line.split_once(": ./IMGBUILD: ") {
            num.parse().ok().map(|n| (Some(n), rest.to_string()))
        } else if let Some(rest) = line.strip_prefix("./IMGBUILD: line ") {
            rest.split_once(": ").and_then(|(n, m)| n.parse().ok().map(|n| (Some(n), m.to_string())))
        } else {
            None
        };
        match parsed {
            Some(m) => out.push(m),
            None if raw.starts_with("anemos-eval: ") => out.push((None, line.to_string())),
            None => log::debug!("IMGBUILD output: {raw}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imgbuild::prescan::scan;

    fn eval_text(text: &str) -> (Option<Evaluated>, Diagnostics) {
        let dir = std::env::temp_dir().join(format!("anemos-eval-{}-{}", std::process::id(), text.len()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("IMGBUILD"), text).unwrap();
        let mut d = Diagnostics::default();
        let e = evaluate(&dir, &scan(text), &mut d);
        let _ = std::fs::remove_dir_all(&dir);
        (e, d)
    }

    #[test]
    fn values_come_back_exactly() {
        let text = "imgname=mx\nsuite=bookworm\ndebian_suite=\"$suite\"\npackages=\"\n  base\n  it's \\\"quoted\\\"\n\"\nempty=\nset +a\nlate='a  b'\nprovision() { :; }\nhelper() { :; }\n";
        let (e, d) = eval_text(text);
        let e = e.unwrap_or_else(|| panic!("{}", d.render()));
        assert_eq!(e.variables["debian_suite"], "bookworm");
        assert_eq!(e.variables["packages"], "\n  base\n  it's \"quoted\"\n");
        assert_eq!(e.variables["empty"], "");
        assert_eq!(e.variables["late"], "a  b");
        assert!(!e.variables.contains_key("PATH") && !e.variables.contains_key("PWD"));
        assert_eq!(e.functions, ["helper", "provision"].into_iter().map(String::from).collect());
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let (e, d) = eval_text("imgname=x\nif then\n");
        assert!(e.is_none());
        let text = d.render();
        assert!(text.starts_with("IMGBUILD:2: shell: Syntax error"), "{text}");
    }

    #[test]
    fn a_looping_imgbuild_is_stopped() {
        let dir = tempfile::Builder::new().prefix("anemos-eval-loop-").tempdir().unwrap();
        let start = std::time::Instant::now();
        let e = run(dir.path(), "while :; do :; done", Duration::from_millis(300)).err().unwrap();
        assert!(e.contains("took longer than 0.3 s"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn exit_and_missing_commands() {
        let (e, d) = eval_text("imgname=x\nexit 0\n");
        assert!(e.is_none());
        assert!(d.render().contains("must not call exit"), "{}", d.render());
        let (e, d) = eval_text("no_such_command_here\nimgname=x\n");
        assert_eq!(e.unwrap().variables["imgname"], "x");
        assert!(d.render().starts_with("IMGBUILD:1: warning: shell: no_such_command_here: not found"), "{}", d.render());
    }
}
