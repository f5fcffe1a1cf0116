//! The static init and the rootfs skeleton, compiled into this binary by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
