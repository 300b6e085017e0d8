//! Federation charters (`model::charter`) as the node reads them: from a file or the CLI
//! (`SignedCharter::from_json`, strict JSON) and from a member's gossip (serde_json, then
//! `check`); each accepted charter is then offered as a genesis (`verify_genesis`) and to the
//! chain of the published vectors' first held charter (`CharterChain::offer`). Properties: no
//! panic; an accepted charter passes its shape check, fits `MAX_CHARTER_BYTES` canonically, and
//! written out (`to_json_pretty`, what the CLI writes) reads back through the strict path equal,
//! with the same digest; every signer `valid_signers` names carries a signature in it, and
//! merging the charter into itself adds nothing; a genesis that verifies starts a chain whose
//! current document is it; an offer that applies moves the chain forward, and none moves it back.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use yrd_node::model::canonical;
use yrd_node::model::charter::{
    CharterChain, MAX_CHARTER_BYTES, Offer, SignedCharter, verify_genesis,
};

/// The published vectors (schemas/vectors/charter.json): their first case's held genesis is
/// the chain each input is offered to.
const VECTORS: &str = include_str!("../../schemas/vectors/charter.json");

/// Parsed once, not on every input.
fn vector_genesis() -> Option<&'static SignedCharter> {
    static GENESIS: OnceLock<Option<SignedCharter>> = OnceLock::new();
    GENESIS
        .get_or_init(|| {
            let file: serde_json::Value = serde_json::from_str(VECTORS).ok()?;
            let cases = file["cases"].as_array()?;
            cases.iter().find_map(|c| {
                let held = c["held"].as_array()?;
                serde_json::from_value(held.first()?.clone()).ok()
            })
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    // A file or the CLI: strict JSON, bounded, checked.
    if let Ok(charter) = std::str::from_utf8(data)
        .map_err(|_| ())
        .and_then(|text| SignedCharter::from_json(text).map_err(|_| ()))
    {
        check_accepted(&charter);
    }
    // A member's gossip: the codec's serde_json, then the shape check before anything else.
    if let Ok(charter) = serde_json::from_slice::<SignedCharter>(data) {
        if charter.check().is_ok() {
            check_accepted(&charter);
        }
    }
});

/// What holds of any charter the node accepted the shape of.
fn check_accepted(charter: &SignedCharter) {
    charter.check().unwrap();
    let bytes = canonical::canonical_bytes(&charter).unwrap();
    assert!(bytes.len() <= MAX_CHARTER_BYTES);
    // Whatever gossip or a file gave, written out it reads back through the strict path.
    let written = charter.to_json_pretty().unwrap();
    let again = SignedCharter::from_json(&written).unwrap();
    assert_eq!(&again, charter);
    assert_eq!(
        again.document.digest().unwrap(),
        charter.document.digest().unwrap()
    );
    for signer in charter.valid_signers() {
        assert!(charter.signatures.iter().any(|s| s.signer == signer));
    }
    let mut merged = charter.clone();
    assert_eq!(merged.merge(charter).unwrap(), 0);
    assert_eq!(&merged, charter);

    if let Ok(verified) = verify_genesis(charter) {
        assert_eq!(verified.charter.document, charter.document);
        let chain = CharterChain::from_genesis(charter).unwrap();
        assert_eq!(chain.current().charter.document, charter.document);
    }
    if let Some(genesis) = vector_genesis() {
        if let Ok(mut chain) = CharterChain::from_genesis(genesis) {
            let before = chain.current().charter.document.version;
            match chain.offer(charter) {
                Ok(Offer::Applied { version }) => {
                    assert_eq!(version, charter.document.version);
                    assert!(version > before);
                    assert_eq!(chain.current().charter.document, charter.document);
                }
                Ok(_) | Err(_) => assert!(chain.current().charter.document.version >= before),
            }
        }
    }
}
