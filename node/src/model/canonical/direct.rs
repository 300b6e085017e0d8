//! Canonical JSON written straight from a `Serialize` value, without building a
//! `serde_json::Value` first: the fast path of [`super::canonical_bytes`].
//!
//! It covers what signed documents and provenance records are made of (structs, maps with
//! string keys, sequences, strings, booleans, unit variants, options and integers within
//! ±2^53) and gives up on anything else ([`Unsupported`]: floats, larger integers, bytes,
//! non-string map keys, a member name twice, serde_json's raw values, nesting beyond
//! [`super::MAX_DEPTH`], or any error of the value's own `Serialize`); the caller then takes the
//! `Value` path, so the bytes are always those of `canonicalize(&serde_json::to_value(v)?)`.
//! `canonical_direct_equals_the_value_path` in `canonical.rs` checks that.

use serde::Serialize;
use serde::ser::{self, Impossible};

use super::{MAX_DEPTH, MAX_SAFE_INTEGER, utf16_cmp, write_string};

/// The value holds something this writer leaves to the `Value` path.
#[derive(Debug)]
pub(super) struct Unsupported;

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not on the direct canonical path")
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Unsupported
    }
}

/// The canonical JSON of `value`, or [`Unsupported`].
pub(super) fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, Unsupported> {
    let mut out = String::with_capacity(512);
    value.serialize(Writer {
        out: &mut out,
        depth: 0,
    })?;
    Ok(out)
}

/// Writes one value at the end of `out`.
struct Writer<'a> {
    out: &'a mut String,
    depth: usize,
}

impl<'a> Writer<'a> {
    /// A writer of the content of a variant, after `{"variant":`.
    fn in_variant(mut self, variant: &str) -> Result<Writer<'a>, Unsupported> {
        let depth = self.open_variant(variant)?;
        Ok(Writer {
            out: self.out,
            depth,
        })
    }

    fn int(self, magnitude: u64, negative: bool) -> Result<(), Unsupported> {
        if magnitude > MAX_SAFE_INTEGER {
            return Err(Unsupported);
        }
        if negative && magnitude != 0 {
            self.out.push('-');
        }
        self.out.push_str(itoa_u64(magnitude, &mut [0u8; 20]));
        Ok(())
    }

    fn deeper(&self) -> Result<usize, Unsupported> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(Unsupported);
        }
        Ok(depth)
    }

    /// `{"variant":` before a variant's content; [`Writer::close_variant`] after it.
    fn open_variant(&mut self, variant: &str) -> Result<usize, Unsupported> {
        let depth = self.deeper()?;
        self.out.push('{');
        write_string(self.out, variant);
        self.out.push(':');
        Ok(depth)
    }
}

fn close_variant(out: &mut String) {
    out.push('}');
}

/// Decimal digits of `n` in `buf`.
fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    std::str::from_utf8(buf.get(i..).unwrap_or_default()).unwrap_or_default()
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        self.int(v.unsigned_abs(), v < 0)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.int(u64::from(v), false)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.int(u64::from(v), false)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.int(u64::from(v), false)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        self.int(v, false)
    }
    fn serialize_f32(self, _: f32) -> Result<(), Unsupported> {
        Err(Unsupported)
    }
    fn serialize_f64(self, _: f64) -> Result<(), Unsupported> {
        Err(Unsupported)
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        write_string(self.out, v.encode_utf8(&mut [0u8; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        write_string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Unsupported> {
        Err(Unsupported)
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        if name.starts_with("$serde_json::") {
            return Err(Unsupported);
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        let depth = self.open_variant(variant)?;
        value.serialize(Writer {
            out: self.out,
            depth,
        })?;
        close_variant(self.out);
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, Unsupported> {
        let depth = self.deeper()?;
        self.out.push('[');
        Ok(Array {
            out: self.out,
            depth,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Array<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Array<'a>, Unsupported> {
        let mut array = self.in_variant(variant)?.serialize_seq(Some(len))?;
        array.variant = true;
        Ok(array)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Unsupported> {
        Ok(Object {
            depth: self.deeper()?,
            out: self.out,
            members: Vec::with_capacity(len.unwrap_or(8)),
            buf: String::with_capacity(256),
            key: None,
            variant: false,
        })
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Object<'a>, Unsupported> {
        if name.starts_with("$serde_json::") {
            return Err(Unsupported);
        }
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, Unsupported> {
        let mut object = self.in_variant(variant)?.serialize_map(Some(len))?;
        object.variant = true;
        Ok(object)
    }
}

/// An array being written.
pub(super) struct Array<'a> {
    out: &'a mut String,
    depth: usize,
    first: bool,
    /// Inside `{"variant":` (a tuple variant): close that too.
    variant: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        value.serialize(Writer {
            out: self.out,
            depth: self.depth,
        })
    }

    fn finish(self) -> Result<(), Unsupported> {
        self.out.push(']');
        if self.variant {
            close_variant(self.out);
        }
        Ok(())
    }
}

/// The `serde` traits of a sequence, all one for an array.
macro_rules! array_trait {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for Array<'_> {
            type Ok = ();
            type Error = Unsupported;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
                self.element(value)
            }
            fn end(self) -> Result<(), Unsupported> {
                self.finish()
            }
        }
    };
}

array_trait!(SerializeSeq, serialize_element);
array_trait!(SerializeTuple, serialize_element);
array_trait!(SerializeTupleStruct, serialize_field);
array_trait!(SerializeTupleVariant, serialize_field);

/// An object being written: members are written to `buf` as they come and put in RFC 8785
/// order (UTF-16 code units of the names) at the end.
pub(super) struct Object<'a> {
    out: &'a mut String,
    depth: usize,
    /// Each member's name and the range of `buf` its value takes.
    members: Vec<(std::borrow::Cow<'static, str>, std::ops::Range<usize>)>,
    buf: String,
    /// The name given by `serialize_key`, waiting for its value.
    key: Option<String>,
    /// Inside `{"variant":` (a struct variant): close that too.
    variant: bool,
}

impl Object<'_> {
    fn member<T: Serialize + ?Sized>(
        &mut self,
        name: std::borrow::Cow<'static, str>,
        value: &T,
    ) -> Result<(), Unsupported> {
        let start = self.buf.len();
        value.serialize(Writer {
            out: &mut self.buf,
            depth: self.depth,
        })?;
        self.members.push((name, start..self.buf.len()));
        Ok(())
    }

    fn finish(mut self) -> Result<(), Unsupported> {
        self.members.sort_by(|a, b| {
            if a.0.is_ascii() && b.0.is_ascii() {
                a.0.cmp(&b.0)
            } else {
                utf16_cmp(&a.0, &b.0)
            }
        });
        // A name twice: the `Value` path keeps the last value; leave that case to it.
        if self.members.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Unsupported);
        }
        self.out.push('{');
        for (i, (name, range)) in self.members.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_string(self.out, name);
            self.out.push(':');
            self.out
                .push_str(self.buf.get(range.clone()).ok_or(Unsupported)?);
        }
        self.out.push('}');
        if self.variant {
            close_variant(self.out);
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        self.key = Some(key.serialize(KeyWriter)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        let key = self.key.take().ok_or(Unsupported)?;
        self.member(key.into(), value)
    }
    fn end(self) -> Result<(), Unsupported> {
        if self.key.is_some() {
            return Err(Unsupported);
        }
        self.finish()
    }
}

/// The `serde` traits of a struct and a struct variant, one for an object.
macro_rules! struct_trait {
    ($trait:ident) => {
        impl ser::$trait for Object<'_> {
            type Ok = ();
            type Error = Unsupported;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                value: &T,
            ) -> Result<(), Unsupported> {
                self.member(name.into(), value)
            }
            fn end(self) -> Result<(), Unsupported> {
                self.finish()
            }
        }
    };
}

struct_trait!(SerializeStruct);
struct_trait!(SerializeStructVariant);

/// A map key: only strings (and unit variants, which serde_json also writes as strings).
struct KeyWriter;

type NoKey = Impossible<String, Unsupported>;

impl ser::Serializer for KeyWriter {
    type Ok = String;
    type Error = Unsupported;
    type SerializeSeq = NoKey;
    type SerializeTuple = NoKey;
    type SerializeTupleStruct = NoKey;
    type SerializeTupleVariant = NoKey;
    type SerializeMap = NoKey;
    type SerializeStruct = NoKey;
    type SerializeStructVariant = NoKey;

    fn serialize_str(self, v: &str) -> Result<String, Unsupported> {
        Ok(v.to_owned())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Unsupported> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_bool(self, _: bool) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_i8(self, _: i8) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_i16(self, _: i16) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_i32(self, _: i32) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_i64(self, _: i64) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_u8(self, _: u8) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_u16(self, _: u16) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_u32(self, _: u32) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_u64(self, _: u64) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_f32(self, _: f32) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_f64(self, _: f64) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_char(self, _: char) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_none(self) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_unit(self) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<NoKey, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple(self, _: usize) -> Result<NoKey, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<NoKey, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<NoKey, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<NoKey, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<NoKey, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<NoKey, Unsupported> {
        Err(Unsupported)
    }
}
