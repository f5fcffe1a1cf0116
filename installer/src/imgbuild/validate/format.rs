//! makeimg's `format`: `raw [SIZE [msdos|gpt [FS]]]` (default `raw 8G msdos ext4`),
//! `tar COMPRESSION`, `dir`; `custom` is refused (it needs `setup()`/`cleanup()` to run a
//! shell in the installer, which has none) with a pointer to `partitions=`.

use super::Ctx;
use crate::imgbuild::diag::{bad_part, Location};
use crate::plan::parse::parse_size;
use crate::plan::{Filesystem, Format, FormatOrigin, TableType, TarCompression};

/// The table and file system `format raw` names, for the legacy one-partition layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawArgs {
    pub table: TableType,
    pub fs: Filesystem,
}

pub const DEFAULT_RAW: RawArgs = RawArgs { table: TableType::Msdos, fs: Filesystem::Ext4 };
const DEFAULT_RAW_SIZE: u64 = 8 << 30;

const FORMATS: &[&str] = &["raw", "tar", "dir"];
const COMPRESSIONS: &[&str] = &["gz", "xz", "zst"];

/// A disk image to boot, whatever the project's format (`anemos test`): a raw format keeps
/// its table and file system, and takes `size` if given; `dir` and `tar` become the default
/// raw image (of `size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForBoot {
    pub size: Option<u64>,
}

/// The effective format for booting (see [`ForBoot`]).
pub fn for_boot(found: (Format, FormatOrigin, Option<RawArgs>), boot: ForBoot) -> (Format, FormatOrigin, Option<RawArgs>) {
    match found {
        (Format::Raw { size }, origin, raw) => match boot.size {
            Some(s) => (Format::Raw { size: s }, FormatOrigin::CommandLine, raw),
            None => (Format::Raw { size }, origin, raw),
        },
        _ => (Format::Raw { size: boot.size.unwrap_or(DEFAULT_RAW_SIZE) }, FormatOrigin::CommandLine, Some(DEFAULT_RAW)),
    }
}

/// The effective format: `--format` if given, else `format=`, else the default.
pub fn format(cx: &mut Ctx<'_>, over: Option<&str>) -> Option<(Format, FormatOrigin, Option<RawArgs>)> {
    let (text, origin, loc) = match (over, cx.get("format")) {
        (Some(o), _) => (o.to_string(), FormatOrigin::CommandLine, Location::Option { name: "--format".into() }),
        (None, Some(f)) => (f.to_string(), FormatOrigin::Imgbuild { line: cx.pre.line_of("format") }, cx.loc("format")),
        (None, None) => return Some((Format::Raw { size: DEFAULT_RAW_SIZE }, FormatOrigin::Default, Some(DEFAULT_RAW))),
    };
    match parse_format(&text) {
        Ok((f, raw)) => Some((f, origin, raw)),
        Err(msg) => {
            cx.diags.error(loc, msg);
            None
        }
    }
}

/// Parses a format string; the error message starts with `format="…"`.
pub fn parse_format(text: &str) -> Result<(Format, Option<RawArgs>), String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let bad = |what: &str| format!("format={text:?}: {what}");
    match words.as_slice() {
        ["raw", rest @ ..] => {
            if rest.len() > 3 {
                return Err(bad("too many words (raw [SIZE [msdos|gpt [FS]]])"));
            }
            let size = match rest.first() {
                Some(s) => parse_size(s, true).map_err(|e| bad(&format!("image size {s:?}: {e}")))?,
                None => DEFAULT_RAW_SIZE,
            };
            if size < (16 << 20) {
                return Err(bad("a raw image must be at least 16M"));
            }
            let table = match rest.get(1).copied() {
                None | Some("msdos") => TableType::Msdos,
                Some("gpt") => TableType::Gpt,
                Some(t) => return Err(bad_part("format", text, t, &format!("{t:?} is not a partition table type"), &["msdos", "gpt"])),
            };
            let fs = match rest.get(2).copied() {
                None | Some("ext4") => Filesystem::Ext4,
                Some(f) => return Err(bad(&format!("{f:?} is not a root file system anemos can make (allowed: ext4)"))),
            };
            Ok((Format::Raw { size }, Some(RawArgs { table, fs })))
        }
        ["tar"] => Err(bad("tar needs a compression (allowed: gz, xz, zst)")),
        ["tar", c] => {
            let compression = match *c {
                "gz" => TarCompression::Gz,
                "xz" => TarCompression::Xz,
                "zst" => TarCompression::Zst,
                other => return Err(bad_part("format", text, other, &format!("{other:?} is not a tar compression"), COMPRESSIONS)),
            };
            Ok((Format::Tar { compression }, None))
        }
        ["dir"] => Ok((Format::Dir, None)),
        ["tar" | "dir", ..] => Err(bad("too many words (tar COMPRESSION, or dir)")),
        ["custom", ..] => Err(bad(
            "format custom is not supported: its setup()/cleanup() functions would need a shell in the installer, which has none; describe the disk declaratively with disk=, partitions= and preserve= instead (see IMGBUILD(5), DISK LAYOUT)",
        )),
        [] => Err(bad("empty")),
        [other, ..] => Err(bad_part("format", text, other, &format!("{other:?} is not a format"), FORMATS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makeimg_formats_parse() {
        assert_eq!(parse_format("raw").unwrap(), (Format::Raw { size: 8 << 30 }, Some(DEFAULT_RAW)));
        assert_eq!(parse_format("raw 2G gpt ext4").unwrap(), (Format::Raw { size: 2 << 30 }, Some(RawArgs { table: TableType::Gpt, fs: Filesystem::Ext4 })));
        assert_eq!(parse_format("tar zst").unwrap().0, Format::Tar { compression: TarCompression::Zst });
        assert_eq!(parse_format("dir").unwrap().0, Format::Dir);
    }

    #[test]
    fn bad_formats_say_what_is_allowed() {
        let e = parse_format("tar bz").unwrap_err();
        assert!(e.contains("allowed: gz, xz, zst"), "{e}");
        let e = parse_format("rwa 8G").unwrap_err();
        assert!(e.contains("did you mean \"raw\""), "{e}");
        assert!(parse_format("custom").unwrap_err().contains("partitions="));
        assert!(parse_format("raw 8G gpt btrfs").unwrap_err().contains("allowed: ext4"));
        assert!(parse_format("raw 8X").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn a_boot_keeps_the_imgbuilds_raw_size_unless_told() {
        let raw4 = || (Format::Raw { size: 4 << 30 }, FormatOrigin::Imgbuild { line: Some(3) }, Some(RawArgs { table: TableType::Gpt, fs: Filesystem::Ext4 }));
        assert_eq!(for_boot(raw4(), ForBoot::default()), raw4(), "the IMGBUILD's 4G gpt is kept");
        let (f, o, r) = for_boot(raw4(), ForBoot { size: Some(6 << 30) });
        assert_eq!((f, o, r.unwrap().table), (Format::Raw { size: 6 << 30 }, FormatOrigin::CommandLine, TableType::Gpt), "--size changes the size only");
        let dir = (Format::Dir, FormatOrigin::Imgbuild { line: None }, None);
        assert_eq!(for_boot(dir.clone(), ForBoot::default()).0, Format::Raw { size: 8 << 30 });
        assert_eq!(for_boot(dir, ForBoot { size: Some(2 << 30) }).0, Format::Raw { size: 2 << 30 });
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M", false), Ok(512 << 20));
        assert_eq!(parse_size("1TiB", false), Ok(1 << 40));
        assert_eq!(parse_size("4096", true), Ok(4096));
        assert!(parse_size("4096", false).is_err());
        assert!(parse_size("99999999999T", false).is_err());
    }
}
