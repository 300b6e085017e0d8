//! A record parsed without owning its text: the JSON representation ([`BorrowedJson`]) that lets
//! a standard's validator judge a line of JSON Lines without building a `serde_json::Value`.
//!
//! Publishing and receiving check every record of a file against its standard. Building an
//! owned, ordered `Value` per line (a `String` per key and per string, an index map per object)
//! costs more than the validation itself. Here a line is parsed into a tree of [`Raw`] nodes
//! whose keys and strings borrow from the line (only strings with escapes are copied), and the
//! standard's `jsonschema` validator is compiled a second time for this representation
//! (`jsonschema::options_for`). It is the same validator with the same keywords, regex engine,
//! formats and number semantics, so it reaches the same verdict as on the `Value`; only the
//! verdict is taken from it: a record it finds invalid is parsed again into a `Value` and
//! validated there, so reasons and messages are those of the owned path by construction.
//!
//! What could make the two representations disagree is excluded, not emulated:
//! - numbers are `serde_json::Number`s, made by the very calls (`visit_u64`/`visit_i64`/
//!   `visit_f64`) serde_json's own `Value` is made by;
//! - an object with a key twice is not parsed here ([`parse`] says `None`), so the owned path
//!   (where the last value wins) judges it;
//! - anything [`parse`] fails on (bad JSON, nesting past serde_json's limit) goes to the owned
//!   path, which gives the error message.

use std::borrow::Cow;
use std::fmt;

use jsonschema::JsonType;
use jsonschema::json::{Array, Json, Node, NodeIdentity, Object};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// One JSON value whose keys and strings borrow from the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Raw<'de> {
    /// `null`.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, exactly as serde_json's `Value` holds it.
    Number(Number),
    /// A string: borrowed unless it had escapes.
    String(Cow<'de, str>),
    /// An array.
    Array(Vec<Raw<'de>>),
    /// An object's members in text order, every key once.
    Object(Vec<(Cow<'de, str>, Raw<'de>)>),
}

/// A record parsed from `text` (one line of JSON Lines, trimmed); `None` when it is not JSON,
/// has trailing characters, nests too deep, or has an object with a key twice: the owned path
/// decides those.
pub fn parse(text: &str) -> Option<Raw<'_>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = Raw::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(raw)
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

/// Mirrors serde_json's own `ValueVisitor`, so that every value comes out as `Value` would.
struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Raw<'de>, E> {
        Ok(Raw::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Raw<'de>, E> {
        Ok(Raw::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Raw<'de>, E> {
        // As `Value`: a non-finite float (never parsed from JSON text) is null.
        Ok(Number::from_f64(v).map_or(Raw::Null, Raw::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Raw<'de>, E> {
        Ok(Raw::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Raw<'de>, E> {
        Ok(Raw::String(Cow::Owned(v)))
    }

    fn visit_none<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }

    fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw<'de>, D::Error> {
        Raw::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Raw<'de>)> =
            Vec::with_capacity(map.size_hint().unwrap_or(16).min(64));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value()?;
            members.push((key, value));
        }
        if has_duplicate(&members) {
            return Err(de::Error::custom("duplicate key"));
        }
        Ok(Raw::Object(members))
    }
}

/// Whether two members share a key. Each key sets one bit of a 64-bit mask chosen by its length
/// and end bytes; only a key whose bit is already set is compared with the keys before it. A
/// larger object is sorted instead.
fn has_duplicate(members: &[(Cow<'_, str>, Raw<'_>)]) -> bool {
    if members.len() > 64 {
        let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        return keys.windows(2).any(|w| w[0] == w[1]);
    }
    let mut seen = 0u64;
    for (i, (key, _)) in members.iter().enumerate() {
        let b = key.as_bytes();
        let (first, last) = (b.first().copied(), b.last().copied());
        let h = b.len() ^ usize::from(first.unwrap_or(0)) ^ (usize::from(last.unwrap_or(0)) << 3);
        let bit = 1u64 << (h % 64);
        if seen & bit != 0 && members[..i].iter().any(|(other, _)| other == key) {
            return true;
        }
        seen |= bit;
    }
    false
}

/// An object key, borrowed unless it had escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl Raw<'_> {
    /// The same value, owned: what serde_json would have parsed from the same text.
    pub fn to_value(&self) -> Value {
        match self {
            Raw::Null => Value::Null,
            Raw::Bool(b) => Value::Bool(*b),
            Raw::Number(n) => Value::Number(n.clone()),
            Raw::String(s) => Value::String(s.as_ref().to_owned()),
            Raw::Array(items) => Value::Array(items.iter().map(Raw::to_value).collect()),
            Raw::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.as_ref().to_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// The [`Raw`] representation, for `jsonschema::options_for::<BorrowedJson>()`.
#[derive(Debug)]
pub struct BorrowedJson;

impl Json for BorrowedJson {
    type Node<'a> = &'a Raw<'a>;
    type PreparedKey = String;
    type StringBuffer = Raw<'static>;

    // Members are a vector scanned in order, as serde_json's ordered map is for small objects.
    const KEYS_PER_LOOKUP: usize = 2;
    // A tree: no node is its own descendant.
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>(
        buffer: &mut Raw<'static>,
        string: &str,
        f: impl FnOnce(Self::Node<'_>) -> T,
    ) -> T {
        // Reuse the buffer's allocation: property names (`propertyNames`) come one at a time.
        let mut owned = match std::mem::replace(buffer, Raw::Null) {
            Raw::String(Cow::Owned(s)) => s,
            _ => String::new(),
        };
        owned.clear();
        owned.push_str(string);
        *buffer = Raw::String(Cow::Owned(owned));
        f(buffer)
    }
}

impl<'a> Node<'a, BorrowedJson> for &'a Raw<'a> {
    type Object = &'a [(Cow<'a, str>, Raw<'a>)];
    type Array = &'a [Raw<'a>];
    type Number = &'a Number;

    fn as_object(&self) -> Option<Self::Object> {
        match self {
            Raw::Object(members) => Some(members),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<Self::Array> {
        match self {
            Raw::Array(items) => Some(items),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self {
            Raw::String(s) => Some(Cow::Borrowed(s.as_ref())),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<&'a Number> {
        match self {
            Raw::Number(n) => Some(n),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self {
            Raw::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Raw::Null)
    }

    fn json_type(&self) -> JsonType {
        match self {
            Raw::Null => JsonType::Null,
            Raw::Bool(_) => JsonType::Boolean,
            Raw::Number(_) => JsonType::Number,
            Raw::String(_) => JsonType::String,
            Raw::Array(_) => JsonType::Array,
            Raw::Object(_) => JsonType::Object,
        }
    }

    fn equals_value(&self, expected: &Value) -> bool {
        // `const`/`enum`: scalars compare without building a `Value` (as `jsonschema::json::cmp`
        // does: strings and booleans by equality, numbers mathematically); containers do build.
        match (self, expected) {
            (Raw::String(a), Value::String(b)) => a.as_ref() == b.as_str(),
            (Raw::Bool(a), Value::Bool(b)) => a == b,
            (Raw::Null, Value::Null) => true,
            (Raw::Number(a), Value::Number(b)) => jsonschema::json::cmp::equal_numbers(a, b),
            (Raw::Array(_) | Raw::Object(_), Value::Array(_) | Value::Object(_)) => {
                jsonschema::json::cmp::equal(&self.to_value(), expected)
            }
            _ => false,
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(Raw::to_value(self))
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(
            std::ptr::from_ref::<Raw<'a>>(*self) as usize
        ))
    }
}

/// The members of an object in text order.
#[derive(Debug)]
pub struct Members<'a>(std::slice::Iter<'a, (Cow<'a, str>, Raw<'a>)>);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, &'a Raw<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<'a> Object<'a, BorrowedJson> for &'a [(Cow<'a, str>, Raw<'a>)] {
    type Node = &'a Raw<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn get(&self, key: &String) -> Option<&'a Raw<'a>> {
        self.iter()
            .find(|(name, _)| name.len() == key.len() && name.as_ref() == key.as_str())
            .map(|(_, value)| value)
    }

    fn members(&self) -> Members<'a> {
        Members(self.iter())
    }
}

impl<'a> Array<'a, BorrowedJson> for &'a [Raw<'a>] {
    type Node = &'a Raw<'a>;
    type ElementsIter = std::slice::Iter<'a, Raw<'a>>;

    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn elements(&self) -> Self::ElementsIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_serde_json_does() {
        for text in [
            r#"{"a":1,"b":-2,"c":1.5,"d":1e3,"e":"x\"y","f":[null,true,{"g":"é"}]}"#,
            "18446744073709551615",
            "-9223372036854775808",
            "1.0",
            "12345678901234567890123",
            r#""\u00e9""#,
            "[]",
            "{}",
        ] {
            let owned: Value = serde_json::from_str(text).expect("valid JSON");
            let raw = parse(text).expect("parses");
            assert_eq!(raw.to_value(), owned, "{text}");
        }
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let raw = parse(r#"{"plain":"abc","esc\u0061ped":"a\nb"}"#).expect("parses");
        let Raw::Object(members) = raw else {
            panic!("an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("plain")));
        assert!(matches!(members[0].1, Raw::String(Cow::Borrowed("abc"))));
        assert!(matches!(members[1].0, Cow::Owned(ref k) if k == "escaped"));
        assert!(matches!(members[1].1, Raw::String(Cow::Owned(ref s)) if s == "a\nb"));
    }

    #[test]
    fn what_the_owned_path_must_decide_is_not_parsed() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"b":1,"c":2,"b":3}}"#,
            r#"{"a":1} x"#,
            "{",
            "1e400",
            &"[".repeat(200),
        ] {
            assert!(parse(text).is_none(), "{text}");
        }
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{},\"k7\":0}}", many.join(","));
        assert!(parse(&text).is_none());
        assert!(parse(&format!("{{{}}}", many.join(","))).is_some());
    }
}
