//! `image=` and `image_sha256=` (or `--image`, `--image-sha256`): install from an image
//! `anemos build` made, instead of running the package manager on every host. A URL must
//! come with its SHA-256 (the installer verifies the bytes against it: the pin is the
//! trust); a local file gets its SHA-256 computed when the command that installs serves it.

use super::Ctx;
use crate::plan::ImageSource;

pub fn image(cx: &mut Ctx<'_>, from_command_line: Option<(&str, Option<&str>)>) -> Option<Option<ImageSource>> {
    let (location, sha256, flag) = match from_command_line {
        Some((l, s)) => (l.trim().to_string(), s.map(|s| s.trim().to_ascii_lowercase()), true),
        None => match cx.get("image") {
            Some(l) => (l.trim().to_string(), cx.get("image_sha256").map(|s| s.trim().to_ascii_lowercase()), false),
            None => {
                if cx.get("image_sha256").is_some() {
                    cx.warn("image_sha256", "image_sha256 is only used with image=");
                }
                return Some(None);
            }
        },
    };
    let (name, sha_name) = if flag { ("--image", "--image-sha256") } else { ("image", "image_sha256") };
    let report = |cx: &mut Ctx<'_>, var: &str, msg: String| if flag { cx.error("image", msg) } else { cx.error(var, msg) };
    if location.contains(char::is_whitespace) || location.is_empty() {
        report(cx, "image", format!("{name}={location:?}: one URL (http:// or https://) or one file path"));
        return None;
    }
    let source = ImageSource { location, sha256 };
    if let Some(s) = &source.sha256 {
        if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
            report(cx, "image_sha256", format!("{sha_name}={s:?}: not a SHA-256 (64 hexadecimal digits)"));
            return None;
        }
    }
    if source.location.contains("://") && !source.is_url() {
        report(cx, "image", format!("{name}={:?}: only http:// and https:// URLs (or a local file) are fetched", source.location));
        return None;
    }
    if source.is_url() && source.sha256.is_none() {
        report(
            cx,
            "image",
            format!(
                "{name}={}: a URL needs its SHA-256 pinned ({sha_name}=…, printed by `anemos build` and kept in the image's .json): the installer trusts the bytes only through it",
                source.location
            ),
        );
        return None;
    }
    Some(Some(source))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::imgbuild::diag::Diagnostics;
    use crate::imgbuild::prescan;

    fn run(vars: &[(&str, &str)], flag: Option<(&str, Option<&str>)>) -> (Option<Option<crate::plan::ImageSource>>, String) {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let pre = prescan::scan("");
        let mut diags = Diagnostics::default();
        let mut cx = super::super::Ctx { vars: &vars, pre: &pre, diags: &mut diags };
        let r = super::image(&mut cx, flag);
        (r, diags.render())
    }

    #[test]
    fn urls_need_a_pin_files_do_not() {
        let sha = "ab".repeat(32);
        assert_eq!(run(&[], None).0, Some(None));
        let (r, d) = run(&[("image", "https://images.test/a.tar.zst"), ("image_sha256", &sha.to_uppercase())], None);
        assert_eq!(r.unwrap().unwrap().sha256.as_deref(), Some(sha.as_str()), "{d}");
        let (r, d) = run(&[("image", "https://images.test/a.tar.zst")], None);
        assert!(r.is_none() && d.contains("needs its SHA-256 pinned"), "{d}");
        let (r, d) = run(&[("image", "build/a.tar.zst")], None);
        assert!(r.unwrap().unwrap().sha256.is_none(), "{d}");
        let (r, d) = run(&[("image", "ftp://x/a")], None);
        assert!(r.is_none() && d.contains("only http:// and https://"), "{d}");
        let (r, d) = run(&[("image", "a.tar.zst"), ("image_sha256", "abc")], None);
        assert!(r.is_none() && d.contains("not a SHA-256"), "{d}");
        // The command line wins over the IMGBUILD.
        let (r, _) = run(&[("image", "https://other/x")], Some(("local.tar.zst", None)));
        assert_eq!(r.unwrap().unwrap().location, "local.tar.zst");
    }
}
