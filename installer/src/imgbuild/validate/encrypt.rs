//! `encrypt=`: partitions encrypted with LUKS2, one per line,
//! `PARTITION SECRET [prompt|unattended]`. The layout's own rules on them (the partition
//! exists, holds ext4, is large enough) are [`Layout::problems`], what the rest of the
//! plan must allow is `storage.rs`; here are the line's syntax and its secret.

use super::Ctx;
use crate::files::template::is_secret_name;
use crate::imgbuild::diag::{not_allowed, Location};
use crate::plan::*;

/// One line of `encrypt=`.
pub fn entry(line: &str) -> Result<Encrypted, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if !(2..=3).contains(&w.len()) {
        return Err("expected PARTITION SECRET [prompt|unattended]".into());
    }
    if !is_secret_name(w[1]) {
        return Err(format!("secret name {:?}: use letters, digits, '_', '.', '-'", w[1]));
    }
    let unlock = match w.get(2).copied() {
        None | Some("prompt") => Unlock::Prompt,
        Some("unattended") => Unlock::Unattended,
        Some(u) => return Err(not_allowed(u, &format!("{u:?} is not a way to unlock"), &["prompt", "unattended"])),
    };
    Ok(Encrypted { partition: w[0].to_string(), secret: w[1].to_string(), unlock })
}

/// Where each encrypted partition's secret is used: its `encrypt=` line.
pub fn secret_uses(cx: &Ctx<'_>, layout: &Layout) -> Vec<(String, Location)> {
    let lines = cx.lines("encrypt");
    layout
        .encrypted
        .iter()
        .map(|e| {
            let offset = lines.iter().find(|(_, l)| l.split_whitespace().next() == Some(e.partition.as_str())).map(|(o, _)| *o).unwrap_or(0);
            (e.secret.clone(), cx.loc_within("encrypt", offset))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_prompt_by_default() {
        assert_eq!(entry("root disk_key").unwrap(), Encrypted { partition: "root".into(), secret: "disk_key".into(), unlock: Unlock::Prompt });
        assert_eq!(entry("srv srv.key unattended").unwrap().unlock, Unlock::Unattended);
        assert!(entry("root").unwrap_err().contains("expected PARTITION SECRET"));
        assert!(entry("root a/b").unwrap_err().contains("secret name"));
        assert!(entry("root k unatended").unwrap_err().contains("did you mean \"unattended\""));
    }
}
