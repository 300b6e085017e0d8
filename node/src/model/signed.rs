//! Signed document envelopes: domain-separated ed25519 signatures over canonical JSON.
//!
//! A document of type `T` is signed over the bytes `yrd/v1/<T::TYPE>` followed by the RFC 8785
//! canonical JSON of the document (see [`signing_message`]), and travels as
//! `{"type", "version", "document", "signer", "signature"}`. Binding the type into the signed
//! bytes means a signature made for one kind of document never verifies as another kind.
//! [`Signed`] is the typed envelope the node works with; [`AnySigned`] verifies any envelope
//! without knowing its document type (for offline tools).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::canonical::{self, CanonicalError};

/// Prefix of every signed message; the version in it changes only with the signing scheme.
pub const DOMAIN_PREFIX: &str = "yrd/v1/";

/// The only envelope version this code writes or accepts.
pub const ENVELOPE_VERSION: u32 = 1;

/// Longest accepted document type name.
pub const MAX_TYPE_LEN: usize = 64;

/// A kind of document that can be signed.
pub trait Document: Serialize + DeserializeOwned + JsonSchema {
    /// Lowercase kebab-case name of the document kind, e.g. `"node-info"`; part of what is
    /// signed, so it must never change for an existing kind (see [`is_valid_type_name`]).
    const TYPE: &'static str;
}

/// Why a signed document could not be produced, read or verified.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// `signer` is not the lowercase hex of a valid ed25519 public key.
    #[error("signer is not a valid ed25519 public key: {0}")]
    BadSignerKey(String),
    /// `signer` is a small-order point, for which signatures prove nothing.
    #[error("signer is a weak (small-order) ed25519 public key and is refused")]
    WeakKey,
    /// `signature` is not the lowercase hex of 64 bytes.
    #[error("signature is malformed: {0}")]
    MalformedSignature(String),
    /// The envelope names another document type than the one expected.
    #[error("wrong document type: expected {expected:?}, found {found:?}")]
    WrongType {
        /// The type the reader asked for.
        expected: String,
        /// The type the envelope names.
        found: String,
    },
    /// The envelope has a version this code does not understand.
    #[error("unsupported envelope version {found}, expected {expected}")]
    UnsupportedVersion {
        /// The version in the envelope.
        found: u32,
        /// The version this code supports.
        expected: u32,
    },
    /// The signature does not match the document, type and signer.
    #[error("signature does not verify for document type {doc_type:?}")]
    BadSignature {
        /// The document type the signature was checked for.
        doc_type: String,
    },
    /// A document type name outside lowercase kebab-case (`[a-z0-9]+(-[a-z0-9]+)*`).
    #[error("invalid document type name {0:?}: must be lowercase kebab-case of [a-z0-9-]")]
    InvalidTypeName(String),
    /// Only JSON objects can be signed, which keeps the type/JSON boundary unambiguous.
    #[error("a document of type {doc_type:?} must be a JSON object")]
    DocumentNotObject {
        /// The document type being signed or verified.
        doc_type: String,
    },
    /// The document does not fit the Rust type of its kind.
    #[error("document of type {doc_type:?} does not match its schema: {source}")]
    InvalidDocument {
        /// The document type being read.
        doc_type: String,
        /// What did not fit.
        #[source]
        source: serde_json::Error,
    },
    /// The envelope is not of the shape `{type, version, document, signer, signature}`.
    #[error("malformed signed-document envelope: {0}")]
    MalformedEnvelope(#[source] serde_json::Error),
    /// The document could not be put in canonical form.
    #[error("canonical JSON: {0}")]
    Canonical(#[from] CanonicalError),
}

/// Whether `name` may be a document type: lowercase kebab-case `[a-z0-9]+(-[a-z0-9]+)*`, at most
/// [`MAX_TYPE_LEN`] bytes.
pub fn is_valid_type_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TYPE_LEN
        && name.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// [`signing_message`] of a typed document: the same bytes, written straight from `document`
/// when the direct canonical writer covers it (an object of what signed documents hold),
/// else through a `Value` with every check of [`signing_message`].
pub fn signing_message_of<T: Serialize + ?Sized>(
    doc_type: &str,
    document: &T,
) -> Result<Vec<u8>, SignatureError> {
    if let Some(canonical) = canonical::direct_text(document) {
        if is_valid_type_name(doc_type) && canonical.starts_with('{') {
            let mut message =
                Vec::with_capacity(DOMAIN_PREFIX.len() + doc_type.len() + canonical.len());
            message.extend_from_slice(DOMAIN_PREFIX.as_bytes());
            message.extend_from_slice(doc_type.as_bytes());
            message.extend_from_slice(canonical.as_bytes());
            return Ok(message);
        }
    }
    let value = serde_json::to_value(document).map_err(CanonicalError::Serialize)?;
    signing_message(doc_type, &value)
}

/// The exact bytes signed for `document` of type `doc_type`: `yrd/v1/<doc_type>` immediately
/// followed by the RFC 8785 canonical JSON of `document`.
///
/// No separator is needed: the type is made only of `[a-z0-9-]` and the document must be an
/// object, so the first `{` ends the type.
pub fn signing_message(doc_type: &str, document: &Value) -> Result<Vec<u8>, SignatureError> {
    if !is_valid_type_name(doc_type) {
        return Err(SignatureError::InvalidTypeName(doc_type.to_owned()));
    }
    if !document.is_object() {
        return Err(SignatureError::DocumentNotObject {
            doc_type: doc_type.to_owned(),
        });
    }
    // An integer a double cannot hold exactly has no one canonical form: refused, so no two
    // documents share a signature and no peer document carries such a value.
    if let Some(at) = canonical::unsafe_integer(document, "document") {
        return Err(CanonicalError::UnsafeInteger(at).into());
    }
    let canonical = canonical::canonicalize(document)?;
    let mut message = Vec::with_capacity(DOMAIN_PREFIX.len() + doc_type.len() + canonical.len());
    message.extend_from_slice(DOMAIN_PREFIX.as_bytes());
    message.extend_from_slice(doc_type.as_bytes());
    message.extend_from_slice(canonical.as_bytes());
    Ok(message)
}

/// A document of kind `T` with the ed25519 signature of its signer.
///
/// Only [`Signed::sign`] and deserialization create one; deserializing checks the type and
/// version but not the signature: call [`Signed::verify`] (or use [`Signed::from_json_verified`])
/// before trusting the document. Verification re-serializes `document`, so `T` must round-trip
/// through JSON without loss (no fields dropped or defaulted on the way).
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[schemars(bound = "T: Document", rename = "Signed{T}")]
pub struct Signed<T> {
    #[serde(rename = "type")]
    #[schemars(schema_with = "type_schema::<T>")]
    doc_type: &'static str,
    #[schemars(schema_with = "version_schema")]
    version: u32,
    /// The signed document.
    pub document: T,
    /// Lowercase hex of the signer's 32-byte ed25519 public key.
    #[schemars(length(equal = 64), pattern("^[0-9a-f]{64}$"))]
    pub signer: String,
    /// Lowercase hex of the 64-byte ed25519 signature.
    #[schemars(length(equal = 128), pattern("^[0-9a-f]{128}$"))]
    pub signature: String,
}

fn type_schema<T: Document>(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "const": T::TYPE })
}

fn version_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "const": ENVELOPE_VERSION })
}

impl<T: Document> Signed<T> {
    /// Signs `document` with `key`.
    pub fn sign(document: T, key: &SigningKey) -> Result<Signed<T>, SignatureError> {
        debug_assert!(
            is_valid_type_name(T::TYPE),
            "invalid Document::TYPE {:?}",
            T::TYPE
        );
        let message = signing_message_of(T::TYPE, &document)?;
        let signature = key.sign(&message);
        Ok(Signed {
            doc_type: T::TYPE,
            version: ENVELOPE_VERSION,
            document,
            signer: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(signature.to_bytes()),
        })
    }

    /// Checks that `signer` signed exactly this document as a `T::TYPE`.
    ///
    /// This says nothing about whether the signer is trusted; check [`Signed::signer_key`]
    /// against the caller's policy.
    pub fn verify(&self) -> Result<(), SignatureError> {
        check_header(T::TYPE, self.doc_type, self.version)?;
        let key = parse_signer(&self.signer)?;
        let signature = parse_signature(&self.signature)?;
        let message = signing_message_of(T::TYPE, &self.document)?;
        verify_message(T::TYPE, &key, &message, &signature)
    }

    /// Parses an envelope from JSON text (exact number parsing, duplicate member names
    /// refused), checking type and version but not the signature.
    pub fn from_json(json: &str) -> Result<Signed<T>, SignatureError> {
        Signed::try_from(AnySigned::from_json(json)?)
    }

    /// Parses an envelope from JSON text and verifies its signature.
    pub fn from_json_verified(json: &str) -> Result<Signed<T>, SignatureError> {
        let signed = Signed::from_json(json)?;
        signed.verify()?;
        Ok(signed)
    }

    /// The signer's public key, refusing malformed and weak keys.
    pub fn signer_key(&self) -> Result<VerifyingKey, SignatureError> {
        parse_signer(&self.signer)
    }

    /// The document type named in the envelope (always `T::TYPE`).
    pub fn doc_type(&self) -> &'static str {
        self.doc_type
    }

    /// The envelope version (always [`ENVELOPE_VERSION`]).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// BLAKE3 of the canonical JSON of the whole envelope; names the document by content.
    pub fn digest(&self) -> Result<[u8; 32], SignatureError> {
        envelope_digest(self)
    }

    /// [`Signed::digest`] as lowercase hex.
    pub fn digest_hex(&self) -> Result<String, SignatureError> {
        self.digest().map(hex::encode)
    }

    /// The same envelope with its document as plain JSON.
    pub fn to_any(&self) -> Result<AnySigned, SignatureError> {
        Ok(AnySigned {
            doc_type: self.doc_type.to_owned(),
            version: self.version,
            document: serde_json::to_value(&self.document).map_err(CanonicalError::Serialize)?,
            signer: self.signer.clone(),
            signature: self.signature.clone(),
        })
    }

    /// Consumes the envelope, returning the document.
    pub fn into_document(self) -> T {
        self.document
    }
}

impl<T: Document> TryFrom<AnySigned> for Signed<T> {
    type Error = SignatureError;

    fn try_from(any: AnySigned) -> Result<Self, SignatureError> {
        check_header(T::TYPE, &any.doc_type, any.version)?;
        let document = serde_json::from_value(any.document).map_err(|source| {
            SignatureError::InvalidDocument {
                doc_type: T::TYPE.to_owned(),
                source,
            }
        })?;
        Ok(Signed {
            doc_type: T::TYPE,
            version: ENVELOPE_VERSION,
            document,
            signer: any.signer,
            signature: any.signature,
        })
    }
}

// Written by hand so that a wrong type or version is reported as such, before the document is
// read as a `T` (which would otherwise fail with a less useful message about its fields).
impl<'de, T: Document> Deserialize<'de> for Signed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let any = AnySigned::deserialize(deserializer)?;
        Signed::try_from(any).map_err(de::Error::custom)
    }
}

/// A signed envelope of any document type, with the document as plain JSON.
///
/// Same JSON shape as [`Signed`]; used by tools that verify documents without knowing their
/// Rust type.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnySigned {
    /// The document type, e.g. `"node-info"`.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// The envelope version; only [`ENVELOPE_VERSION`] verifies.
    pub version: u32,
    /// The signed document (a JSON object).
    #[serde(deserialize_with = "canonical::deserialize_strict_value")]
    pub document: Value,
    /// Lowercase hex of the signer's 32-byte ed25519 public key.
    pub signer: String,
    /// Lowercase hex of the 64-byte ed25519 signature.
    pub signature: String,
}

impl AnySigned {
    /// Parses an envelope from JSON text (exact number parsing, duplicate member names
    /// refused) without verifying it.
    pub fn from_json(json: &str) -> Result<AnySigned, SignatureError> {
        let value = canonical::parse_strict(json)?;
        serde_json::from_value(value).map_err(SignatureError::MalformedEnvelope)
    }

    /// Checks that `signer` signed exactly this document as the type the envelope names.
    pub fn verify(&self) -> Result<(), SignatureError> {
        if self.version != ENVELOPE_VERSION {
            return Err(SignatureError::UnsupportedVersion {
                found: self.version,
                expected: ENVELOPE_VERSION,
            });
        }
        verify_parts(
            &self.doc_type,
            &self.document,
            &self.signer,
            &self.signature,
        )
    }

    /// The signer's public key, refusing malformed and weak keys.
    pub fn signer_key(&self) -> Result<VerifyingKey, SignatureError> {
        parse_signer(&self.signer)
    }

    /// BLAKE3 of the canonical JSON of the whole envelope; equal to [`Signed::digest`] of the
    /// same envelope.
    pub fn digest(&self) -> Result<[u8; 32], SignatureError> {
        envelope_digest(self)
    }

    /// [`AnySigned::digest`] as lowercase hex.
    pub fn digest_hex(&self) -> Result<String, SignatureError> {
        self.digest().map(hex::encode)
    }
}

/// A signed envelope as the provenance log keeps it: its canonical JSON and that text's digest
/// (the envelope's [`Signed::digest`]), made once when the step is recorded, so that neither
/// the record nor the log's writer decodes or serializes the document again.
#[derive(Clone, Debug, PartialEq)]
pub struct CanonicalEnvelope {
    /// The document type the envelope names.
    pub doc_type: &'static str,
    /// BLAKE3 of `json`.
    pub digest: [u8; 32],
    /// The RFC 8785 canonical JSON of the whole envelope.
    pub json: Vec<u8>,
}

impl CanonicalEnvelope {
    /// The canonical form of `signed`.
    pub fn of<T: Document>(signed: &Signed<T>) -> Result<CanonicalEnvelope, SignatureError> {
        let json = canonical::canonical_bytes(signed)?;
        Ok(CanonicalEnvelope {
            doc_type: T::TYPE,
            digest: *blake3::hash(&json).as_bytes(),
            json,
        })
    }
}

/// What checking any signed envelope found ([`verify_any`]): the answer of
/// `POST /api/v1/doc/verify` and what `yrd doc verify` prints.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
// The OpenAPI document keeps the description it had when the type lived in the API.
#[schemars(description = "Answer of `POST /api/v1/doc/verify`.")]
pub struct Verified {
    /// Whether the signature verifies.
    pub valid: bool,
    /// Document type.
    pub doc_type: String,
    /// Signer public key (hex).
    pub signer: String,
    /// Signer peer id.
    pub signer_peer: Option<String>,
    /// Why it does not verify.
    pub error: Option<String>,
}

/// Verifies any signed document and says who signed it, whether or not it verifies.
pub fn verify_any(doc: &AnySigned) -> Verified {
    let result = doc.verify();
    let signer_peer = hex::decode(&doc.signer)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .and_then(|k| crate::identity::peer_id_of(&k))
        .map(|p| p.to_string());
    Verified {
        valid: result.is_ok(),
        doc_type: doc.doc_type.clone(),
        signer: doc.signer.clone(),
        signer_peer,
        error: result.err().map(|e| e.to_string()),
    }
}

fn check_header(expected: &str, found: &str, version: u32) -> Result<(), SignatureError> {
    if found != expected {
        return Err(SignatureError::WrongType {
            expected: expected.to_owned(),
            found: found.to_owned(),
        });
    }
    if version != ENVELOPE_VERSION {
        return Err(SignatureError::UnsupportedVersion {
            found: version,
            expected: ENVELOPE_VERSION,
        });
    }
    Ok(())
}

pub(crate) fn verify_parts(
    doc_type: &str,
    document: &Value,
    signer: &str,
    signature: &str,
) -> Result<(), SignatureError> {
    let key = parse_signer(signer)?;
    let signature = parse_signature(signature)?;
    let message = signing_message(doc_type, document)?;
    verify_message(doc_type, &key, &message, &signature)
}

fn verify_message(
    doc_type: &str,
    key: &VerifyingKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    // verify_strict refuses non-canonical signatures and small-order R, so a signature cannot
    // be altered into another valid one (the envelope digest would otherwise change).
    key.verify_strict(message, signature)
        .map_err(|_| SignatureError::BadSignature {
            doc_type: doc_type.to_owned(),
        })
}

pub(crate) fn parse_signer(signer: &str) -> Result<VerifyingKey, SignatureError> {
    let bytes = decode_lower_hex::<32>(signer).map_err(SignatureError::BadSignerKey)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| {
        SignatureError::BadSignerKey("not the encoding of a curve point".to_owned())
    })?;
    if key.is_weak() {
        return Err(SignatureError::WeakKey);
    }
    Ok(key)
}

fn parse_signature(signature: &str) -> Result<Signature, SignatureError> {
    let bytes = decode_lower_hex::<64>(signature).map_err(SignatureError::MalformedSignature)?;
    Ok(Signature::from_bytes(&bytes))
}

/// Decodes exactly `N` bytes of lowercase hex; uppercase is refused so that each key and
/// signature has one spelling, and hence each envelope one digest.
pub(crate) fn decode_lower_hex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    if text.len() != 2 * N {
        return Err(format!(
            "expected {} hex characters, found {}",
            2 * N,
            text.len()
        ));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("expected lowercase hexadecimal".to_owned());
    }
    let mut bytes = [0u8; N];
    hex::decode_to_slice(text, &mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

fn envelope_digest<E: Serialize>(envelope: &E) -> Result<[u8; 32], SignatureError> {
    let bytes = canonical::canonical_bytes(envelope)?;
    Ok(*blake3::hash(&bytes).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// The published vectors, in the workspace's `schemas/` folder.
    const VECTORS_PATH: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/vectors/signatures.json"
    );

    #[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct TestA {
        name: String,
        count: u64,
        labels: BTreeMap<String, String>,
    }

    impl Document for TestA {
        const TYPE: &'static str = "test-a";
    }

    /// Same shape as [`TestA`], different kind.
    #[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct TestB {
        name: String,
        count: u64,
        labels: BTreeMap<String, String>,
    }

    impl Document for TestB {
        const TYPE: &'static str = "test-b";
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sample() -> TestA {
        let labels = [("城市", "上海"), ("b", "2"), ("a", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        TestA {
            name: "长三角政务数据".to_owned(),
            count: 7,
            labels,
        }
    }

    fn envelope_json(signed: &Signed<TestA>) -> Result<Value, serde_json::Error> {
        serde_json::to_value(signed)
    }

    #[test]
    fn sign_then_verify_round_trips() -> TestResult {
        let signed = Signed::sign(sample(), &key(1))?;
        signed.verify()?;
        assert_eq!(signed.doc_type(), "test-a");
        assert_eq!(signed.version(), 1);
        assert_eq!(signed.signer_key()?, key(1).verifying_key());
        assert_eq!(signed.signer.len(), 64);
        assert_eq!(signed.signature.len(), 128);

        let text = serde_json::to_string_pretty(&signed)?;
        let parsed: Signed<TestA> = serde_json::from_str(&text)?;
        parsed.verify()?;
        assert_eq!(parsed, signed);

        let strict = Signed::<TestA>::from_json_verified(&text)?;
        assert_eq!(strict, signed);
        assert_eq!(strict.into_document(), sample());

        let any = AnySigned::from_json(&text)?;
        any.verify()?;
        assert_eq!(any, signed.to_any()?);
        Ok(())
    }

    /// What the direct canonical writer leaves to the `Value` path: floats, large integers.
    #[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct TestF {
        share: f64,
        count: u64,
    }

    impl Document for TestF {
        const TYPE: &'static str = "test-f";
    }

    #[test]
    fn documents_off_the_direct_path_sign_alike_and_keep_their_checks() -> TestResult {
        let doc = TestF {
            share: 0.1,
            count: 3,
        };
        let signed = Signed::sign(doc.clone(), &key(1))?;
        signed.verify()?;
        // The same bytes as signing the document's `Value` form.
        let value = serde_json::to_value(&doc)?;
        assert_eq!(
            signing_message_of(TestF::TYPE, &doc)?,
            signing_message(TestF::TYPE, &value)?
        );
        assert!(signed.to_any()?.verify().is_ok());
        let beyond = TestF {
            share: 1.0,
            count: canonical::MAX_EXACT_INTEGER + 1,
        };
        let e = Signed::sign(beyond, &key(1)).unwrap_err().to_string();
        assert!(
            e.contains("document.count: integer 9007199254740992"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn a_kept_envelope_is_the_envelope_canonical_and_its_digest() -> TestResult {
        let signed = Signed::sign(sample(), &key(1))?;
        let kept = CanonicalEnvelope::of(&signed)?;
        assert_eq!(kept.doc_type, "test-a");
        assert_eq!(kept.digest, signed.digest()?);
        assert_eq!(kept.digest, signed.to_any()?.digest()?);
        let text = std::str::from_utf8(&kept.json)?;
        assert_eq!(
            text,
            canonical::canonicalize(&serde_json::to_value(&signed)?)?
        );
        let read = Signed::<TestA>::from_json_verified(text)?;
        assert_eq!(read, signed);
        Ok(())
    }

    #[test]
    fn envelope_has_the_documented_shape() -> TestResult {
        let value = envelope_json(&Signed::sign(sample(), &key(1))?)?;
        let keys: Vec<&str> = value
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["type", "version", "document", "signer", "signature"]);
        assert_eq!(value["type"], "test-a");
        assert_eq!(value["version"], 1);
        assert_eq!(
            value["signer"],
            hex::encode(key(1).verifying_key().to_bytes())
        );
        Ok(())
    }

    #[test]
    fn signing_message_is_prefix_type_and_canonical_json() -> TestResult {
        let message = signing_message("test-a", &json!({"b": 1, "a": "中"}))?;
        assert_eq!(
            String::from_utf8(message)?,
            "yrd/v1/test-a{\"a\":\"中\",\"b\":1}"
        );
        Ok(())
    }

    #[test]
    fn signing_message_refuses_bad_types_and_non_objects() {
        for bad in [
            "",
            "Node-Info",
            "node_info",
            "node info",
            "-node",
            "node-",
            "a--b",
            "é",
        ] {
            assert!(
                matches!(
                    signing_message(bad, &json!({})),
                    Err(SignatureError::InvalidTypeName(_))
                ),
                "accepted {bad:?}"
            );
        }
        assert!(matches!(
            signing_message(&"a".repeat(MAX_TYPE_LEN + 1), &json!({})),
            Err(SignatureError::InvalidTypeName(_))
        ));
        for doc in [json!([1]), json!("x"), json!(1), json!(null)] {
            assert!(matches!(
                signing_message("test-a", &doc),
                Err(SignatureError::DocumentNotObject { .. })
            ));
        }
    }

    #[test]
    fn type_names_are_kebab_case() {
        for good in [
            "node-info",
            "catalogue",
            "manifest",
            "a",
            "v2",
            "x-1-y",
            TestA::TYPE,
        ] {
            assert!(is_valid_type_name(good), "{good}");
        }
        assert!(is_valid_type_name(TestB::TYPE));
    }

    #[test]
    fn tampered_document_fails() -> TestResult {
        let mut signed = Signed::sign(sample(), &key(1))?;
        signed.document.count += 1;
        assert!(matches!(
            signed.verify(),
            Err(SignatureError::BadSignature { .. })
        ));

        let mut value = envelope_json(&Signed::sign(sample(), &key(1))?)?;
        value["document"]["labels"]["a"] = json!("changed");
        let parsed: Signed<TestA> = serde_json::from_value(value.clone())?;
        assert!(matches!(
            parsed.verify(),
            Err(SignatureError::BadSignature { .. })
        ));
        let any: AnySigned = serde_json::from_value(value)?;
        assert!(matches!(
            any.verify(),
            Err(SignatureError::BadSignature { .. })
        ));
        Ok(())
    }

    #[test]
    fn substituted_signer_fails() -> TestResult {
        let mut signed = Signed::sign(sample(), &key(1))?;
        signed.signer = hex::encode(key(2).verifying_key().to_bytes());
        assert!(matches!(
            signed.verify(),
            Err(SignatureError::BadSignature { .. })
        ));
        Ok(())
    }

    #[test]
    fn signature_for_one_type_does_not_verify_as_another() -> TestResult {
        let signed = Signed::sign(sample(), &key(1))?;
        let value = envelope_json(&signed)?;

        // Read as the other type without relabelling: refused before the signature is looked at.
        match serde_json::from_value::<Signed<TestB>>(value.clone()) {
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains("expected \"test-b\", found \"test-a\""),
                    "{message}"
                );
            }
            Ok(_) => return Err("a test-a envelope was read as test-b".into()),
        }
        match Signed::<TestB>::try_from(signed.to_any()?) {
            Err(SignatureError::WrongType { expected, found }) => {
                assert_eq!((expected.as_str(), found.as_str()), ("test-b", "test-a"));
            }
            other => return Err(format!("expected WrongType, got {other:?}").into()),
        }

        // Relabelled: the envelope parses, but the signature binds the original type.
        let mut relabelled = value;
        relabelled["type"] = json!("test-b");
        let as_b: Signed<TestB> = serde_json::from_value(relabelled.clone())?;
        match as_b.verify() {
            Err(SignatureError::BadSignature { doc_type }) => assert_eq!(doc_type, "test-b"),
            other => return Err(format!("expected BadSignature, got {other:?}").into()),
        }
        let any: AnySigned = serde_json::from_value(relabelled)?;
        assert!(matches!(
            any.verify(),
            Err(SignatureError::BadSignature { .. })
        ));

        // Same document bytes, different type: different signatures.
        let b = TestB {
            name: sample().name,
            count: sample().count,
            labels: sample().labels,
        };
        assert_ne!(Signed::sign(b, &key(1))?.signature, signed.signature);
        Ok(())
    }

    #[test]
    fn weak_keys_are_refused() -> TestResult {
        // The identity point and the point of order 2: any "signature" by them is meaningless.
        let mut order_two = [0xffu8; 32];
        order_two[0] = 0xec;
        order_two[31] = 0x7f;
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for weak in [identity, order_two] {
            let mut signed = Signed::sign(sample(), &key(1))?;
            signed.signer = hex::encode(weak);
            assert!(matches!(signed.verify(), Err(SignatureError::WeakKey)));
            assert!(matches!(signed.signer_key(), Err(SignatureError::WeakKey)));
            let mut any = signed.to_any()?;
            any.signature = hex::encode([0u8; 64]);
            assert!(matches!(any.verify(), Err(SignatureError::WeakKey)));
        }
        Ok(())
    }

    #[test]
    fn malformed_signer_keys_are_refused() -> TestResult {
        let good = hex::encode(key(1).verifying_key().to_bytes());
        // A y coordinate with no x on the curve; found by search so the test does not depend
        // on a hand-picked constant.
        let off_curve = (2u8..=255)
            .map(|b| {
                let mut bytes = [0u8; 32];
                bytes[0] = b;
                bytes
            })
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .ok_or("no off-curve encoding found")?;
        for bad in [
            good.to_uppercase(),
            good[..62].to_owned(),
            format!("{good}00"),
            format!("{}zz", &good[..62]),
            String::new(),
            hex::encode(off_curve),
        ] {
            let mut signed = Signed::sign(sample(), &key(1))?;
            signed.signer = bad.clone();
            assert!(
                matches!(signed.verify(), Err(SignatureError::BadSignerKey(_))),
                "accepted signer {bad:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn malformed_or_non_canonical_signatures_are_refused() -> TestResult {
        let signed = Signed::sign(sample(), &key(1))?;
        for bad in [
            signed.signature.to_uppercase(),
            signed.signature[..126].to_owned(),
            format!("{}00", signed.signature),
            format!("{}gg", &signed.signature[..126]),
        ] {
            let mut copy = signed.clone();
            copy.signature = bad.clone();
            assert!(
                matches!(copy.verify(), Err(SignatureError::MalformedSignature(_))),
                "accepted signature {bad:?}"
            );
        }
        // Setting the top bits of s puts it above the group order: verify_strict must refuse it.
        let mut bytes = hex::decode(&signed.signature)?;
        if let Some(last) = bytes.last_mut() {
            *last |= 0xf0;
        }
        let mut copy = signed.clone();
        copy.signature = hex::encode(bytes);
        assert!(matches!(
            copy.verify(),
            Err(SignatureError::BadSignature { .. })
        ));
        Ok(())
    }

    #[test]
    fn unknown_envelope_fields_are_refused() -> TestResult {
        let mut value = envelope_json(&Signed::sign(sample(), &key(1))?)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("comment".to_owned(), json!("not signed"));
        }
        let typed = serde_json::from_value::<Signed<TestA>>(value.clone());
        let message = typed.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("unknown field `comment`"), "{message}");
        assert!(serde_json::from_value::<AnySigned>(value.clone()).is_err());
        let text = serde_json::to_string(&value)?;
        assert!(matches!(
            AnySigned::from_json(&text),
            Err(SignatureError::MalformedEnvelope(_))
        ));
        assert!(Signed::<TestA>::from_json(&text).is_err());
        Ok(())
    }

    #[test]
    fn missing_envelope_fields_are_refused() -> TestResult {
        for field in ["type", "version", "document", "signer", "signature"] {
            let mut value = envelope_json(&Signed::sign(sample(), &key(1))?)?;
            if let Some(map) = value.as_object_mut() {
                map.shift_remove(field);
            }
            assert!(
                serde_json::from_value::<Signed<TestA>>(value.clone()).is_err(),
                "{field}"
            );
            assert!(
                serde_json::from_value::<AnySigned>(value).is_err(),
                "{field}"
            );
        }
        Ok(())
    }

    #[test]
    fn other_versions_are_refused() -> TestResult {
        let mut value = envelope_json(&Signed::sign(sample(), &key(1))?)?;
        value["version"] = json!(2);
        let message = serde_json::from_value::<Signed<TestA>>(value.clone())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("version 2, expected 1"), "{message}");
        let any: AnySigned = serde_json::from_value(value)?;
        assert!(matches!(
            any.verify(),
            Err(SignatureError::UnsupportedVersion {
                found: 2,
                expected: 1
            })
        ));
        Ok(())
    }

    #[test]
    fn document_that_does_not_fit_its_type_is_reported() -> TestResult {
        let mut any = Signed::sign(sample(), &key(1))?.to_any()?;
        any.document["count"] = json!("seven");
        match Signed::<TestA>::try_from(any) {
            Err(SignatureError::InvalidDocument { doc_type, .. }) => assert_eq!(doc_type, "test-a"),
            other => return Err(format!("expected InvalidDocument, got {other:?}").into()),
        }
        Ok(())
    }

    #[test]
    fn duplicate_member_names_in_documents_are_refused() -> TestResult {
        let signed = Signed::sign(sample(), &key(1))?;
        let text = serde_json::to_string(&signed)?;
        // A second "name" that a first-wins parser would read differently.
        let forged = text.replacen("\"name\":", "\"name\":\"forged\",\"name\":", 1);
        assert_ne!(forged, text);
        assert!(serde_json::from_str::<Signed<TestA>>(&forged).is_err());
        assert!(serde_json::from_str::<AnySigned>(&forged).is_err());
        assert!(matches!(
            AnySigned::from_json(&forged),
            Err(SignatureError::Canonical(_))
        ));
        Ok(())
    }

    #[test]
    fn envelope_nests_in_internally_tagged_enums() -> TestResult {
        // Protocol messages carry envelopes inside `#[serde(tag = ...)]` enums, which buffer
        // their content before the envelope's own Deserialize runs.
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        #[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
        enum Message {
            Info { info: Box<Signed<TestA>> },
        }
        let message = Message::Info {
            info: Box::new(Signed::sign(sample(), &key(1))?),
        };
        let text = serde_json::to_string(&message)?;
        let back: Message = serde_json::from_str(&text)?;
        let Message::Info { info } = &back;
        info.verify()?;
        assert_eq!(back, message);
        let wrong = text.replace("\"test-a\"", "\"test-b\"");
        assert!(serde_json::from_str::<Message>(&wrong).is_err());
        Ok(())
    }

    #[test]
    fn digest_names_the_whole_envelope() -> TestResult {
        let signed = Signed::sign(sample(), &key(1))?;
        let digest = signed.digest()?;
        let canonical = canonical::canonical_bytes(&signed)?;
        assert_eq!(digest, *blake3::hash(&canonical).as_bytes());
        assert_eq!(signed.digest_hex()?, hex::encode(digest));
        assert_eq!(signed.to_any()?.digest()?, digest);
        let reparsed = AnySigned::from_json(&serde_json::to_string_pretty(&signed)?)?;
        assert_eq!(reparsed.digest_hex()?, signed.digest_hex()?);
        let other = Signed::sign(sample(), &key(2))?;
        assert_ne!(other.digest()?, digest);
        Ok(())
    }

    #[test]
    fn schema_pins_type_and_version() -> TestResult {
        let schema = serde_json::to_value(schemars::schema_for!(Signed<TestA>))?;
        assert_eq!(schema["properties"]["type"]["const"], "test-a");
        assert_eq!(schema["properties"]["version"]["const"], 1);
        assert_eq!(schema["properties"]["signer"]["pattern"], "^[0-9a-f]{64}$");
        assert_eq!(schema["additionalProperties"], false);
        let required = schema["required"]
            .as_array()
            .map(Vec::len)
            .unwrap_or_default();
        assert_eq!(required, 5);
        Ok(())
    }

    /// One published vector, before signing: `(description, type, seed byte, document)`.
    fn vector_inputs() -> Vec<(&'static str, &'static str, u8, Value)> {
        vec![
            (
                "ASCII document whose members are not in canonical order",
                "example",
                1,
                json!({"name": "YRD Node", "id": 1, "active": true, "owner": null}),
            ),
            (
                "Chinese text in values and member names, nested objects",
                "example",
                2,
                json!({
                    "名称": "长三角政务数据共享目录",
                    "机构": {"城市": "上海市", "代码": "310000", "上级": {"名称": "长三角区域合作办公室"}},
                    "标签": ["数据", "共享", "政务"],
                    "city": "杭州"
                }),
            ),
            (
                "member-name order traps: UTF-16 order, digits, case, empty name, escapes",
                "node-info",
                1,
                json!({
                    "\u{1F600}": "U+1F600 sorts before U+FB33 in UTF-16 (but not in UTF-8)",
                    "\u{FB33}": "Hebrew letter dalet with dagesh",
                    "é": "e acute",
                    "z": "z",
                    "10": "ten",
                    "2": "two",
                    "1": "one",
                    "a": "lowercase",
                    "B": "uppercase",
                    "": "empty name",
                    "\n": "newline name",
                    "escapes": "quote\" backslash\\ tab\t newline\n cr\r unit-separator\u{1f} del\u{7f} </script> € \u{2028}"
                }),
            ),
            (
                "numbers in ECMAScript form: exponents, -0, fractions, 2^53-1",
                "manifest",
                3,
                json!({
                    "integers": [0, 1, -1, 9007199254740991_u64, -9007199254740991_i64],
                    "fractions": [0.5, -1.25, 0.1, 333333333.3333333, 4.5],
                    "exponents": [1e21, 1e20, 1e-7, 1e-6, 5e-324, 1.7976931348623157e308],
                    "zeros": [0.0, -0.0, 100.0],
                    "nested": {"empty_object": {}, "empty_array": [], "bool": [true, false]}
                }),
            ),
            ("empty document", "catalogue", 4, json!({})),
            (
                "same document as the first vector, signed as another type (domain separation)",
                "node-info",
                1,
                json!({"name": "YRD Node", "id": 1, "active": true, "owner": null}),
            ),
            (
                "a grant with field masks, as a provider issues it",
                "grant",
                5,
                json!({
                    "id": "5f0c6a1e2b3d4c5e6f708192a3b4c5d6",
                    "request_id": "0123456789abcdef0123456789abcdef",
                    "request_digest": "9b2d7c1e5a4f3b6d8e0c2a4b6d8f0e1c3a5b7d9f1e3c5a7b9d1f3e5c7a9b1d3f",
                    "provider": "12D3KooWGzBqNgL6TmdTzeW5f8RYcZcUzqY4uW1j1b1nUaF9hY5c",
                    "grantee": "12D3KooWQx2sTnM9y4sCkq8wFzbqS4VYm3wQy3h8cJ5wAq6tT4Zr",
                    "dataset": "sh-medical-settlement",
                    "purpose": "异地就医结算核验",
                    "legal_basis": "《医疗保障基金使用监督管理条例》",
                    "fields": ["settlement_id", "insured_id_number", "insured_name", "amount"],
                    "masks": [
                        {"field": "insured_id_number", "rule": "keep", "first": 6, "last": 4},
                        {"field": "insured_name", "rule": "hash"}
                    ],
                    "not_before": "2026-11-26T06:03:00Z",
                    "expires_at": "2026-12-26T06:03:00Z",
                    "issued_at": "2026-11-26T06:03:00Z",
                    "decided_by": "auto:sh-medical-settlement-verification"
                }),
            ),
            (
                "a signed tree head of a provenance log",
                "tree-head",
                6,
                json!({
                    "log": "12D3KooWGzBqNgL6TmdTzeW5f8RYcZcUzqY4uW1j1b1nUaF9hY5c",
                    "size": 1042,
                    "root": "d3c5a7b9d1f3e5c7a9b1d3f9b2d7c1e5a4f3b6d8e0c2a4b6d8f0e1c3a5b7d9f1",
                    "time": "2026-11-26T06:03:09Z"
                }),
            ),
        ]
    }

    fn build_vectors() -> Result<Value, Box<dyn std::error::Error>> {
        let mut vectors = Vec::new();
        for (description, doc_type, seed, document) in vector_inputs() {
            let key = key(seed);
            let canonical = canonical::canonicalize(&document)?;
            let message = signing_message(doc_type, &document)?;
            let signature = key.sign(&message);
            let envelope = AnySigned {
                doc_type: doc_type.to_owned(),
                version: ENVELOPE_VERSION,
                document: document.clone(),
                signer: hex::encode(key.verifying_key().to_bytes()),
                signature: hex::encode(signature.to_bytes()),
            };
            envelope.verify()?;
            vectors.push(json!({
                "description": description,
                "type": doc_type,
                "secret_key": hex::encode(key.to_bytes()),
                "public_key": hex::encode(key.verifying_key().to_bytes()),
                "document": document,
                "canonical": canonical,
                "message_hex": hex::encode(&message),
                "signature": hex::encode(signature.to_bytes()),
                "envelope": serde_json::to_value(&envelope)?,
            }));
        }
        Ok(Value::Array(vectors))
    }

    fn field<'a>(vector: &'a Value, name: &str) -> Result<&'a str, String> {
        vector[name]
            .as_str()
            .ok_or_else(|| format!("vector field {name:?} missing"))
    }

    #[test]
    fn published_signature_vectors_hold() -> TestResult {
        let text = std::fs::read_to_string(VECTORS_PATH)?;
        // parse_strict, not serde_json::from_str, so decimal fractions are read exactly.
        let file = canonical::parse_strict(&text)?;
        let vectors = file.as_array().ok_or("vectors file is not an array")?;
        assert!(vectors.len() >= 4);
        for vector in vectors {
            let description = field(vector, "description")?;
            let doc_type = field(vector, "type")?;
            let seed: [u8; 32] = hex::decode(field(vector, "secret_key")?)?
                .try_into()
                .map_err(|_| "secret_key is not 32 bytes")?;
            let key = SigningKey::from_bytes(&seed);
            let public_key = hex::encode(key.verifying_key().to_bytes());
            assert_eq!(field(vector, "public_key")?, public_key, "{description}");

            let document = &vector["document"];
            let canonical = canonical::canonicalize(document)?;
            assert_eq!(field(vector, "canonical")?, canonical, "{description}");
            let message = signing_message(doc_type, document)?;
            assert_eq!(
                message,
                format!("{DOMAIN_PREFIX}{doc_type}{canonical}").into_bytes()
            );
            assert_eq!(
                field(vector, "message_hex")?,
                hex::encode(&message),
                "{description}"
            );
            let signature = hex::encode(key.sign(&message).to_bytes());
            assert_eq!(field(vector, "signature")?, signature, "{description}");

            let envelope: AnySigned = serde_json::from_value(vector["envelope"].clone())?;
            envelope.verify()?;
            assert_eq!(envelope.doc_type, doc_type, "{description}");
            assert_eq!(envelope.signer, public_key, "{description}");
            assert_eq!(envelope.signature, signature, "{description}");
            assert_eq!(&envelope.document, document, "{description}");
        }
        // The file is exactly what regenerate_signature_vectors writes for the current inputs.
        assert_eq!(
            file,
            build_vectors()?,
            "run: cargo test -- --ignored regenerate_signature_vectors"
        );
        Ok(())
    }

    #[test]
    #[ignore = "writes schemas/vectors/signatures.json"]
    fn regenerate_signature_vectors() -> TestResult {
        let mut text = serde_json::to_string_pretty(&build_vectors()?)?;
        text.push('\n');
        std::fs::write(VECTORS_PATH, text)?;
        Ok(())
    }
}
