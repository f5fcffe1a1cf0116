//! Embeds the static init and the rootfs skeleton into the `anemos` binary, so that one
//! copied binary can build an initramfs anywhere.
//!
//! The init must be built first (`make` does it): `ANEMOS_INIT_BIN` names it, or the
//! release build in this workspace's target directory is used.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("builder/ lives in the workspace").to_path_buf();
    println!("cargo:rerun-if-env-changed=ANEMOS_INIT_BIN");
    let init = match std::env::var_os("ANEMOS_INIT_BIN") {
        Some(p) => PathBuf::from(p),
        None => workspace.join("target/x86_64-unknown-linux-musl/release/anemos-init"),
    };
    if !init.is_file() {
        panic!("the static init {} does not exist: build it first with `make init` (or `cargo build --release -p anemos-init`), or point ANEMOS_INIT_BIN at it", init.display());
    }
    println!("cargo:rerun-if-changed={}", init.display());

    let skel = workspace.join("rootfs-skel");
    println!("cargo:rerun-if-changed={}", skel.display());
    let mut files = Vec::new();
    walk(&skel, &skel, &mut files);
    files.sort();
    let mut code = String::new();
    writeln!(code, "/// The static init binary.").unwrap();
    writeln!(code, "pub const INIT: &[u8] = include_bytes!({:?});", init.display().to_string()).unwrap();
    writeln!(code, "/// The rootfs skeleton: (path, mode, contents).").unwrap();
    writeln!(code, "pub const SKEL: &[(&str, u32, &[u8])] = &[").unwrap();
    for (rel, abs, mode) in &files {
        println!("cargo:rerun-if-changed={}", abs.display());
        writeln!(code, "    ({rel:?}, 0o{mode:o}, include_bytes!({:?})),", abs.display().to_string()).unwrap();
    }
    writeln!(code, "];").unwrap();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("embedded.rs"), code).expect("writing embedded.rs");
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        let md = std::fs::symlink_metadata(&path).expect("metadata");
        if md.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            walk(root, &path, out);
        } else if md.is_file() {
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
            if rel == "README.md" {
                continue;
            }
            // Git keeps only the executable bit; normalise to 0755/0644 so the result does
            // not depend on the umask of whoever checked the tree out.
            let mode = if md.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
            out.push((rel, path, mode));
        } else {
            panic!("rootfs-skel holds only regular files and directories: {}", path.display());
        }
    }
}
