//! `Signed<T>` parsing and verification (`model::signed`). Two halves, chosen by the first byte:
//!
//! - arbitrary text parsed as an `AnySigned` and as `Signed<T>` for every document type, then
//!   verified (`verify_any`, `verify`, digests): no panic, and the typed and untyped views of
//!   one envelope agree on type, signer and digest;
//! - arbitrary JSON taken as a document, signed here with a fixed key as each document type,
//!   then read back as `Signed<T>`: what verifies is exactly what was signed (the typed
//!   document verifies if and only if it re-serializes to the signed bytes), and a verified
//!   typed envelope has the digest of the envelope that was signed.
#![no_main]

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use yrd_node::model::canonical::{canonicalize, parse_strict};
use yrd_node::model::catalogue::{Catalogue, SchemaDoc};
use yrd_node::model::exchange::{AccessRequest, Denial, Grant, Manifest, Receipt, Revocation};
use yrd_node::model::node_info::NodeInfo;
use yrd_node::model::provenance::{Cosignature, TreeHead};
use yrd_node::model::signed::{
    AnySigned, Document, ENVELOPE_VERSION, Signed, signing_message, verify_any,
};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

/// Parses `text` as a `Signed<T>` and checks it against the untyped envelope `any`.
fn typed<T: Document + PartialEq + std::fmt::Debug>(text: &str, any: Option<&AnySigned>) {
    let Ok(signed) = Signed::<T>::from_json(text) else {
        return;
    };
    let any = any.expect("a typed envelope that is no envelope");
    assert_eq!(any.doc_type, T::TYPE);
    assert_eq!(signed.version(), ENVELOPE_VERSION);
    assert_eq!(signed.signer, any.signer);
    let verified = signed.verify().is_ok();
    if verified {
        // What verifies typed verifies untyped, with one digest.
        assert!(any.verify().is_ok(), "typed verifies, untyped does not");
        assert_eq!(signed.digest().ok(), any.digest().ok());
        assert!(signed.signer_key().is_ok());
    }
    let _ = Signed::<T>::from_json_verified(text);
}

fn all_typed(text: &str, any: Option<&AnySigned>) {
    typed::<NodeInfo>(text, any);
    typed::<Manifest>(text, any);
    typed::<AccessRequest>(text, any);
    typed::<Grant>(text, any);
    typed::<Denial>(text, any);
    typed::<Revocation>(text, any);
    typed::<Receipt>(text, any);
    typed::<TreeHead>(text, any);
    typed::<Cosignature>(text, any);
    typed::<Catalogue>(text, any);
    typed::<SchemaDoc>(text, any);
}

/// Signs `document` as a `T` and reads the envelope back typed.
fn sign_as<T: Document + std::fmt::Debug>(document: &serde_json::Value) {
    let key = key();
    let Ok(message) = signing_message(T::TYPE, document) else {
        return;
    };
    let any = AnySigned {
        doc_type: T::TYPE.to_owned(),
        version: ENVELOPE_VERSION,
        document: document.clone(),
        signer: hex(&key.verifying_key().to_bytes()),
        signature: hex(&key.sign(&message).to_bytes()),
    };
    assert!(any.verify().is_ok(), "a fresh signature does not verify");
    let text = serde_json::to_string(&any).unwrap();
    let Ok(signed) = Signed::<T>::from_json(&text) else {
        return;
    };
    let again = serde_json::to_value(&signed.document).unwrap();
    let same = canonicalize(&again).unwrap() == canonicalize(document).unwrap();
    assert_eq!(
        signed.verify().is_ok(),
        same,
        "typed verification disagrees with what was signed: {document} read as {again}"
    );
    if same {
        assert_eq!(signed.digest().ok(), any.digest().ok());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode % 2 == 0 {
        let any = AnySigned::from_json(text).ok();
        if let Some(any) = &any {
            let verified = verify_any(any);
            assert_eq!(verified.valid, any.verify().is_ok());
            assert_eq!(verified.valid, verified.error.is_none());
            let _ = any.digest_hex();
            let _ = any.signer_key();
        }
        all_typed(text, any.as_ref());
    } else if let Ok(document) = parse_strict(text) {
        sign_as::<NodeInfo>(&document);
        sign_as::<Manifest>(&document);
        sign_as::<AccessRequest>(&document);
        sign_as::<Grant>(&document);
        sign_as::<Denial>(&document);
        sign_as::<Revocation>(&document);
        sign_as::<Receipt>(&document);
        sign_as::<TreeHead>(&document);
        sign_as::<Cosignature>(&document);
        sign_as::<Catalogue>(&document);
        sign_as::<SchemaDoc>(&document);
    }
});
