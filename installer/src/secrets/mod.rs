//! Secrets, on the workstation only. A secret NAME is, in this order of lookup:
//! - `secrets/NAME.age`: age-encrypted (binary or armored), decrypted with the user's age
//!   identity file (see [`identity_path`]);
//! - `secrets/NAME`: a plain file, which git must ignore (a warning names it when git tracks
//!   it);
//! - the output of `secrets_command` with `%s` replaced by NAME (e.g. `pass show mx/%s`).
//!
//! Both `NAME` and `NAME.age` existing is an error (which one is meant?). Only secrets the
//! templates use are revealed. Values are never logged or put in messages: errors name the
//! secret and the source, never the content.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::plan::{SecretRef, SecretSource};

/// Where a secret would come from, for `anemos check`; `Err` explains why it cannot.
pub fn locate(project: &Path, name: &str, command: Option<&str>) -> std::result::Result<SecretSource, String> {
    let dir = project.join("secrets");
    let age = dir.join(format!("{name}.age"));
    let plain = dir.join(name);
    match (is_file(&age), is_file(&plain)) {
        (true, true) => Err(format!("both secrets/{name} and secrets/{name}.age exist; keep one")),
        (true, false) => Ok(SecretSource::Age),
        (false, true) => Ok(SecretSource::Plain),
        (false, false) if command.is_some() => Ok(SecretSource::Command),
        (false, false) => Err(format!("no secret {name:?}: there is no secrets/{name}.age or secrets/{name}, and no secrets_command")),
    }
}

fn is_file(p: &Path) -> bool {
    std::fs::symlink_metadata(p).map(|m| m.is_file()).unwrap_or(false)
}

/// The age identity file: `--identity`, else `$ANEMOS_AGE_IDENTITY`, else
/// `$XDG_CONFIG_HOME/anemos/age.key` (`~/.config/anemos/age.key`).
pub fn identity_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ANEMOS_AGE_IDENTITY").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()).map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("anemos/age.key"))
}

/// Reveals the given secrets. `identity` is needed only when one of them is age-encrypted.
pub fn reveal(project: &Path, refs: &[SecretRef], command: Option<&str>, identity: Option<&Path>) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut identities = None;
    let mut out = BTreeMap::new();
    for r in refs {
        let value = match r.source {
            SecretSource::Plain => std::fs::read(project.join("secrets").join(&r.name)).with_context(|| format!("reading secret secrets/{}", r.name))?,
            SecretSource::Age => {
                if identities.is_none() {
                    identities = Some(load_identities(identity)?);
                }
                let ids = identities.as_deref().unwrap_or(&[]);
                decrypt(&project.join("secrets").join(format!("{}.age", r.name)), ids).with_context(|| format!("secret {:?}", r.name))?
            }
            SecretSource::Command => run_command(project, command.unwrap_or_default(), &r.name)?,
        };
        out.insert(r.name.clone(), value);
    }
    Ok(out)
}

type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

fn load_identities(explicit: Option<&Path>) -> Result<Identities> {
    let path = identity_path(explicit).context("no age identity file: pass --identity FILE or set ANEMOS_AGE_IDENTITY (HOME is not set either)")?;
    let shown = path.display().to_string();
    if !path.is_file() {
        bail!("age identity file {shown} does not exist; pass --identity FILE, set ANEMOS_AGE_IDENTITY, or create it with age-keygen -o {shown}");
    }
    let file = age::IdentityFile::from_file(shown.clone()).with_context(|| format!("reading age identity file {shown}"))?;
    let ids = file.into_identities().map_err(|e| anyhow::anyhow!("age identity file {shown}: {e}"))?;
    if ids.is_empty() {
        bail!("age identity file {shown} holds no identities");
    }
    Ok(ids)
}

fn decrypt(path: &Path, identities: &[Box<dyn age::Identity + Send + Sync>]) -> Result<Vec<u8>> {
    use std::io::Read;
    let shown = path.display();
    let data = std::fs::read(path).with_context(|| format!("reading {shown}"))?;
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(&data[..])).map_err(|e| anyhow::anyhow!("{shown} is not an age file: {e}"))?;
    let mut reader = decryptor.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)).map_err(|e| anyhow::anyhow!("cannot decrypt {shown} with the given identity: {e}"))?;
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).map_err(|e| anyhow::anyhow!("decrypting {shown}: {e}"))?;
    Ok(plain)
}

/// Runs `secrets_command` for one name through `/bin/sh -c` in the project directory (the
/// name is restricted to letters, digits, `_`, `.` and `-`, so it needs no quoting).
fn run_command(project: &Path, command: &str, name: &str) -> Result<Vec<u8>> {
    let cmd = command.replace("%s", name);
    let out = Command::new("/bin/sh").arg("-c").arg(&cmd).current_dir(project).stdin(std::process::Stdio::inherit()).output().with_context(|| format!("running secrets_command for {name:?}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("").trim();
        bail!("secrets_command `{cmd}` failed for secret {name:?} ({}): {first}", out.status);
    }
    if out.stdout.is_empty() {
        bail!("secrets_command `{cmd}` printed nothing for secret {name:?}");
    }
    Ok(out.stdout)
}

/// Plain secrets (`secrets/NAME`) that git tracks, when the project is in a git work tree.
/// A missing git or a project outside a repository gives an empty list.
pub fn tracked_plaintext(project: &Path, names: &[&str]) -> Vec<String> {
    let out = Command::new("git").arg("-C").arg(project).args(["ls-files", "-z", "--", "secrets"]).output();
    let Ok(out) = out else { return Vec::new() };
    if !out.status.success() {
        return Vec::new();
    }
    let tracked: Vec<String> = out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    names.iter().filter(|n| tracked.iter().any(|t| t == &format!("secrets/{n}"))).map(|n| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn age_round_trip_and_wrong_key() {
        let tmp = tempfile::Builder::new().prefix("anemos-secrets-").tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("secrets")).unwrap();
        let key = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        std::fs::write(dir.join("key.txt"), format!("{}\n", key.to_string().expose_secret())).unwrap();
        std::fs::write(dir.join("other.txt"), format!("{}\n", other.to_string().expose_secret())).unwrap();
        let enc = age::encrypt(&key.to_public(), b"s3cret\n").unwrap();
        std::fs::write(dir.join("secrets/db.age"), enc).unwrap();
        std::fs::write(dir.join("secrets/plain"), "p\n").unwrap();
        assert_eq!(locate(dir, "db", None), Ok(SecretSource::Age));
        assert_eq!(locate(dir, "plain", None), Ok(SecretSource::Plain));
        assert!(locate(dir, "none", None).unwrap_err().contains("no secrets_command"));
        assert_eq!(locate(dir, "none", Some("echo %s")), Ok(SecretSource::Command));
        let refs = vec![
            SecretRef { name: "db".into(), source: SecretSource::Age },
            SecretRef { name: "plain".into(), source: SecretSource::Plain },
            SecretRef { name: "cmd".into(), source: SecretSource::Command },
        ];
        let got = reveal(dir, &refs, Some("printf 'from-%s'"), Some(&dir.join("key.txt"))).unwrap();
        assert_eq!(got["db"], b"s3cret\n");
        assert_eq!(got["plain"], b"p\n");
        assert_eq!(got["cmd"], b"from-cmd");
        let err = format!("{:#}", reveal(dir, &refs[..1], None, Some(&dir.join("other.txt"))).unwrap_err());
        assert!(err.contains("cannot decrypt") && !err.contains("s3cret"), "{err}");
        let err = format!("{:#}", reveal(dir, &refs[2..], Some("exit 3 # %s"), None).unwrap_err());
        assert!(err.contains("failed for secret \"cmd\""), "{err}");
    }
}
