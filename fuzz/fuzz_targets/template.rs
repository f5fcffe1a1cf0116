//! The template renderer on arbitrary bytes: it never panics; when a template parses, it
//! renders with every name it uses defined, and the output holds each value where a tag
//! was; text without `{{` comes out unchanged.
#![no_main]

use std::collections::BTreeMap;

use installer::files::template::{names, parse, render, Segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(segments) = parse(data) else { return };
    let n = names(data).expect("parse succeeded once");
    let vars: BTreeMap<String, String> = n.variables.iter().map(|v| (v.clone(), format!("<{v}>"))).collect();
    let secrets: BTreeMap<String, Vec<u8>> = n.secrets.iter().map(|s| (s.clone(), format!("[{s}]\n").into_bytes())).collect();
    let out = render(data, &vars, &secrets).expect("every name is defined");
    let mut expected = Vec::new();
    for s in segments {
        match s {
            Segment::Text(t) => expected.extend_from_slice(t),
            Segment::Var { name, .. } => expected.extend_from_slice(format!("<{name}>").as_bytes()),
            Segment::Secret { name, .. } => expected.extend_from_slice(format!("[{name}]").as_bytes()),
        }
    }
    assert_eq!(out, expected);
    if !data.windows(2).any(|w| w == b"{{") {
        assert_eq!(out, data);
    }
});
