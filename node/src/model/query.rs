//! Query services (issue 15): the messages of `/yrd/query/1` and `/yrd/query/2` — a caller's
//! [`Query`] about single records of one dataset (verify: does a record with these values exist? lookup: the records
//! with this key, projected and masked as the grant says) and the provider's [`QueryResponse`],
//! whose answer is a signed [`QueryAnswer`]; the modes a grant allows ([`AccessMode`]) and the
//! limits on its calls ([`QueryLimits`]); the batch of queries `/yrd/query/2` carries and its
//! [`QueryBatchResponse`]; the checks of a query's form and the digests the
//! answer names. Pure, no I/O.
//!
//! The looked-up values never enter a signed document: the answer names the query by the
//! digest of its canonical JSON (which holds a random nonce, so the digest cannot be reversed by
//! trying every ID number), and lookup records travel beside the answer, bound to it by
//! `result_digest`, so that either side can keep the answer in its provenance log without
//! keeping the values.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::canonical;
use crate::model::masking::{FieldMask, is_valid_field_name};
use crate::model::signed::Document;

/// Protocol id of the query protocol (request/response).
pub const QUERY_PROTOCOL: &str = "/yrd/query/1";
/// Protocol id of the batched query protocol: a JSON array of up to [`MAX_QUERY_BATCH`]
/// queries to one provider, answered by a [`QueryBatchResponse`] with one response per query,
/// in order.
pub const QUERY_BATCH_PROTOCOL: &str = "/yrd/query/2";
/// Largest query a provider reads, in bytes: a query names a few fields and values.
pub const MAX_QUERY_BYTES: u64 = 16 * 1024;
/// Largest answer a caller reads, in bytes.
pub const MAX_QUERY_ANSWER_BYTES: u64 = 2 * 1024 * 1024;
/// Most queries one `/yrd/query/2` batch carries.
pub const MAX_QUERY_BATCH: usize = 16;
/// Largest batch a provider reads: [`MAX_QUERY_BATCH`] queries of [`MAX_QUERY_BYTES`], with
/// room for the array's brackets and commas.
pub const MAX_QUERY_BATCH_BYTES: u64 = MAX_QUERY_BATCH as u64 * (MAX_QUERY_BYTES + 1) + 2;
/// Largest batch response a caller reads: as many answers as the batch holds queries, each of
/// at most [`MAX_QUERY_ANSWER_BYTES`], and the envelope.
pub const MAX_QUERY_BATCH_ANSWER_BYTES: u64 =
    MAX_QUERY_BATCH as u64 * (MAX_QUERY_ANSWER_BYTES + 1) + 1024;
/// Most records one lookup returns; beyond it the answer says `truncated`.
pub const MAX_LOOKUP_RECORDS: usize = 100;
/// Bytes of lookup records (as JSON) an answer carries at most; beyond it `truncated`.
pub const MAX_LOOKUP_RESULT_BYTES: usize = 1024 * 1024;
/// Most `field=value` pairs a query gives.
pub const MAX_QUERY_KEYS: usize = 16;
/// Most fields a lookup asks for.
pub const MAX_QUERY_FIELDS: usize = 256;
/// Longest value a query gives, in characters.
pub const MAX_QUERY_VALUE_CHARS: usize = 256;
/// Longest purpose or legal basis, in characters.
pub const MAX_QUERY_TEXT_CHARS: usize = 2000;

/// What a grant lets its grantee do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    /// Fetch whole versions, projected and masked (`/yrd/fetch/1`).
    Fetch,
    /// Ask whether a record with given values exists; never returns a field value.
    Verify,
    /// Read the records with a key, projected and masked.
    Lookup,
}

impl AccessMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::Fetch => "fetch",
            AccessMode::Verify => "verify",
            AccessMode::Lookup => "lookup",
        }
    }

    /// Whether a grant with `modes` allows this one: a grant that names none (issued before
    /// query services) allows fetching only.
    pub fn allowed_by(self, modes: &[AccessMode]) -> bool {
        if modes.is_empty() {
            return self == AccessMode::Fetch;
        }
        modes.contains(&self)
    }
}

impl std::fmt::Display for AccessMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mode of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QueryMode {
    /// 核验: yes or no, and which of the given fields matched.
    Verify,
    /// The records with the key, projected and masked.
    Lookup,
}

impl QueryMode {
    /// The access mode a grant must allow for it.
    pub fn access(self) -> AccessMode {
        match self {
            QueryMode::Verify => AccessMode::Verify,
            QueryMode::Lookup => AccessMode::Lookup,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        self.access().as_str()
    }
}

/// Limits on a grant's query calls, enforced by the provider. Absent: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryLimits {
    /// Calls per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_day: Option<u32>,
    /// Calls per minute (a token bucket of that size, refilled evenly over the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_minute: Option<u32>,
}

/// One `field=value` a query gives. The value is compared with a record's value as text: a
/// string as it is, a number as its JSON text, a boolean as `true`/`false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldValue {
    /// The field (`[A-Za-z_][A-Za-z0-9_]{0,63}`).
    pub field: String,
    /// The value, as text.
    pub value: String,
}

/// A caller's question about single records of one dataset, sent on `/yrd/query/1` (or in a
/// batch on `/yrd/query/2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// 32 random hex digits chosen by the caller: names the call, and makes the query's digest
    /// impossible to reverse by trying values.
    pub nonce: String,
    /// The offer identifier.
    pub dataset: String,
    /// Verify or lookup.
    pub mode: QueryMode,
    /// The values given: at least one names a query key of the offer (the index is read by the
    /// first such); every given field must equal for a lookup's records, and a verify answers
    /// which of them matched.
    pub key: Vec<FieldValue>,
    /// Lookup: the fields wanted (empty: every field the grant delivers). Verify: empty.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Why (履职事项).
    pub purpose: String,
    /// The legal basis (法律依据).
    pub legal_basis: String,
    /// The grant the call is made under (none: an unconditional offer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

impl Query {
    /// BLAKE3 (hex) of the query's RFC 8785 canonical JSON: what the answer names.
    pub fn digest(&self) -> Result<String, canonical::CanonicalError> {
        Ok(blake3::hash(&canonical::canonical_bytes(self)?)
            .to_hex()
            .to_string())
    }

    /// Checks the form of a query, before any offer is looked at; the error names the cause.
    pub fn check_form(&self) -> Result<(), String> {
        if !(self.nonce.len() == 32
            && self
                .nonce
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err("the nonce must be 32 lowercase hex digits".into());
        }
        if !crate::model::catalogue::valid_identifier(&self.dataset) {
            return Err("the dataset is not an identifier".into());
        }
        if self.key.is_empty() || self.key.len() > MAX_QUERY_KEYS {
            return Err(format!(
                "a query gives 1 to {MAX_QUERY_KEYS} field=value pairs"
            ));
        }
        for (i, kv) in self.key.iter().enumerate() {
            if !is_valid_field_name(&kv.field) {
                return Err(format!("{:?} is not a field name", cut(&kv.field)));
            }
            if kv.value.chars().count() > MAX_QUERY_VALUE_CHARS {
                return Err(format!(
                    "the value of {} is longer than {MAX_QUERY_VALUE_CHARS} characters",
                    kv.field
                ));
            }
            if self.key[..i].iter().any(|o| o.field == kv.field) {
                return Err(format!("field {} is given twice", kv.field));
            }
        }
        if self.mode == QueryMode::Verify && !self.fields.is_empty() {
            return Err("a verify query returns no field values: ask for no fields".into());
        }
        if self.fields.len() > MAX_QUERY_FIELDS {
            return Err(format!(
                "a lookup asks for at most {MAX_QUERY_FIELDS} fields"
            ));
        }
        for (i, f) in self.fields.iter().enumerate() {
            if !is_valid_field_name(f) {
                return Err(format!("{:?} is not a field name", cut(f)));
            }
            if self.fields[..i].contains(f) {
                return Err(format!("field {f} is asked for twice"));
            }
        }
        for (what, text) in [
            ("the purpose", &self.purpose),
            ("the legal basis", &self.legal_basis),
        ] {
            let n = text.trim().chars().count();
            if n == 0 || n > MAX_QUERY_TEXT_CHARS {
                return Err(format!(
                    "{what} must be 1 to {MAX_QUERY_TEXT_CHARS} characters"
                ));
            }
        }
        if let Some(g) = &self.grant {
            if !(g.len() == 32 && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))) {
                return Err("a grant id is 32 lowercase hex digits".into());
            }
        }
        Ok(())
    }
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The text a record's value is compared as (and hashed as, in the key index): a string as it
/// is, a number as its JSON text, a boolean as `true`/`false`; null, arrays and objects have
/// none and never match.
pub fn value_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// The provider's signed answer to one query. It names the query by digest and the result by
/// digest; it never holds a looked-up value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryAnswer {
    /// The providing node; must be the signer.
    pub provider: String,
    /// The calling node.
    pub caller: String,
    /// The offer identifier.
    pub dataset: String,
    /// The version answered from.
    pub version: u64,
    /// BLAKE3 of that version's file.
    pub data_digest: String,
    /// Verify or lookup.
    pub mode: QueryMode,
    /// [`Query::digest`] of the query answered.
    pub query_digest: String,
    /// The grant it was answered under (none: an unconditional offer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Whether a record with the key exists (false: the signed "not found").
    pub found: bool,
    /// Verify: whether one record has every given value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<bool>,
    /// Verify: the given fields whose values one record has (the record matching most).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matched_fields: Vec<String>,
    /// Lookup: records returned.
    pub record_count: u64,
    /// Lookup: more records matched than one answer carries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Lookup: the fields returned, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Lookup: the masks applied to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masks: Vec<FieldMask>,
    /// BLAKE3 of [`result_digest`]'s input: the records (lookup) or the verdict (verify).
    pub result_digest: String,
    /// When (RFC 3339).
    pub answered_at: String,
}

impl Document for QueryAnswer {
    const TYPE: &'static str = "query-answer";
}

/// The digest an answer names of its result: BLAKE3 (hex) of the canonical JSON of the lookup's
/// records (an array, empty for verify and for not found).
pub fn result_digest(records: &[Value]) -> Result<String, canonical::CanonicalError> {
    Ok(blake3::hash(&canonical::canonical_bytes(&records)?)
        .to_hex()
        .to_string())
}

/// The provider's response to one query (on `/yrd/query/1`, or one of a batch's).
// Read by `ResponseMembers`, not by serde's internally tagged enum, which copies the whole
// message into a buffer before reading it: that copy of every answer was a tenth of a caller's
// allocations. The JSON is the same either way (and the schema, from these doc comments).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum QueryResponse {
    /// The signed answer, and for a lookup the records it names by digest.
    Answer {
        /// The signed answer.
        answer: Box<crate::model::signed::Signed<QueryAnswer>>,
        /// Lookup: the projected, masked records (`answer.result_digest` is their digest).
        #[serde(default)]
        records: Vec<Value>,
    },
    /// Refused: `code` machine-readable, `message` for people.
    Refused {
        /// Why (docs/protocol.md, "Refusal codes").
        code: crate::model::refusal::RefusalCode,
        /// The cause.
        message: String,
    },
}

/// A batch on `/yrd/query/2` as its JSON Schema describes it: 1 to [`MAX_QUERY_BATCH`]
/// queries. The provider reads the array as any JSON values and parses each query itself, so a
/// malformed query is answered `bad-request` in its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(title = "QueryBatch")]
pub struct QueryBatch(#[schemars(length(min = 1, max = 16))] pub Vec<Query>);

/// The length of `value` as compact JSON (as the JSON codec sends it), counted without keeping
/// the text: a query or answer inside a batch keeps the bound it has alone.
pub fn compact_json_len(value: &impl Serialize) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        // Only a value that cannot be written as JSON: counted as too large, never trusted.
        Err(_) => u64::MAX,
    }
}

/// The provider's response on `/yrd/query/2`: one response per query of the batch, in its
/// order, or the whole batch refused (not a member, too many queries, too busy) before any
/// query was read.
// Read in one pass, as `QueryResponse` is.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum QueryBatchResponse {
    /// The `i`-th response answers the batch's `i`-th query.
    Responses {
        /// One per query, in order.
        responses: Vec<QueryResponse>,
    },
    /// Every query of the batch refused for one cause.
    Refused {
        /// Why (docs/protocol.md, "Refusal codes").
        code: crate::model::refusal::RefusalCode,
        /// The cause.
        message: String,
    },
}

/// Every member a [`QueryResponse`] or [`QueryBatchResponse`] may have, read in one pass;
/// which of them a kind needs is checked after ([`ResponseMembers::only`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "T: Deserialize<'de>")]
struct ResponseMembers<T> {
    kind: ResponseKind,
    #[serde(default)]
    answer: Option<T>,
    #[serde(default)]
    records: Option<Vec<Value>>,
    #[serde(default)]
    responses: Option<Vec<QueryResponse>>,
    #[serde(default)]
    code: Option<crate::model::refusal::RefusalCode>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum ResponseKind {
    Answer,
    Responses,
    Refused,
}

impl<T> ResponseMembers<T> {
    /// Refuses a member that `kind` does not have, as the derived reader would: unknown.
    fn only<E: serde::de::Error>(&self, allowed: &'static [&'static str]) -> Result<(), E> {
        let present = [
            ("answer", self.answer.is_some()),
            ("records", self.records.is_some()),
            ("responses", self.responses.is_some()),
            ("code", self.code.is_some()),
            ("message", self.message.is_some()),
        ];
        match present
            .iter()
            .find(|(name, there)| *there && !allowed.contains(name))
        {
            Some((name, _)) => Err(E::unknown_field(name, allowed)),
            None => Ok(()),
        }
    }

    fn refused<E: serde::de::Error>(
        self,
    ) -> Result<(crate::model::refusal::RefusalCode, String), E> {
        self.only(&["kind", "code", "message"])?;
        let code = self.code.ok_or_else(|| E::missing_field("code"))?;
        let message = self.message.ok_or_else(|| E::missing_field("message"))?;
        Ok((code, message))
    }
}

impl<'de> Deserialize<'de> for QueryResponse {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let m = ResponseMembers::<Box<crate::model::signed::Signed<QueryAnswer>>>::deserialize(d)?;
        match m.kind {
            ResponseKind::Answer => {
                m.only(&["kind", "answer", "records"])?;
                Ok(QueryResponse::Answer {
                    answer: m.answer.ok_or_else(|| D::Error::missing_field("answer"))?,
                    records: m.records.unwrap_or_default(),
                })
            }
            ResponseKind::Refused => {
                let (code, message) = m.refused()?;
                Ok(QueryResponse::Refused { code, message })
            }
            ResponseKind::Responses => Err(D::Error::unknown_variant(
                "responses",
                &["answer", "refused"],
            )),
        }
    }
}

impl<'de> Deserialize<'de> for QueryBatchResponse {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // No answer belongs at this level; `IgnoredAny` reads none and refuses one by `only`.
        let m = ResponseMembers::<serde::de::IgnoredAny>::deserialize(d)?;
        match m.kind {
            ResponseKind::Responses => {
                m.only(&["kind", "responses"])?;
                Ok(QueryBatchResponse::Responses {
                    responses: m
                        .responses
                        .ok_or_else(|| D::Error::missing_field("responses"))?,
                })
            }
            ResponseKind::Refused => {
                let (code, message) = m.refused()?;
                Ok(QueryBatchResponse::Refused { code, message })
            }
            ResponseKind::Answer => Err(D::Error::unknown_variant(
                "answer",
                &["responses", "refused"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> Query {
        Query {
            nonce: "0".repeat(32),
            dataset: "sh-licences".into(),
            mode: QueryMode::Verify,
            key: vec![FieldValue {
                field: "uscc".into(),
                value: "91310000MA1FL0000X".into(),
            }],
            fields: Vec::new(),
            purpose: "核验".into(),
            legal_basis: "条例".into(),
            grant: None,
        }
    }

    fn answer() -> Box<crate::model::signed::Signed<QueryAnswer>> {
        let a = QueryAnswer {
            provider: "12D3KooWShanghai".into(),
            caller: "12D3KooWZhejiang".into(),
            dataset: "sh-licences".into(),
            version: 3,
            data_digest: "ab".repeat(32),
            mode: QueryMode::Lookup,
            query_digest: "cd".repeat(32),
            grant: Some("g1".into()),
            found: true,
            matched: None,
            matched_fields: Vec::new(),
            record_count: 1,
            truncated: false,
            fields: vec!["uscc".into()],
            masks: Vec::new(),
            result_digest: "ef".repeat(32),
            answered_at: "2026-12-08T00:00:00Z".into(),
        };
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        Box::new(crate::model::signed::Signed::sign(a, &key).unwrap())
    }

    /// The one-pass reader takes exactly what the derived, internally tagged one took.
    #[test]
    fn responses_read_as_they_are_written_and_nothing_else() {
        let answered = QueryResponse::Answer {
            answer: answer(),
            records: vec![serde_json::json!({"uscc": "91310000MA1FL0000X"})],
        };
        let refused = QueryResponse::Refused {
            code: crate::model::refusal::RefusalCode::QuotaExceeded,
            message: "quota".into(),
        };
        for r in [answered.clone(), refused.clone()] {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<QueryResponse>(&text).unwrap(), r);
        }
        let batch = QueryBatchResponse::Responses {
            responses: vec![answered.clone(), refused.clone()],
        };
        let batch_refused = QueryBatchResponse::Refused {
            code: crate::model::refusal::RefusalCode::Busy,
            message: "busy".into(),
        };
        for b in [batch, batch_refused] {
            let text = serde_json::to_string(&b).unwrap();
            assert_eq!(
                serde_json::from_str::<QueryBatchResponse>(&text).unwrap(),
                b
            );
        }
        // Records may be left out of an answer (a verify).
        let mut v = serde_json::to_value(&answered).unwrap();
        v.as_object_mut().unwrap().remove("records");
        let QueryResponse::Answer { records, .. } = serde_json::from_value(v).unwrap() else {
            panic!("not an answer");
        };
        assert!(records.is_empty());

        let answer_json = serde_json::to_value(answer()).unwrap();
        let refused_json = serde_json::json!({"kind": "refused", "code": "busy", "message": "m"});
        let bad: Vec<(serde_json::Value, &str)> = vec![
            (
                serde_json::json!({"kind": "answer"}),
                "missing field `answer`",
            ),
            (
                serde_json::json!({"kind": "answer", "answer": answer_json, "code": "busy"}),
                "unknown field `code`",
            ),
            (
                serde_json::json!({"kind": "refused", "code": "busy", "message": "m", "records": []}),
                "unknown field `records`",
            ),
            (
                serde_json::json!({"kind": "refused", "code": "busy"}),
                "missing field `message`",
            ),
            (
                serde_json::json!({"kind": "responses", "responses": []}),
                "unknown variant",
            ),
            (
                serde_json::json!({"code": "busy", "message": "m"}),
                "missing field `kind`",
            ),
            (
                serde_json::json!({"kind": "refused", "code": "busy", "message": "m", "extra": 1}),
                "unknown field `extra`",
            ),
        ];
        for (v, why) in bad {
            let e = serde_json::from_value::<QueryResponse>(v.clone()).unwrap_err();
            assert!(e.to_string().contains(why), "{v}: {e}");
        }
        let bad_batches: Vec<(serde_json::Value, &str)> = vec![
            (
                serde_json::json!({"kind": "responses"}),
                "missing field `responses`",
            ),
            (
                serde_json::json!({"kind": "responses", "responses": [refused_json], "message": "m"}),
                "unknown field `message`",
            ),
            (
                serde_json::json!({"kind": "responses", "responses": [], "answer": answer_json}),
                "unknown field `answer`",
            ),
            (
                serde_json::json!({"kind": "answer", "answer": 1}),
                "unknown variant",
            ),
            (
                serde_json::json!({"kind": "refused", "message": "m"}),
                "missing field `code`",
            ),
        ];
        for (v, why) in bad_batches {
            let e = serde_json::from_value::<QueryBatchResponse>(v.clone()).unwrap_err();
            assert!(e.to_string().contains(why), "{v}: {e}");
        }
        // A duplicate member is refused, not read twice.
        let dup = r#"{"kind":"refused","code":"busy","message":"a","message":"b"}"#;
        assert!(serde_json::from_str::<QueryResponse>(dup).is_err());
    }

    #[test]
    fn the_form_of_a_query_is_checked_with_its_cause() {
        assert_eq!(query().check_form(), Ok(()));
        let mut q = query();
        q.fields = vec!["uscc".into()];
        assert!(q.check_form().unwrap_err().contains("no field values"));
        let mut q = query();
        q.key.push(q.key[0].clone());
        assert!(q.check_form().unwrap_err().contains("twice"));
        let mut q = query();
        q.key.clear();
        assert!(q.check_form().is_err());
        let mut q = query();
        q.nonce = "x".into();
        assert!(q.check_form().unwrap_err().contains("nonce"));
        let mut q = query();
        q.key[0].value = "9".repeat(MAX_QUERY_VALUE_CHARS + 1);
        assert!(q.check_form().unwrap_err().contains("longer"));
    }

    #[test]
    fn digests_change_with_the_nonce_and_the_result() {
        let a = query();
        let mut b = query();
        b.nonce = "1".repeat(32);
        assert_ne!(a.digest().unwrap(), b.digest().unwrap());
        let r1 = result_digest(&[serde_json::json!({"a": 1})]).unwrap();
        let r2 = result_digest(&[serde_json::json!({"a": 2})]).unwrap();
        assert_ne!(r1, r2);
    }

    #[test]
    fn modes_of_grants_without_modes_are_fetch_only() {
        assert!(AccessMode::Fetch.allowed_by(&[]));
        assert!(!AccessMode::Verify.allowed_by(&[]));
        assert!(AccessMode::Verify.allowed_by(&[AccessMode::Verify]));
        assert!(!AccessMode::Lookup.allowed_by(&[AccessMode::Verify]));
        assert!(!AccessMode::Fetch.allowed_by(&[AccessMode::Verify]));
    }

    #[test]
    fn values_compare_as_text() {
        assert_eq!(value_text(&serde_json::json!(42)).as_deref(), Some("42"));
        assert_eq!(value_text(&serde_json::json!("x")).as_deref(), Some("x"));
        assert_eq!(value_text(&serde_json::json!(null)), None);
    }
}
