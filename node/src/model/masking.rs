//! "Minimum necessary" delivery (R7): the granted fields of a dataset and their masking rules
//! ([`FieldMask`], [`MaskRule`]), checked against the dataset's fields ([`Projection`]), and the
//! derivation of a delivered record from an original one ([`Projection::apply`]). Pure, no I/O.
//!
//! Only top-level fields of a record are granted and masked. Masking never fails open: a value a
//! rule cannot mask is an error, never delivered as is.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// Longest accepted field name, in bytes (field names are ASCII).
pub const MAX_FIELD_NAME_LEN: usize = 64;

/// What a [`MaskRule::Redact`] turns a non-null value into.
pub const REDACTED: &str = "***";

/// The character that replaces each hidden character under [`MaskRule::Keep`].
pub const MASK_CHAR: char = '*';

/// Prefix of a [`MaskRule::Hash`] result.
pub const HASH_PREFIX: &str = "h:";

/// How many bytes of the keyed BLAKE3 hash a [`MaskRule::Hash`] result keeps (hex-encoded).
pub const HASH_BYTES: usize = 16;

/// The forms [`FieldMask::from_str`] accepts, quoted in its errors.
const EXPECTED_FORMS: &str = "expected FIELD=redact, FIELD=hash or FIELD=keep:N:M \
    (N, M from 0 to 255; FIELD matching [A-Za-z_][A-Za-z0-9_]{0,63})";

/// Why a mask could not be parsed, a projection built, or a record masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// A `FIELD=RULE` text could not be parsed.
    #[error("invalid field mask {input:?}: {reason}; {EXPECTED_FORMS}")]
    BadMask {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field name does not match `[A-Za-z_][A-Za-z0-9_]{0,63}`.
    #[error("invalid field name {0:?}: expected [A-Za-z_][A-Za-z0-9_]{{0,63}}")]
    BadFieldName(String),
    /// The projection grants no field at all.
    #[error("a grant must deliver at least one field")]
    NoFields,
    /// A granted field is not a field of the dataset.
    #[error("field {0:?} is not a field of the dataset")]
    UnknownField(String),
    /// A field is granted twice.
    #[error("field {0:?} is granted twice")]
    DuplicateField(String),
    /// A mask names a field that the grant does not deliver.
    #[error("mask on field {0:?}, which the grant does not deliver")]
    MaskOnUndeliveredField(String),
    /// Two masks name one field.
    #[error("field {0:?} has more than one mask")]
    DuplicateMask(String),
    /// The record is not a JSON object.
    #[error("record is not a JSON object but {found}")]
    NotAnObject {
        /// The kind of JSON value found.
        found: &'static str,
    },
    /// A rule met a value it cannot mask (only redact applies to booleans, arrays and objects).
    #[error("field {field:?}: rule {rule} applies to strings and numbers, found {found}")]
    Unmaskable {
        /// The field holding the value.
        field: String,
        /// The rule's name.
        rule: &'static str,
        /// The kind of JSON value found.
        found: &'static str,
    },
}

/// Whether `name` is a valid field name: `[A-Za-z_][A-Za-z0-9_]{0,63}`.
pub fn is_valid_field_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    name.len() <= MAX_FIELD_NAME_LEN
        && (first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_field_name(name: &str) -> Result<(), MaskError> {
    if is_valid_field_name(name) {
        Ok(())
    } else {
        Err(MaskError::BadFieldName(name.to_owned()))
    }
}

/// How one delivered field is masked. A null value stays null under every rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "rule", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MaskRule {
    /// Any value becomes the string `"***"`.
    Redact,
    /// A string or number (as its decimal text) keeps its first `first` and last `last`
    /// characters (Unicode scalar values) and every other character becomes `*`; the result is
    /// a string of the same length. At least one character is always hidden: when
    /// `first + last` reaches the length, `first` is kept up to length − 1 characters and `last`
    /// only fills what remains, so `"abc"` under keep 2/2 gives `"ab*"` and a one-character
    /// value gives `"*"`. An empty string stays empty.
    Keep {
        /// Characters kept at the start.
        first: u8,
        /// Characters kept at the end.
        last: u8,
    },
    /// A string (its UTF-8 bytes) or number (its decimal text) becomes `"h:"` followed by the
    /// hex of the first 16 bytes of BLAKE3 keyed by the grant's secret salt: equal values give
    /// equal results within one grant, so the requester can join on them without learning them.
    /// The string `"42"` and the number `42` hash alike; `1` and `1.0` do not.
    Hash,
}

impl MaskRule {
    /// The rule's name as in JSON and the CLI: `redact`, `keep` or `hash`.
    pub fn name(&self) -> &'static str {
        match self {
            MaskRule::Redact => "redact",
            MaskRule::Keep { .. } => "keep",
            MaskRule::Hash => "hash",
        }
    }

    /// Masks one value of `field` (named in errors) with this rule and the grant's `salt`.
    pub fn apply(&self, field: &str, value: &Value, salt: &[u8; 32]) -> Result<Value, MaskError> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        if let MaskRule::Redact = self {
            return Ok(Value::String(REDACTED.to_owned()));
        }
        let text: Cow<'_, str> = match value {
            Value::String(s) => Cow::Borrowed(s),
            Value::Number(n) => Cow::Owned(n.to_string()),
            other => {
                return Err(MaskError::Unmaskable {
                    field: field.to_owned(),
                    rule: self.name(),
                    found: kind(other),
                });
            }
        };
        Ok(Value::String(match *self {
            MaskRule::Keep { first, last } => keep(&text, first.into(), last.into()),
            _ => salted_hash(&text, salt),
        }))
    }
}

/// The CLI form: `redact`, `hash` or `keep:N:M`.
impl fmt::Display for MaskRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskRule::Keep { first, last } => write!(f, "keep:{first}:{last}"),
            other => f.write_str(other.name()),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn keep(text: &str, first: usize, last: usize) -> String {
    let len = text.chars().count();
    let budget = len.saturating_sub(1);
    let first = first.min(budget);
    let last = last.min(budget - first);
    let tail_from = len - last;
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if i < first || i >= tail_from {
                c
            } else {
                MASK_CHAR
            }
        })
        .collect()
}

fn salted_hash(text: &str, salt: &[u8; 32]) -> String {
    let hash = blake3::keyed_hash(salt, text.as_bytes());
    let head: Vec<u8> = hash.as_bytes().iter().copied().take(HASH_BYTES).collect();
    format!("{HASH_PREFIX}{}", hex::encode(head))
}

/// One delivered field's mask. JSON: `{"field":"id_number","rule":"keep","first":6,"last":4}`,
/// `{"field":"phone","rule":"hash"}`; CLI: `id_number=keep:6:4`, `phone=hash`, `note=redact`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(try_from = "FieldMaskWire")]
#[schemars(with = "FieldMaskWire")]
pub struct FieldMask {
    /// The field masked (`[A-Za-z_][A-Za-z0-9_]{0,63}`).
    pub field: String,
    /// How it is masked.
    pub rule: MaskRule,
}

/// The wire form of [`FieldMask`]: flat, closed (no unknown members) and with a checked name.
#[derive(Deserialize, JsonSchema)]
#[serde(tag = "rule", rename_all = "kebab-case", deny_unknown_fields)]
enum FieldMaskWire {
    /// The value becomes "***" (null stays null).
    Redact {
        /// The field masked.
        #[schemars(length(min = 1, max = 64), pattern("^[A-Za-z_][A-Za-z0-9_]{0,63}$"))]
        field: String,
    },
    /// All but the first `first` and last `last` characters become "*".
    Keep {
        /// The field masked.
        #[schemars(length(min = 1, max = 64), pattern("^[A-Za-z_][A-Za-z0-9_]{0,63}$"))]
        field: String,
        /// Characters kept at the start.
        first: u8,
        /// Characters kept at the end.
        last: u8,
    },
    /// The value becomes "h:" and a salted keyed hash.
    Hash {
        /// The field masked.
        #[schemars(length(min = 1, max = 64), pattern("^[A-Za-z_][A-Za-z0-9_]{0,63}$"))]
        field: String,
    },
}

impl TryFrom<FieldMaskWire> for FieldMask {
    type Error = MaskError;

    fn try_from(wire: FieldMaskWire) -> Result<FieldMask, MaskError> {
        let (field, rule) = match wire {
            FieldMaskWire::Redact { field } => (field, MaskRule::Redact),
            FieldMaskWire::Keep { field, first, last } => (field, MaskRule::Keep { first, last }),
            FieldMaskWire::Hash { field } => (field, MaskRule::Hash),
        };
        check_field_name(&field)?;
        Ok(FieldMask { field, rule })
    }
}

impl Serialize for FieldMask {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = if let MaskRule::Keep { .. } = self.rule {
            4
        } else {
            2
        };
        let mut s = serializer.serialize_struct("FieldMask", len)?;
        s.serialize_field("field", &self.field)?;
        s.serialize_field("rule", self.rule.name())?;
        if let MaskRule::Keep { first, last } = self.rule {
            s.serialize_field("first", &first)?;
            s.serialize_field("last", &last)?;
        }
        s.end()
    }
}

impl FromStr for FieldMask {
    type Err = MaskError;

    /// Parses the CLI form `FIELD=RULE`, RULE being `redact`, `hash` or `keep:N:M`.
    fn from_str(input: &str) -> Result<FieldMask, MaskError> {
        let bad = |reason: String| MaskError::BadMask {
            input: input.to_owned(),
            reason,
        };
        let (field, rule) = input
            .split_once('=')
            .ok_or_else(|| bad("no '=' between field and rule".to_owned()))?;
        if !is_valid_field_name(field) {
            return Err(bad(format!("invalid field name {field:?}")));
        }
        let rule = match rule {
            "redact" => MaskRule::Redact,
            "hash" => MaskRule::Hash,
            "" => return Err(bad("no rule after '='".to_owned())),
            other => {
                let Some(counts) = other.strip_prefix("keep:") else {
                    return Err(bad(format!("unknown rule {other:?}")));
                };
                let Some((first, last)) = counts.split_once(':') else {
                    return Err(bad("keep needs two counts, keep:N:M".to_owned()));
                };
                let count = |text: &str| -> Result<u8, MaskError> {
                    let parsed = if text.bytes().all(|b| b.is_ascii_digit()) {
                        text.parse::<u8>().ok()
                    } else {
                        None
                    };
                    parsed.ok_or_else(|| bad(format!("keep count {text:?} is not 0 to 255")))
                };
                MaskRule::Keep {
                    first: count(first)?,
                    last: count(last)?,
                }
            }
        };
        Ok(FieldMask {
            field: field.to_owned(),
            rule,
        })
    }
}

/// The CLI form `FIELD=RULE`, which [`FieldMask::from_str`] reads back.
impl fmt::Display for FieldMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.field, self.rule)
    }
}

/// The annotation a standard puts on a personal field: `"x-personal-data": "<kind>"`.
pub const PERSONAL_DATA_KEY: &str = "x-personal-data";

/// The annotation by which a standard may choose a personal field's default mask in the CLI form
/// of a rule (`"x-mask": "keep:3:4"`, `"hash"`, `"redact"`); without it the kind decides.
pub const MASK_KEY: &str = "x-mask";

/// The mask a personal field of `kind` leaves with when no grant names it with another rule:
/// `id-number` keeps 6 + 4 characters, `name` the first character, `phone` 3 + 4,
/// `account-number` the last 4, `birth-date` the year; any other kind is redacted. A field whose
/// values may be other than strings and numbers (`types`, as the standard declares them; empty
/// when it does not say) is redacted, the one rule that masks every value.
pub fn default_rule(kind: &str, types: &[String]) -> MaskRule {
    let scalar = !types.is_empty()
        && types
            .iter()
            .all(|t| matches!(t.as_str(), "string" | "number" | "integer" | "null"));
    if !scalar {
        return MaskRule::Redact;
    }
    match kind {
        "id-number" => MaskRule::Keep { first: 6, last: 4 },
        "name" => MaskRule::Keep { first: 1, last: 0 },
        "phone" => MaskRule::Keep { first: 3, last: 4 },
        "account-number" => MaskRule::Keep { first: 0, last: 4 },
        "birth-date" => MaskRule::Keep { first: 4, last: 0 },
        _ => MaskRule::Redact,
    }
}

impl FromStr for MaskRule {
    type Err = MaskError;

    /// Parses the CLI form of a rule alone: `redact`, `hash` or `keep:N:M`.
    fn from_str(input: &str) -> Result<MaskRule, MaskError> {
        format!("f={input}")
            .parse::<FieldMask>()
            .map(|m| m.rule)
            .map_err(|e| match e {
                MaskError::BadMask { reason, .. } => MaskError::BadMask {
                    input: input.to_owned(),
                    reason,
                },
                other => other,
            })
    }
}

/// A plain account of the projection a delivery carries, for evidence: the fields delivered and
/// each mask, e.g. `fields name, id_number (keep first 6 last 4), phone (hash)`.
pub fn describe_delivery(fields: &[String], masks: &[FieldMask]) -> String {
    use std::fmt::Write;
    // One string written in place: every query answered and sent is described so.
    let mut out = String::with_capacity(8 + fields.iter().map(|f| f.len() + 24).sum::<usize>());
    out.push_str("fields ");
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(field);
        if let Some(m) = masks.iter().find(|m| &m.field == field) {
            let _ = match m.rule {
                MaskRule::Redact => write!(out, " (redact)"),
                MaskRule::Hash => write!(out, " (hash)"),
                MaskRule::Keep { first, last } => write!(out, " (keep first {first} last {last})"),
            };
        }
    }
    out
}

/// Whether the masks `applied` to a delivery honour the masks a grant `granted`: every granted
/// mask applied as granted, and any other mask applied only to a field the grant left unmasked
/// (a standard's default, which a grant issued before defaults existed did not name). More
/// masking than granted is allowed; less never.
pub fn honours(granted: &[FieldMask], applied: &[FieldMask]) -> bool {
    granted.iter().all(|g| applied.contains(g))
        && applied
            .iter()
            .all(|a| granted.iter().all(|g| g.field != a.field) || granted.contains(a))
}

/// The fields a grant delivers, in order, and their masks: checked against the dataset's fields,
/// and applied to each original record to derive the delivered one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    fields: Vec<String>,
    masks: Vec<FieldMask>,
    /// The rule of each entry of `fields`, same order.
    plan: Vec<Option<MaskRule>>,
}

impl Projection {
    /// Checks a grant's `fields` and `masks` against the dataset's `known_fields`: refuses an
    /// empty field list, an invalid, unknown or repeated field, a mask on a field not delivered
    /// and two masks for one field.
    pub fn new(
        fields: Vec<String>,
        masks: Vec<FieldMask>,
        known_fields: &[String],
    ) -> Result<Projection, MaskError> {
        if fields.is_empty() {
            return Err(MaskError::NoFields);
        }
        for (i, field) in fields.iter().enumerate() {
            check_field_name(field)?;
            if !known_fields.contains(field) {
                return Err(MaskError::UnknownField(field.clone()));
            }
            if fields.iter().take(i).any(|f| f == field) {
                return Err(MaskError::DuplicateField(field.clone()));
            }
        }
        for (i, mask) in masks.iter().enumerate() {
            check_field_name(&mask.field)?;
            if !fields.contains(&mask.field) {
                return Err(MaskError::MaskOnUndeliveredField(mask.field.clone()));
            }
            if masks.iter().take(i).any(|m| m.field == mask.field) {
                return Err(MaskError::DuplicateMask(mask.field.clone()));
            }
        }
        let plan = fields
            .iter()
            .map(|f| masks.iter().find(|m| &m.field == f).map(|m| m.rule))
            .collect();
        Ok(Projection {
            fields,
            masks,
            plan,
        })
    }

    /// The same projection with each delivered field that carries no mask masked by its
    /// default in `defaults` (a standard's personal fields): what actually leaves when a grant,
    /// or an unconditional offer, does not name a personal field with a rule of its own.
    pub fn with_defaults(mut self, defaults: &[FieldMask]) -> Projection {
        for (field, rule) in self.fields.iter().zip(self.plan.iter_mut()) {
            if rule.is_some() {
                continue;
            }
            if let Some(d) = defaults.iter().find(|d| &d.field == field) {
                *rule = Some(d.rule);
                self.masks.push(d.clone());
            }
        }
        self
    }

    /// Whether every record leaves as it is: every one of `known_fields` delivered and none
    /// masked. Only then may a version that cannot be projected (an opaque file) be delivered.
    pub fn is_whole(&self, known_fields: &[String]) -> bool {
        self.masks.is_empty() && known_fields.iter().all(|f| self.fields.contains(f))
    }

    /// The delivered fields, in delivery order.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The masks, as granted.
    pub fn masks(&self) -> &[FieldMask] {
        &self.masks
    }

    /// The rule masking `field`, if it is delivered and masked.
    pub fn rule_for(&self, field: &str) -> Option<MaskRule> {
        self.masks.iter().find(|m| m.field == field).map(|m| m.rule)
    }

    /// Derives the delivered record: an object with only the granted fields, in granted order,
    /// each masked by its rule with the grant's secret `salt`. A granted field missing from the
    /// record is left out; a record that is not an object is an error.
    pub fn apply(&self, record: &Value, salt: &[u8; 32]) -> Result<Value, MaskError> {
        let Value::Object(original) = record else {
            return Err(MaskError::NotAnObject {
                found: kind(record),
            });
        };
        let mut out = Map::new();
        for (field, rule) in self.fields.iter().zip(&self.plan) {
            let Some(value) = original.get(field) else {
                continue;
            };
            let delivered = match rule {
                Some(rule) => rule.apply(field, value, salt)?,
                None => value.clone(),
            };
            out.insert(field.clone(), delivered);
        }
        Ok(Value::Object(out))
    }

    /// A one-line plain account for evidence reports, e.g.
    /// `fields name, id_number (keep first 6 last 4), phone (hash)`.
    pub fn describe(&self) -> String {
        describe_delivery(&self.fields, &self.masks)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const SALT: [u8; 32] = [7; 32];
    const OTHER_SALT: [u8; 32] = [8; 32];

    fn keep(first: u8, last: u8) -> MaskRule {
        MaskRule::Keep { first, last }
    }

    fn mask(rule: MaskRule, value: Value) -> Result<Value, MaskError> {
        rule.apply("f", &value, &SALT)
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn known() -> Vec<String> {
        names(&["name", "id_number", "phone", "age", "note"])
    }

    #[test]
    fn redact_ascii_chinese_numbers_and_others() -> TestResult {
        assert_eq!(mask(MaskRule::Redact, json!("alice"))?, json!("***"));
        assert_eq!(mask(MaskRule::Redact, json!("张三丰"))?, json!("***"));
        assert_eq!(mask(MaskRule::Redact, json!(13800138000u64))?, json!("***"));
        assert_eq!(mask(MaskRule::Redact, json!(true))?, json!("***"));
        assert_eq!(mask(MaskRule::Redact, json!({"a": 1}))?, json!("***"));
        assert_eq!(mask(MaskRule::Redact, Value::Null)?, Value::Null);
        Ok(())
    }

    #[test]
    fn keep_ascii_chinese_and_numbers() -> TestResult {
        assert_eq!(
            mask(keep(6, 4), json!("110101199003071234"))?,
            json!("110101********1234")
        );
        assert_eq!(
            mask(keep(3, 4), json!("13800138000"))?,
            json!("138****8000")
        );
        assert_eq!(mask(keep(1, 0), json!("张三丰"))?, json!("张**"));
        assert_eq!(
            mask(keep(0, 1), json!("上海市浦东新区"))?,
            json!("******区")
        );
        assert_eq!(
            mask(keep(3, 4), json!(13800138000u64))?,
            json!("138****8000")
        );
        assert_eq!(mask(keep(1, 1), json!(-12.5))?, json!("-***5"));
        assert_eq!(mask(keep(0, 0), json!("abc"))?, json!("***"));
        Ok(())
    }

    #[test]
    fn keep_always_hides_at_least_one_character() -> TestResult {
        assert_eq!(mask(keep(2, 2), json!("abc"))?, json!("ab*"));
        assert_eq!(mask(keep(1, 1), json!("张三"))?, json!("张*"));
        assert_eq!(mask(keep(0, 9), json!("abcd"))?, json!("*bcd"));
        assert_eq!(mask(keep(255, 255), json!("abcd"))?, json!("abc*"));
        assert_eq!(mask(keep(6, 4), json!(12345))?, json!("1234*"));
        assert_eq!(mask(keep(1, 1), json!("李"))?, json!("*"));
        assert_eq!(mask(keep(1, 1), json!(7))?, json!("*"));
        assert_eq!(mask(keep(1, 1), json!(""))?, json!(""));
        Ok(())
    }

    #[test]
    fn null_stays_null_and_non_scalars_are_refused() -> TestResult {
        for rule in [MaskRule::Redact, keep(1, 1), MaskRule::Hash] {
            assert_eq!(mask(rule, Value::Null)?, Value::Null);
        }
        for rule in [keep(1, 1), MaskRule::Hash] {
            for value in [json!(true), json!([1, 2]), json!({"a": "b"})] {
                let err = mask(rule, value);
                assert!(
                    matches!(&err, Err(MaskError::Unmaskable { field, .. }) if field == "f"),
                    "{err:?}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn hash_is_stable_per_salt_and_differs_across_salts_and_values() -> TestResult {
        let a = mask(MaskRule::Hash, json!("110101199003071234"))?;
        assert_eq!(a, mask(MaskRule::Hash, json!("110101199003071234"))?);
        let text = a.as_str().ok_or("hash is not a string")?;
        let hex_part = text.strip_prefix("h:").ok_or("no h: prefix")?;
        assert_eq!(hex_part.len(), 32);
        assert!(
            hex_part
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let expected = blake3::keyed_hash(&SALT, b"110101199003071234").to_hex();
        assert_eq!(Some(hex_part), expected.get(..32));

        let other_salt = MaskRule::Hash.apply("f", &json!("110101199003071234"), &OTHER_SALT)?;
        assert_ne!(a, other_salt);
        assert_ne!(a, mask(MaskRule::Hash, json!("110101199003071235"))?);

        let zh = mask(MaskRule::Hash, json!("张三丰"))?;
        assert_eq!(zh, mask(MaskRule::Hash, json!("张三丰"))?);
        assert_ne!(zh, mask(MaskRule::Hash, json!("张三"))?);

        let n = mask(MaskRule::Hash, json!(42))?;
        assert_eq!(n, mask(MaskRule::Hash, json!("42"))?);
        assert_ne!(n, mask(MaskRule::Hash, json!(43))?);
        assert_ne!(
            mask(MaskRule::Hash, json!(1))?,
            mask(MaskRule::Hash, json!(1.0))?
        );
        Ok(())
    }

    #[test]
    fn parses_each_cli_form() -> TestResult {
        let cases = [
            ("id_number=keep:6:4", "id_number", keep(6, 4)),
            ("mobile_phone=keep:3:4", "mobile_phone", keep(3, 4)),
            ("name=keep:1:0", "name", keep(1, 0)),
            ("_x9=keep:255:0", "_x9", keep(255, 0)),
            ("phone=hash", "phone", MaskRule::Hash),
            ("note=redact", "note", MaskRule::Redact),
        ];
        for (text, field, rule) in cases {
            let parsed: FieldMask = text.parse()?;
            assert_eq!(
                parsed,
                FieldMask {
                    field: field.to_owned(),
                    rule
                }
            );
            assert_eq!(parsed.to_string(), text);
        }
        Ok(())
    }

    #[test]
    fn refuses_bad_cli_forms_naming_the_input() -> TestResult {
        let long = format!("{}=redact", "a".repeat(65));
        let bad = [
            "x",
            "x=",
            "x=keep:a:1",
            "x=keep:1",
            "=redact",
            "x=foo",
            "x=keep:1:2:3",
            "x=keep:256:0",
            "x=keep:+1:0",
            "x=keep:-1:0",
            "x=keep::1",
            "x=Redact",
            "x= redact",
            "1x=redact",
            "a-b=hash",
            "名字=redact",
            long.as_str(),
        ];
        for text in bad {
            let result = text.parse::<FieldMask>();
            let Err(err @ MaskError::BadMask { .. }) = result else {
                return Err(format!("{text:?} gave {result:?}").into());
            };
            let message = err.to_string();
            assert!(message.contains(&format!("{text:?}")), "{message}");
            assert!(message.contains("FIELD=keep:N:M"), "{message}");
        }
        Ok(())
    }

    #[test]
    fn field_mask_json_shape_and_round_trip() -> TestResult {
        let m = FieldMask {
            field: "id_number".to_owned(),
            rule: keep(6, 4),
        };
        let text = serde_json::to_string(&m)?;
        assert_eq!(
            text,
            r#"{"field":"id_number","rule":"keep","first":6,"last":4}"#
        );
        assert_eq!(serde_json::from_str::<FieldMask>(&text)?, m);
        for m in ["phone=hash", "note=redact"] {
            let m: FieldMask = m.parse()?;
            let text = serde_json::to_string(&m)?;
            assert_eq!(serde_json::from_str::<FieldMask>(&text)?, m);
        }
        assert_eq!(
            serde_json::to_value("phone=hash".parse::<FieldMask>()?)?,
            json!({"field": "phone", "rule": "hash"})
        );
        Ok(())
    }

    #[test]
    fn field_mask_json_refuses_bad_documents() {
        let bad = [
            r#"{"field":"a","rule":"redact","x":1}"#,
            r#"{"field":"a","rule":"hash","first":1}"#,
            r#"{"field":"a","rule":"keep","first":1}"#,
            r#"{"field":"a","rule":"keep","first":1,"last":2,"x":0}"#,
            r#"{"field":"a","rule":"keep","first":256,"last":0}"#,
            r#"{"field":"a","rule":"shuffle"}"#,
            r#"{"field":"a"}"#,
            r#"{"rule":"hash"}"#,
            r#"{"field":"1a","rule":"hash"}"#,
            r#"{"field":"","rule":"hash"}"#,
        ];
        for text in bad {
            assert!(serde_json::from_str::<FieldMask>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn field_mask_schema_is_closed_and_checks_the_name() -> TestResult {
        let schema = serde_json::to_value(schemars::schema_for!(FieldMask))?;
        let variants = schema["oneOf"].as_array().ok_or("no oneOf")?;
        assert_eq!(variants.len(), 3);
        for v in variants {
            assert_eq!(v["additionalProperties"], json!(false));
            assert_eq!(
                v["properties"]["field"]["pattern"],
                "^[A-Za-z_][A-Za-z0-9_]{0,63}$"
            );
        }
        Ok(())
    }

    #[test]
    fn projection_refusals() -> TestResult {
        let k = known();
        let m = |s: &str| s.parse::<FieldMask>();
        assert_eq!(
            Projection::new(vec![], vec![], &k),
            Err(MaskError::NoFields)
        );
        assert_eq!(
            Projection::new(names(&["name", "salary"]), vec![], &k),
            Err(MaskError::UnknownField("salary".to_owned()))
        );
        assert_eq!(
            Projection::new(names(&["name", "phone", "name"]), vec![], &k),
            Err(MaskError::DuplicateField("name".to_owned()))
        );
        assert_eq!(
            Projection::new(names(&["name"]), vec![m("phone=hash")?], &k),
            Err(MaskError::MaskOnUndeliveredField("phone".to_owned()))
        );
        assert_eq!(
            Projection::new(
                names(&["phone"]),
                vec![m("phone=hash")?, m("phone=redact")?],
                &k
            ),
            Err(MaskError::DuplicateMask("phone".to_owned()))
        );
        let odd = names(&["名字"]);
        assert_eq!(
            Projection::new(odd.clone(), vec![], &odd),
            Err(MaskError::BadFieldName("名字".to_owned()))
        );
        Ok(())
    }

    #[test]
    fn apply_keeps_only_granted_fields_in_order_masked() -> TestResult {
        let masks = vec!["id_number=keep:6:4".parse()?, "phone=hash".parse()?];
        let p = Projection::new(
            names(&["phone", "name", "id_number", "age"]),
            masks,
            &known(),
        )?;
        let record = json!({
            "name": "张三丰",
            "id_number": "110101199003071234",
            "phone": "13800138000",
            "note": "secret",
            "age": 30,
        });
        let out = p.apply(&record, &SALT)?;
        let object = out.as_object().ok_or("not an object")?;
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys, ["phone", "name", "id_number", "age"]);
        assert_eq!(object.get("name"), Some(&json!("张三丰")));
        assert_eq!(object.get("id_number"), Some(&json!("110101********1234")));
        assert_eq!(object.get("age"), Some(&json!(30)));
        let phone = MaskRule::Hash.apply("phone", &json!("13800138000"), &SALT)?;
        assert_eq!(object.get("phone"), Some(&phone));
        assert_eq!(p.rule_for("phone"), Some(MaskRule::Hash));
        assert_eq!(p.rule_for("name"), None);
        assert_eq!(
            p.fields(),
            names(&["phone", "name", "id_number", "age"]).as_slice()
        );
        assert_eq!(p.masks().len(), 2);
        Ok(())
    }

    #[test]
    fn apply_leaves_out_missing_fields_keeps_null_and_refuses_non_objects() -> TestResult {
        let p = Projection::new(
            names(&["name", "phone"]),
            vec!["phone=hash".parse()?],
            &known(),
        )?;
        assert_eq!(p.apply(&json!({"note": "x"}), &SALT)?, json!({}));
        assert_eq!(
            p.apply(&json!({"phone": null, "id_number": "1"}), &SALT)?,
            json!({"phone": null})
        );
        assert_eq!(
            p.apply(&json!(["name"]), &SALT),
            Err(MaskError::NotAnObject { found: "an array" })
        );
        assert_eq!(
            p.apply(&json!({"phone": [1]}), &SALT),
            Err(MaskError::Unmaskable {
                field: "phone".to_owned(),
                rule: "hash",
                found: "an array"
            })
        );
        Ok(())
    }

    #[test]
    fn each_kind_of_personal_data_has_a_default_that_hides_it() {
        let text = names(&["string"]);
        assert_eq!(default_rule("id-number", &text), keep(6, 4));
        assert_eq!(default_rule("name", &text), keep(1, 0));
        assert_eq!(
            default_rule("phone", &names(&["string", "null"])),
            keep(3, 4)
        );
        assert_eq!(default_rule("account-number", &text), keep(0, 4));
        assert_eq!(default_rule("birth-date", &text), keep(4, 0));
        assert_eq!(default_rule("health", &text), MaskRule::Redact);
        // Keep and hash cannot mask every value of a field that may be an object, or whose
        // type the standard does not say: redact can.
        assert_eq!(default_rule("name", &names(&["object"])), MaskRule::Redact);
        assert_eq!(default_rule("id-number", &[]), MaskRule::Redact);
    }

    #[test]
    fn defaults_mask_only_delivered_fields_the_grant_left_unmasked() -> TestResult {
        let defaults = vec!["id_number=keep:6:4".parse()?, "name=keep:1:0".parse()?];
        let p = Projection::new(
            names(&["name", "id_number", "age"]),
            vec!["name=hash".parse()?],
            &known(),
        )?
        .with_defaults(&defaults);
        assert_eq!(p.rule_for("name"), Some(MaskRule::Hash));
        assert_eq!(p.rule_for("id_number"), Some(keep(6, 4)));
        assert_eq!(p.rule_for("age"), None);
        assert_eq!(
            p.describe(),
            "fields name (hash), id_number (keep first 6 last 4), age"
        );
        let record = json!({"name": "张三丰", "id_number": "110101199003071234", "age": 3});
        assert_eq!(p.apply(&record, &SALT)?["id_number"], "110101********1234");
        // A field not delivered takes no default.
        let p = Projection::new(names(&["age"]), vec![], &known())?.with_defaults(&defaults);
        assert!(p.masks().is_empty());
        Ok(())
    }

    #[test]
    fn only_every_field_unmasked_is_the_whole_record() -> TestResult {
        let k = known();
        assert!(Projection::new(k.clone(), vec![], &k)?.is_whole(&k));
        assert!(!Projection::new(names(&["name"]), vec![], &k)?.is_whole(&k));
        let masked = Projection::new(k.clone(), vec!["note=redact".parse()?], &k)?;
        assert!(!masked.is_whole(&k));
        let defaulted =
            Projection::new(k.clone(), vec![], &k)?.with_defaults(&["phone=hash".parse()?]);
        assert!(!defaulted.is_whole(&k));
        Ok(())
    }

    #[test]
    fn applied_masks_honour_a_grant_only_by_masking_as_much_or_more() -> TestResult {
        let m = |s: &str| s.parse::<FieldMask>();
        let granted = vec![m("name=hash")?];
        assert!(honours(&granted, &[m("name=hash")?]));
        assert!(honours(&granted, &[m("name=hash")?, m("id=keep:6:4")?]));
        assert!(!honours(&granted, &[]));
        assert!(!honours(&granted, &[m("name=redact")?]));
        assert!(!honours(&granted, &[m("name=hash")?, m("name=redact")?]));
        assert!(honours(&[], &[]));
        Ok(())
    }

    #[test]
    fn a_rule_alone_parses_from_its_cli_form() -> TestResult {
        assert_eq!("keep:6:4".parse::<MaskRule>()?, keep(6, 4));
        assert_eq!("hash".parse::<MaskRule>()?, MaskRule::Hash);
        assert_eq!("redact".parse::<MaskRule>()?, MaskRule::Redact);
        for bad in ["clear", "keep:6", "", "x=hash"] {
            let err = bad.parse::<MaskRule>();
            assert!(
                matches!(&err, Err(MaskError::BadMask { input, .. }) if input == bad),
                "{bad}: {err:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn describe_is_one_plain_line() -> TestResult {
        let masks = vec![
            "id_number=keep:6:4".parse()?,
            "phone=hash".parse()?,
            "note=redact".parse()?,
        ];
        let p = Projection::new(
            names(&["name", "id_number", "phone", "note"]),
            masks,
            &known(),
        )?;
        assert_eq!(
            p.describe(),
            "fields name, id_number (keep first 6 last 4), phone (hash), note (redact)"
        );
        Ok(())
    }
}
