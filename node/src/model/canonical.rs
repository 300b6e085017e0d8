//! Canonical JSON (RFC 8785, "JCS"): the one byte form of a JSON value that is signed and hashed.
//!
//! Everything the node signs or names by digest goes through [`canonicalize`], so two
//! implementations that agree on RFC 8785 agree on every signature and digest. Parsing via
//! [`parse_strict`] additionally refuses duplicate member names, which RFC 8785 (through I-JSON)
//! forbids and which would otherwise let two parsers see different documents under one signature.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

mod direct;

/// Deepest nesting [`canonicalize`] accepts; bounds recursion for values built in code
/// (anything parsed is already limited to 127 levels).
pub const MAX_DEPTH: usize = 256;

/// Largest integer magnitude that an IEEE 754 double holds exactly (2^53).
const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Why a value could not be put in canonical form.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// The input text is not valid JSON (or repeats a member name).
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser objected to.
        message: String,
    },
    /// A number with no JSON representation (NaN or an infinity).
    #[error("number {0} is not finite and has no canonical JSON form")]
    NonFiniteNumber(String),
    /// The Rust value could not be turned into JSON.
    #[error("value cannot be represented as JSON: {0}")]
    Serialize(#[source] serde_json::Error),
    /// An integer beyond ±(2^53 − 1), which a signed document may not hold (see
    /// [`MAX_EXACT_INTEGER`]).
    #[error("{0}")]
    UnsafeInteger(String),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("JSON nesting deeper than {max} levels")]
    TooDeep {
        /// The limit that was exceeded.
        max: usize,
    },
}

/// Largest integer a bundle or signed document may hold: RFC 8785 writes numbers as IEEE 754
/// doubles, which hold every integer only up to here, so a larger one has no exact canonical
/// form (two values would share a signature).
pub const MAX_EXACT_INTEGER: u64 = (1 << 53) - 1;

/// The first integer in `value` beyond ±[`MAX_EXACT_INTEGER`], with where it is.
pub fn unsafe_integer(value: &serde_json::Value, at: &str) -> Option<String> {
    // The path is written only for the integer found: checking allocates nothing.
    let mut path = Vec::new();
    let n = first_unsafe_integer(value, &mut path)?;
    let mut out = at.to_owned();
    for step in path.iter().rev() {
        match step {
            PathStep::Index(i) => out.push_str(&format!("[{i}]")),
            PathStep::Member(k) => {
                out.push('.');
                out.push_str(k);
            }
        }
    }
    Some(format!("{out}: integer {n} is beyond 2^53-1"))
}

/// One step from a value to one inside it.
enum PathStep<'a> {
    Index(usize),
    Member(&'a str),
}

/// The first integer beyond ±[`MAX_EXACT_INTEGER`] in `value`; `path` receives the steps to it,
/// innermost first.
fn first_unsafe_integer<'a>(
    value: &'a serde_json::Value,
    path: &mut Vec<PathStep<'a>>,
) -> Option<&'a serde_json::Number> {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            let beyond = n.as_u64().is_some_and(|u| u > MAX_EXACT_INTEGER)
                || n.as_i64()
                    .is_some_and(|i| i.unsigned_abs() > MAX_EXACT_INTEGER);
            beyond.then_some(n)
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            let n = first_unsafe_integer(v, path)?;
            path.push(PathStep::Index(i));
            Some(n)
        }),
        Value::Object(members) => members.iter().find_map(|(k, v)| {
            let n = first_unsafe_integer(v, path)?;
            path.push(PathStep::Member(k));
            Some(n)
        }),
        _ => None,
    }
}

/// Serializes `value` as RFC 8785 canonical JSON.
pub fn canonicalize(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, value, 0)?;
    Ok(out)
}

/// Parses `json` (refusing duplicate member names) and returns its canonical form.
pub fn canonicalize_str(json: &str) -> Result<String, CanonicalError> {
    canonicalize(&parse_strict(json)?)
}

/// Canonical JSON bytes of any serializable value.
///
/// Note that serde_json turns non-finite floats into `null` when serializing; types that are
/// signed should not contain floats that can be NaN or infinite.
///
/// Written straight from `value` when it holds only what [`direct`] covers (every record and
/// signed document of the node), else through a `serde_json::Value`; the bytes are the same.
pub fn canonical_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    if let Ok(text) = direct::to_string(value) {
        return Ok(text.into_bytes());
    }
    let value = serde_json::to_value(value).map_err(CanonicalError::Serialize)?;
    Ok(canonicalize(&value)?.into_bytes())
}

/// The canonical JSON of `value` written straight from it, when [`direct`] covers all it
/// holds (the same text as the `Value` path); `None` leaves it to that path, whose checks
/// (unsafe integers, non-finite floats) then apply.
pub(crate) fn direct_text<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    direct::to_string(value).ok()
}

/// Parses JSON text (RFC 8259) into a [`Value`], refusing duplicate member names.
///
/// This does not use `serde_json::from_str`: without serde_json's `float_roundtrip` feature that
/// parser may round decimal fractions to a neighbouring double (RFC 8785's own test vector
/// `333333333.33333329` comes out one ulp off), which would change canonical forms and break
/// signatures. Numbers here are rounded correctly via `str::parse::<f64>`.
pub fn parse_strict(json: &str) -> Result<Value, CanonicalError> {
    let mut parser = Parser {
        src: json,
        bytes: json.as_bytes(),
        pos: 0,
    };
    parser.skip_ws();
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos < parser.bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

/// Deepest nesting [`parse_strict`] accepts: the same as serde_json, whose limit of 128 refuses
/// the 128th level.
const MAX_PARSE_DEPTH: usize = 127;

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> CanonicalError {
        let before = self.bytes.get(..self.pos).unwrap_or(self.bytes);
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        // Count characters, not bytes, so the column matches what an editor shows.
        let line_bytes = before.get(line_start..).unwrap_or_default();
        let column = 1 + line_bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count();
        CanonicalError::Parse {
            line,
            column,
            message: message.to_owned(),
        }
    }

    fn rest(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, message: &str) -> Result<(), CanonicalError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(message))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, CanonicalError> {
        match self.peek() {
            None => Err(self.error("unexpected end of input, expected a value")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, CanonicalError> {
        if depth >= MAX_PARSE_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        Ok(depth + 1)
    }

    fn object(&mut self, depth: usize) -> Result<Value, CanonicalError> {
        let depth = self.enter(depth)?;
        self.pos += 1;
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.skip_ws();
            let key_pos = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a member name in double quotes"));
            }
            let key = self.string()?;
            if map.contains_key(&key) {
                self.pos = key_pos;
                return Err(self.error(&format!("duplicate member name {key:?}")));
            }
            self.skip_ws();
            self.expect(b':', "expected ':' after a member name")?; // ok: the parser's own expect, not Option::expect
            self.skip_ws();
            let member = self.value(depth)?;
            map.insert(key, member);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.error("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, CanonicalError> {
        let depth = self.enter(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']' in an array")),
            }
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, CanonicalError> {
        if self.rest().starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn string(&mut self) -> Result<String, CanonicalError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            // Every delimiter looked for is ASCII, so the runs copied are whole UTF-8 characters.
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            let run = self
                .src
                .get(start..self.pos)
                .ok_or_else(|| self.error("invalid UTF-8"))?;
            out.push_str(run);
            match self.peek() {
                None => return Err(self.error("unexpected end of input inside a string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => return Err(self.error("control character in a string must be escaped")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), CanonicalError> {
        let Some(b) = self.peek() else {
            return Err(self.error("unexpected end of input inside a string"));
        };
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                self.pos += 1;
                return self.unicode_escape(out);
            }
            _ => return Err(self.error("invalid escape")),
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    /// Reads the digits of a `\uXXXX` escape (and its low surrogate, if it starts a pair).
    fn unicode_escape(&mut self, out: &mut String) -> Result<(), CanonicalError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.rest().starts_with(b"\\u") {
                    return Err(self.error("lone leading surrogate in a \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone leading surrogate in a \\u escape"));
                }
                0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in a \\u escape")),
            _ => u32::from(first),
        };
        let c = char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))?;
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, CanonicalError> {
        let mut code: u16 = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.error("expected four hex digits in a \\u escape")),
            };
            code = (code << 4) | u16::from(digit);
            self.pos += 1;
        }
        Ok(code)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, CanonicalError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("expected a digit")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("expected a digit after the decimal point"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("expected a digit in the exponent"));
            }
        }
        let text = self
            .src
            .get(start..self.pos)
            .ok_or_else(|| self.error("invalid number"))?;
        if integer {
            // Keep exact integer types where they fit, as serde_json does, so the value still
            // deserializes into integer fields; larger ones fall through to the nearest double.
            if negative {
                match text.parse::<i64>() {
                    // serde_json reads "-0" as the double -0.0; do the same so both agree.
                    Ok(0) => {}
                    Ok(i) => return Ok(Value::Number(i.into())),
                    Err(_) => {}
                }
            } else if let Ok(u) = text.parse::<u64>() {
                return Ok(Value::Number(u.into()));
            }
        }
        let f: f64 = text.parse().map_err(|_| self.error("invalid number"))?;
        match Number::from_f64(f) {
            Some(n) => Ok(Value::Number(n)),
            None => {
                self.pos = start;
                Err(self.error("number out of range"))
            }
        }
    }
}

/// Deserializes a [`Value`], refusing duplicate member names; usable as
/// `#[serde(deserialize_with = "...")]` on fields that are later verified or hashed.
pub fn deserialize_strict_value<'de, D: Deserializer<'de>>(de: D) -> Result<Value, D::Error> {
    StrictValue::deserialize(de).map(|v| v.0)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("number {v} is not finite")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        deserialize_strict_value(de)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate member name {key:?}")));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

fn write_value(out: &mut String, value: &Value, depth: usize) -> Result<(), CanonicalError> {
    if depth > MAX_DEPTH {
        return Err(CanonicalError::TooDeep { max: MAX_DEPTH });
    }
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| utf16_cmp(a.0, b.0));
            out.push('{');
            for (i, (key, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, member, depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// RFC 8785 §3.2.3 orders member names by UTF-16 code units, which differs from UTF-8 byte
/// (and `str`) order once characters above U+FFFF meet characters in U+E000..U+FFFF.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_number(out: &mut String, n: &Number) -> Result<(), CanonicalError> {
    // Integers are printed directly only while a double holds them exactly; beyond 2^53 JCS
    // requires the value a JavaScript parser would see, i.e. the nearest double.
    if let Some(u) = n.as_u64() {
        if u <= MAX_SAFE_INTEGER {
            out.push_str(&u.to_string());
            return Ok(());
        }
        return write_f64(out, u as f64);
    }
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= MAX_SAFE_INTEGER {
            out.push_str(&i.to_string());
            return Ok(());
        }
        return write_f64(out, i as f64);
    }
    match n.as_f64() {
        Some(f) => write_f64(out, f),
        None => Err(CanonicalError::NonFiniteNumber(n.to_string())),
    }
}

fn write_f64(out: &mut String, f: f64) -> Result<(), CanonicalError> {
    if !f.is_finite() {
        return Err(CanonicalError::NonFiniteNumber(f.to_string()));
    }
    // ryu-js implements ECMAScript Number::toString, which is what RFC 8785 §3.2.2.3 specifies
    // (it also prints -0 as "0").
    out.push_str(ryu_js::Buffer::new().format_finite(f));
    Ok(())
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < '\u{20}' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// The RFC 8785 reference vectors shipped in the shared folder.
    const JCS_VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/vectors/jcs");

    #[test]
    fn an_unsafe_integer_is_named_by_its_path() {
        let v =
            json!({"a": [1, {"b": 9_007_199_254_740_993_u64}], "c": -9_007_199_254_740_991_i64});
        assert_eq!(
            unsafe_integer(&v, "document").as_deref(),
            Some("document.a[1].b: integer 9007199254740993 is beyond 2^53-1")
        );
        let v = json!([{"x": -9_007_199_254_740_992_i64}]);
        assert_eq!(
            unsafe_integer(&v, "bundle").as_deref(),
            Some("bundle[0].x: integer -9007199254740992 is beyond 2^53-1")
        );
        let safe = json!({"a": [9_007_199_254_740_991_u64, -9_007_199_254_740_991_i64, 1.5e300]});
        assert_eq!(unsafe_integer(&safe, "document"), None);
    }

    #[test]
    fn rfc8785_reference_vectors() -> TestResult {
        let dir = Path::new(JCS_VECTORS);
        let mut checked = Vec::new();
        for entry in std::fs::read_dir(dir.join("input"))? {
            let path = entry?.path();
            let Some(name) = path.file_name() else {
                continue;
            };
            let input = std::fs::read_to_string(&path)?;
            let expected = std::fs::read(dir.join("output").join(name))?;
            let actual = canonicalize_str(&input)?;
            assert_eq!(
                actual.as_bytes(),
                expected.as_slice(),
                "vector {name:?}: got {actual}, expected {}",
                String::from_utf8_lossy(&expected)
            );
            checked.push(name.to_string_lossy().into_owned());
        }
        checked.sort();
        let expected_names = [
            "arrays.json",
            "french.json",
            "structures.json",
            "unicode.json",
            "values.json",
            "weird.json",
        ];
        assert_eq!(checked, expected_names);
        Ok(())
    }

    #[test]
    fn keys_sort_by_utf16_code_units() -> TestResult {
        // U+10000 is the surrogate pair D800 DC00, which sorts before U+FFFF in UTF-16 although
        // it sorts after it in UTF-8 and in Rust's `str` order.
        let value = json!({"\u{FFFF}": 1, "\u{10000}": 2, "a": 3, "": 4, "B": 5});
        assert_eq!(
            canonicalize(&value)?,
            "{\"\":4,\"B\":5,\"a\":3,\"\u{10000}\":2,\"\u{FFFF}\":1}"
        );
        Ok(())
    }

    #[test]
    fn sorting_is_recursive_and_arrays_keep_order() -> TestResult {
        let value = json!({"b": [{"z": 1, "y": 2}, 3, "x"], "a": {"d": null, "c": true}});
        assert_eq!(
            canonicalize(&value)?,
            r#"{"a":{"c":true,"d":null},"b":[{"y":2,"z":1},3,"x"]}"#
        );
        Ok(())
    }

    #[test]
    fn string_escapes() -> TestResult {
        let value = json!("\"\\\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}/é中\u{2028}😀");
        assert_eq!(
            canonicalize(&value)?,
            "\"\\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}/é中\u{2028}😀\""
        );
        Ok(())
    }

    #[test]
    fn control_escapes_use_lowercase_hex() -> TestResult {
        assert_eq!(canonicalize(&json!("\u{1b}\u{0b}"))?, r#""\u001b\u000b""#);
        Ok(())
    }

    #[test]
    fn numbers_follow_ecmascript() -> TestResult {
        let cases: [(Value, &str); 14] = [
            (json!(1e21), "1e+21"),
            (json!(1e20), "100000000000000000000"),
            (json!(1e-7), "1e-7"),
            (json!(1e-6), "0.000001"),
            (json!(-0.0), "0"),
            (json!(0.0), "0"),
            (json!(5e-324), "5e-324"),
            (json!(1.7976931348623157e308), "1.7976931348623157e+308"),
            (json!(9007199254740993_u64), "9007199254740992"),
            (json!(9007199254740992_u64), "9007199254740992"),
            (json!(-9007199254740993_i64), "-9007199254740992"),
            (json!(u64::MAX), "18446744073709552000"),
            (json!(56.0), "56"),
            (json!(-1.5), "-1.5"),
        ];
        for (value, expected) in cases {
            assert_eq!(canonicalize(&value)?, expected, "for {value}");
        }
        Ok(())
    }

    #[test]
    fn parsed_numbers_follow_ecmascript() -> TestResult {
        assert_eq!(
            canonicalize_str("[-0, 1E2, 0.1e1, 123456789012345678901234567890]")?,
            "[0,100,1,1.2345678901234568e+29]"
        );
        Ok(())
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        assert!(matches!(
            canonicalize_str("[1E400]"),
            Err(CanonicalError::Parse { .. })
        ));
    }

    #[test]
    fn parse_errors_name_line_and_column() -> TestResult {
        match canonicalize_str("{\n  \"a\": 1,\n  \"b\": }") {
            Err(CanonicalError::Parse {
                line,
                column,
                message,
            }) => {
                assert_eq!((line, column), (3, 8));
                assert!(message.contains("expected a value"), "{message}");
                Ok(())
            }
            other => Err(format!("expected a parse error, got {other:?}").into()),
        }
    }

    #[test]
    fn duplicate_member_names_are_refused() -> TestResult {
        match canonicalize_str(r#"{"a": {"x": 1, "x": 2}}"#) {
            Err(CanonicalError::Parse {
                message, line: 1, ..
            }) => {
                assert!(message.contains("duplicate member name \"x\""), "{message}");
                Ok(())
            }
            other => Err(format!("expected a duplicate-name error, got {other:?}").into()),
        }
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert!(matches!(
            canonicalize_str("{} {}"),
            Err(CanonicalError::Parse { .. })
        ));
    }

    #[test]
    fn excessive_depth_is_an_error() {
        let mut value = json!(0);
        for _ in 0..=MAX_DEPTH {
            value = json!([value]);
        }
        assert!(matches!(
            canonicalize(&value),
            Err(CanonicalError::TooDeep { .. })
        ));
    }

    #[test]
    fn canonical_bytes_of_a_struct() -> TestResult {
        #[derive(Serialize)]
        struct Example {
            zeta: u8,
            alpha: &'static str,
        }
        let bytes = canonical_bytes(&Example {
            zeta: 1,
            alpha: "长三角",
        })?;
        assert_eq!(bytes, "{\"alpha\":\"长三角\",\"zeta\":1}".as_bytes());
        Ok(())
    }

    #[test]
    fn parser_agrees_with_serde_json_on_valid_input() -> TestResult {
        let inputs = [
            " \t\r\n{ \"a\" : [ 1 , -2 , 3.5e2 , true , false , null ] } \n",
            r#""\ud83d\ude02 \u00e9 \/ \b\f\n\r\t \u0000""#,
            r#"{"": {"": []}, "x": "\u4e2d\u6587"}"#,
            "-0",
            "18446744073709551615",
            "-9223372036854775808",
            "18446744073709551616",
            "[0, 0.5, 1E-3, 2e+10, -1.25E+2]",
            "\"长三角 \u{10000}\"",
        ];
        for input in inputs {
            let ours = parse_strict(input)?;
            let theirs: Value = serde_json::from_str(input)?;
            assert_eq!(ours, theirs, "for {input}");
            assert_eq!(canonicalize(&ours)?, canonicalize(&theirs)?, "for {input}");
        }
        Ok(())
    }

    #[test]
    fn parser_refuses_invalid_input() {
        let inputs = [
            "",
            " ",
            "\u{feff}{}",
            "{,}",
            "[1,]",
            r#"{"a":1,}"#,
            "[01]",
            "[1.]",
            "[.5]",
            "[1e]",
            "[+1]",
            "[-]",
            "[NaN]",
            "[Infinity]",
            "'a'",
            r#"{a: 1}"#,
            r#"{"a" 1}"#,
            "\"tab\there\"",
            r#""\x41""#,
            r#""\u12""#,
            r#""\ud800""#,
            r#""\ud800\u0041""#,
            r#""\udc00""#,
            "\"unterminated",
            "[1] [2]",
            "tru",
            "nul",
            "[1 2]",
            r#"{"a":1 "b":2}"#,
        ];
        for input in inputs {
            assert!(
                matches!(parse_strict(input), Err(CanonicalError::Parse { .. })),
                "accepted {input:?}"
            );
            assert!(
                serde_json::from_str::<Value>(input).is_err(),
                "serde_json accepts {input:?}"
            );
        }
    }

    #[test]
    fn parser_nesting_limit_matches_serde_json() {
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_PARSE_DEPTH),
            "]".repeat(MAX_PARSE_DEPTH)
        );
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_PARSE_DEPTH + 1),
            "]".repeat(MAX_PARSE_DEPTH + 1)
        );
        assert!(parse_strict(&ok).is_ok());
        assert!(serde_json::from_str::<Value>(&ok).is_ok());
        assert!(matches!(
            parse_strict(&deep),
            Err(CanonicalError::Parse { .. })
        ));
        assert!(serde_json::from_str::<Value>(&deep).is_err());
    }

    #[test]
    fn parse_error_columns_count_characters() -> TestResult {
        match parse_strict("{\"名\": x}") {
            Err(CanonicalError::Parse {
                line: 1, column, ..
            }) => {
                assert_eq!(column, 7);
                Ok(())
            }
            other => Err(format!("expected a parse error, got {other:?}").into()),
        }
    }

    #[test]
    fn serde_strict_value_refuses_duplicates() -> TestResult {
        #[derive(serde::Deserialize)]
        struct Holder {
            #[serde(deserialize_with = "deserialize_strict_value")]
            inner: Value,
        }
        let ok: Holder = serde_json::from_str(r#"{"inner": {"a": [1, {"b": null}]}}"#)?;
        assert_eq!(ok.inner, json!({"a": [1, {"b": null}]}));
        let dup = serde_json::from_str::<Holder>(r#"{"inner": {"a": [1, {"b": 1, "b": 2}]}}"#);
        let message = dup.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("duplicate member name \"b\""), "{message}");
        Ok(())
    }

    /// The `Value` path, which [`canonical_bytes`] must equal.
    fn via_value<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
        let value = serde_json::to_value(v).map_err(|e| e.to_string())?;
        canonicalize(&value)
            .map(String::into_bytes)
            .map_err(|e| e.to_string())
    }

    fn same<T: Serialize>(v: &T) {
        let direct = canonical_bytes(v).map_err(|e| e.to_string());
        assert_eq!(direct, via_value(v));
    }

    /// A small deterministic generator (no dev-dependency needed).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }

        fn text(&mut self) -> String {
            const CHARS: [char; 14] = [
                'a', 'b', 'Z', '"', '\\', '\n', '\u{1}', '\u{1f}', 'é', '€', '\u{e000}',
                '\u{ffff}', '😀', '跨',
            ];
            (0..self.next(6))
                .map(|_| CHARS[self.next(CHARS.len() as u64) as usize])
                .collect()
        }

        fn value(&mut self, depth: usize) -> Value {
            match self.next(if depth > 3 { 6 } else { 8 }) {
                0 => Value::Null,
                1 => Value::Bool(self.next(2) == 0),
                2 => {
                    let n = [0, 1, 9_007_199_254_740_992, 9_007_199_254_740_993, u64::MAX]
                        [self.next(5) as usize];
                    if self.next(2) == 0 {
                        json!(n)
                    } else {
                        json!(-(i64::try_from(n).unwrap_or(i64::MAX)))
                    }
                }
                3 => json!([0.5, 1e21, -0.0, 100.0][self.next(4) as usize]),
                4 | 5 => Value::String(self.text()),
                6 => Value::Array((0..self.next(4)).map(|_| self.value(depth + 1)).collect()),
                _ => Value::Object(
                    (0..self.next(5))
                        .map(|_| (self.text(), self.value(depth + 1)))
                        .collect(),
                ),
            }
        }
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    enum Shape {
        Plain,
        Wrapped(String),
        Pair(u8, Option<i32>),
        Named { inner: Vec<Shape>, r#ref: char },
    }

    #[derive(Serialize)]
    struct Doc {
        shapes: Vec<Shape>,
        by_shape: std::collections::BTreeMap<String, Shape>,
        keyed: std::collections::HashMap<u32, bool>,
        unit: Unit,
        tuple: (i64, &'static str, ()),
        none: Option<u8>,
        #[serde(flatten)]
        extra: Map<String, Value>,
        bytes: Option<serde_bytes_like::Bytes>,
    }

    mod serde_bytes_like {
        /// Serialised with `serialize_bytes`.
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn canonical_direct_equals_the_value_path() {
        let mut g = Lcg(7);
        let mut direct_ones = 0;
        for _ in 0..5_000 {
            let v = g.value(0);
            same(&v);
            direct_ones += usize::from(direct::to_string(&v).is_ok());
        }
        assert!(
            direct_ones > 2_000,
            "{direct_ones} of 5,000 took the direct path"
        );
        for n in [0, 1, 2] {
            let doc = Doc {
                shapes: vec![
                    Shape::Plain,
                    Shape::Wrapped("\u{e000}😀".into()),
                    Shape::Pair(n, (n > 0).then_some(-5)),
                    Shape::Named {
                        inner: vec![Shape::Plain],
                        r#ref: 'é',
                    },
                ],
                by_shape: [
                    ("b".to_string(), Shape::Plain),
                    ("a".into(), Shape::Pair(1, None)),
                ]
                .into_iter()
                .collect(),
                // Integer keys and bytes take the `Value` path; so does a flattened member
                // named like a field.
                keyed: (0..u32::from(n)).map(|k| (k, true)).collect(),
                unit: Unit,
                tuple: (-9_007_199_254_740_992, "t", ()),
                none: None,
                extra: [(
                    if n == 2 { "none" } else { "zz" }.to_string(),
                    json!({"x": [1, {"y": null}]}),
                )]
                .into_iter()
                .collect(),
                bytes: (n == 1).then(|| serde_bytes_like::Bytes(vec![1, 2])),
            };
            same(&doc);
        }
        // Provenance records, the log's leaves.
        use crate::model::provenance::{DocRef, ProvenanceRecord, RecordKind};
        use crate::model::region::Region;
        for i in 0..200u64 {
            let region = Region::from_code(310000).map_err(|e| e.to_string());
            let Ok(region) = region else {
                panic!("region: {region:?}");
            };
            let mut r = ProvenanceRecord::new(RecordKind::DeliveryServed, g.text(), region);
            r.seq = i * 1_000_003;
            r.time = "2026-12-06T12:00:00Z".into();
            r.dataset = (i % 3 != 0).then(|| g.text());
            r.purpose = (i % 2 == 0).then(|| "跨省通办企业核验".into());
            r.counterparty_region = (i % 5 == 0).then_some(region);
            r.bytes_sent = (i % 4 == 0).then_some(i * 9_000_000_000_000);
            r.found = (i % 7 == 0).then_some(i % 2 == 0);
            r.prev_about_dataset = r.dataset.as_ref().map(|_| i);
            r.documents = (0..i % 3)
                .map(|_| DocRef {
                    doc_type: g.text(),
                    digest: g.text(),
                })
                .collect();
            same(&r);
            assert!(
                direct::to_string(&r).is_ok(),
                "a record takes the direct path"
            );
        }
        // Nesting at and beyond the limit.
        for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
            let mut v = json!(1);
            for _ in 0..depth {
                v = json!([v]);
            }
            same(&v);
        }
    }
}
