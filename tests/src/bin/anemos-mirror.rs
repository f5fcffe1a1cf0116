//! `anemos-mirror [PORT]`: runs the caching mirror proxy of `anemos_tests::mirror` in the
//! foreground (for manual runs and QEMU experiments) and prints what it serves.

fn main() -> anyhow::Result<()> {
    let port = std::env::args().nth(1).map(|p| p.parse()).transpose()?.unwrap_or(0);
    let proxy = anemos_tests::mirror::MirrorProxy::start(port)?;
    println!("serving on {} (QEMU guests: {})", proxy.base(), proxy.guest_base());
    for s in installer::packages::debian::sources::host_sources(std::path::Path::new("/etc/apt"))? {
        if let Some(local) = proxy.local_uri(&s.uri) {
            println!("  {local} {} {}   <- {}", s.suite, s.components.join(" "), s.uri);
        }
    }
    loop {
        std::thread::park();
    }
}
