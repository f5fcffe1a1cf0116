//! Links the release init without unwinding tables: the workspace's release profile aborts
//! on panic (init/link/no-unwind.ld says why). Debug builds keep them.

fn main() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("link/no-unwind.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
}
