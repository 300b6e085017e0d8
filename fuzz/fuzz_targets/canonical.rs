//! Canonical JSON (`model::canonical`, RFC 8785). Properties: no panic; canonical form is a
//! fixed point (canonical(parse(canonical(x))) == canonical(x)); what the strict parser accepts
//! serde_json (the node's other JSON reader) accepts too and reads as the same value, so one
//! text cannot mean two documents to the node; the strict parser refuses duplicate names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yrd_node::model::canonical::{canonicalize, canonicalize_str, parse_strict};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let strict = parse_strict(text);
    let loose = serde_json::from_str::<serde_json::Value>(text);
    let Ok(value) = strict else {
        return;
    };
    let Ok(canonical) = canonicalize(&value) else {
        return;
    };
    assert_eq!(
        canonicalize_str(text).ok().as_deref(),
        Some(canonical.as_str())
    );
    // A fixed point: the canonical text is valid JSON whose canonical form is itself.
    let reparsed = parse_strict(&canonical).expect("canonical output does not parse");
    assert_eq!(
        canonicalize(&reparsed).unwrap(),
        canonical,
        "canonical form is not a fixed point"
    );
    // The node's other reader agrees on what the text means.
    let loose = loose.expect("strict parser accepts what serde_json refuses");
    assert_eq!(
        canonicalize(&loose).ok().as_deref(),
        Some(canonical.as_str()),
        "serde_json and the strict parser read different values"
    );
});
