//! The patch applier on arbitrary input: `ORIGINAL \0 PATCH` never panics; and a diff made
//! by diffy from ORIGINAL to a second text (the part after a second `\0`) applies back to
//! exactly that text.
#![no_main]

use installer::files::patch::{apply, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let original = parts.next().unwrap_or_default();
    let patch = parts.next().unwrap_or_default();
    let _ = check(patch);
    let _ = apply(original, patch);
    if let (Ok(a), Some(Ok(b))) = (std::str::from_utf8(original), parts.next().map(std::str::from_utf8)) {
        let made = diffy::create_patch(a, b).to_string();
        if a != b {
            assert_eq!(apply(a.as_bytes(), made.as_bytes()).expect("a diffy diff applies"), b.as_bytes());
        }
    }
});
