//! Evidence bundle verification (`model::provenance::verify_bundle_value`, what `yrd verify`
//! and `POST /api/v1/provenance/verify` run) on arbitrary JSON. Property: no panic, and a
//! bundle that verifies yields an account.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yrd_node::model::canonical::parse_strict;
use yrd_node::model::provenance::verify_bundle_value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Both readers a bundle may come through.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = verify_bundle_value(&value);
    }
    if let Ok(value) = parse_strict(text) {
        let _ = verify_bundle_value(&value);
    }
});
