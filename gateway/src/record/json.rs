//! The writer threads' JSON, for access-log records and recording lines: a compact serde
//! serializer whose output is byte for byte what `serde_json::to_writer` writes, made cheap for
//! their shape — dozens to a hundred short keys and strings, nearly all plain ASCII.
//!
//! `serde_json` escapes every string, keys included, one byte at a time through a table. Here a
//! string is first checked whole for the bytes JSON must escape (controls, `"`, `\`) with a
//! branch-free pass the compiler vectorizes, and a clean string is copied as it is; any other
//! string — whatever bytes a client sent — goes through `serde_json`'s own escaping, so the
//! output is the same and a line can never be split or forged. Numbers and booleans are
//! written by `serde_json` too: one formatting of each, never a copy of its algorithm.
//!
//! An access log with `fields` writes the outermost struct's chosen fields alone; the others are
//! never serialized.

use serde::ser::{self, Serialize};

use crate::vocab::record_fields::FieldSet;

type Error = serde_json::Error;

/// A reusable output buffer and the serializer that writes into it.
#[derive(Default)]
pub(in crate::record) struct Json {
    pub(in crate::record) out: Vec<u8>,
    /// The fields the next struct keeps, by position; taken by that struct, so that the structs
    /// inside it (a record's `stage_ns`, its `identity`) keep all of theirs.
    fields: Option<FieldSet>,
}

impl Json {
    /// Replaces the buffer's contents with `value` as one JSON text.
    pub(in crate::record) fn write<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), Error> {
        self.write_fields(value, None)
    }

    /// [`Self::write`], where the outermost struct writes only the fields in `fields` (by their
    /// position in the struct; a field it skips, as an absent `Option`, still counts). The
    /// others are not serialized at all: they cost nothing.
    pub(in crate::record) fn write_fields<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        fields: Option<FieldSet>,
    ) -> Result<(), Error> {
        self.out.clear();
        self.fields = fields;
        let written = value.serialize(&mut *self);
        self.fields = None;
        written
    }

    /// A string: copied as it is when nothing in it needs escaping, else written by
    /// `serde_json`.
    fn str(&mut self, text: &str) -> Result<(), Error> {
        if needs_escaping(text.as_bytes()) {
            return serde_json::to_writer(&mut self.out, text);
        }
        self.out.reserve(text.len() + 2);
        self.out.push(b'"');
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(b'"');
        Ok(())
    }

    /// What `serde_json` writes for a number or a boolean.
    fn scalar<T: Serialize>(&mut self, value: T) -> Result<(), Error> {
        serde_json::to_writer(&mut self.out, &value)
    }

    fn open(&mut self, bracket: u8) -> Compound<'_> {
        self.out.push(bracket);
        Compound {
            json: self,
            first: true,
            variant: false,
            fields: None,
            position: 0,
        }
    }

    /// `{"variant":` — how `serde_json` wraps an enum variant that carries data.
    fn variant(&mut self, variant: &str) -> Result<(), Error> {
        self.out.push(b'{');
        self.str(variant)?;
        self.out.push(b':');
        Ok(())
    }
}

/// Whether JSON needs any byte of `bytes` escaped: a control character, a quote or a backslash.
/// Eight bytes at a time (most strings here are a few words long), the last few too, in a word
/// padded with a byte that needs none: a byte at a time, the short strings a record is full of
/// (`GET`, a route's name) cost more than the long ones. Bytes of multi-byte UTF-8 pass as they
/// are, as in `serde_json`.
fn needs_escaping(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut any = false;
    for word in &mut words {
        let mut eight = [0; 8];
        eight.copy_from_slice(word);
        any |= word_needs_escaping(u64::from_le_bytes(eight));
    }
    let rest = words.remainder();
    let mut last = [b' '; 8];
    last[..rest.len()].copy_from_slice(rest);
    any | word_needs_escaping(u64::from_le_bytes(last))
}

/// The word test: a byte below `0x20`, or equal to `"` or `\`. `(x - n·0x01…) & !x & 0x80…`
/// sets a byte's high bit exactly when some byte of `x` is below `n` (for `n` ≤ 128: a borrow
/// starts only at such a byte), and a byte equal to `c` is a zero byte of `x ^ c·0x01…`.
fn word_needs_escaping(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    (below(word, 0x20) | below(quote, 1) | below(backslash, 1)) & HIGHS != 0
}

/// An array or object being written; `variant` when it sits inside `{"variant":…}`.
pub(in crate::record) struct Compound<'a> {
    json: &'a mut Json,
    first: bool,
    variant: bool,
    /// For a struct written with a field set: the set, and the position of its next field.
    fields: Option<FieldSet>,
    position: usize,
}

impl Compound<'_> {
    fn comma(&mut self) {
        if !self.first {
            self.json.out.push(b',');
        }
        self.first = false;
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.json)
    }

    /// A struct's field. Its key is a name in this program's source (a field name or a serde
    /// rename), never input, and none needs escaping: it is copied as it is.
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.comma();
        let out = &mut self.json.out;
        out.reserve(key.len() + 3);
        debug_assert!(!needs_escaping(key.as_bytes()), "a field named {key:?}");
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        value.serialize(&mut *self.json)
    }

    fn close(self, bracket: u8) -> Result<(), Error> {
        self.json.out.push(bracket);
        if self.variant {
            self.json.out.push(b'}');
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for &'a mut Json {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        serde_json::to_writer(&mut self.out, v)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.variant(variant)?;
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(self.open(b'['))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, Error> {
        Ok(self.open(b'['))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Error> {
        Ok(self.open(b'['))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Error> {
        self.variant(variant)?;
        let mut compound = self.open(b'[');
        compound.variant = true;
        Ok(compound)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(self.open(b'{'))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>, Error> {
        let fields = self.fields.take();
        let mut compound = self.open(b'{');
        compound.fields = fields;
        Ok(compound)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Error> {
        self.variant(variant)?;
        let mut compound = self.open(b'{');
        compound.variant = true;
        Ok(compound)
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close(b']')
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close(b']')
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close(b']')
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close(b']')
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    /// A key must be written as a JSON string, as `serde_json` requires: anything else (a
    /// number, a struct) fails the line rather than writing an object JSON cannot read.
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        let start = self.json.out.len();
        key.serialize(&mut *self.json)?;
        if self.json.out.get(start) != Some(&b'"') {
            return Err(ser::Error::custom("a map key must be a string"));
        }
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.json.out.push(b':');
        value.serialize(&mut *self.json)
    }
    fn end(self) -> Result<(), Error> {
        self.close(b'}')
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        if let Some(fields) = self.fields {
            let position = self.position;
            self.position += 1;
            if !fields.holds(position) {
                return Ok(());
            }
        }
        self.field(key, value)
    }
    /// A field the struct's `skip_serializing_if` left out still takes its position.
    fn skip_field(&mut self, _key: &'static str) -> Result<(), Error> {
        self.position += 1;
        Ok(())
    }
    fn end(self) -> Result<(), Error> {
        self.close(b'}')
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.close(b'}')
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(u8, String),
        Struct { a: i64, b: Option<bool> },
    }

    #[derive(Serialize)]
    #[serde(tag = "kind")]
    enum Tagged {
        One { x: u32 },
    }

    #[derive(Serialize)]
    struct Everything {
        strings: Vec<String>,
        shapes: Vec<Shape>,
        tagged: Tagged,
        map: BTreeMap<String, f64>,
        pair: (char, ()),
        none: Option<u8>,
        bytes: serde_bytes_like::Bytes,
        big: (u128, i128),
        ints: (u16, i16, u32, i32, u64, i8, u64),
    }

    mod serde_bytes_like {
        /// Bytes serialized with `serialize_bytes`.
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn the_output_is_serde_jsons_byte_for_byte() {
        let hostile = [
            "plain",
            "",
            "quote \" inside",
            "back\\slash",
            "line\nbreak\r\n{\"v\":1}",
            "\u{0}\u{1f}\u{7f}",
            "ünïcødé ✓ 𝄞",
            "tab\there and a long plain run to cross the vector width many times over",
        ];
        let value = Everything {
            strings: hostile.iter().map(|s| s.to_string()).collect(),
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(1, "a\"b".into()),
                Shape::Struct { a: -3, b: None },
                Shape::Struct {
                    a: i64::MIN,
                    b: Some(true),
                },
            ],
            tagged: Tagged::One { x: 9 },
            map: hostile
                .iter()
                .enumerate()
                .map(|(i, s)| (s.to_string(), i as f64 / 3.0))
                .collect(),
            pair: ('"', ()),
            none: None,
            bytes: serde_bytes_like::Bytes(vec![0, 34, 255]),
            big: (u128::MAX, i128::MIN),
            ints: (u16::MAX, i16::MIN, u32::MAX, -1, u64::MAX, i8::MIN, 0),
        };
        let mut json = Json::default();
        json.write(&value).expect("writes");
        let expected = serde_json::to_vec(&value).expect("serde_json writes");
        assert_eq!(
            String::from_utf8_lossy(&json.out),
            String::from_utf8_lossy(&expected)
        );
        // The buffer is reused: a second value replaces the first.
        json.write(&"x").expect("writes");
        assert_eq!(json.out, b"\"x\"");
    }

    #[test]
    fn a_map_key_that_is_not_a_string_fails_instead_of_writing_bad_json() {
        let map: BTreeMap<u8, u8> = [(1, 2)].into();
        assert!(Json::default().write(&map).is_err());
    }

    #[test]
    fn every_byte_that_json_escapes_is_found_wherever_it_sits() {
        for byte in 0u8..=0xff {
            let must = byte < 0x20 || byte == b'"' || byte == b'\\';
            for fill in [b'a', 0x20, 0x80, 0xff, b'"' + 1, b'\\' - 1] {
                for len in 1..20 {
                    for at in 0..len {
                        let mut text = vec![fill; len];
                        text[at] = byte;
                        let found = needs_escaping(&text);
                        assert_eq!(found, must, "byte {byte:#x} at {at} of {len} in {fill:#x}");
                    }
                }
            }
        }
        assert!(!needs_escaping(b""));
    }
}
