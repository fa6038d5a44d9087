//! One fast pass over a JSON message that checks its syntax and keeps only the fields views
//! read, so the typed decoder (arrow-json) sees a few hundred bytes instead of the whole
//! tweet.
//!
//! The message must be one JSON object (surrounding whitespace allowed). Every part of it is
//! checked against the JSON grammar (strings and their escapes, numbers, literals, nesting);
//! kept fields are copied verbatim, so their values are converted to column types exactly as
//! before. Only what is kept is type-checked, by the decoder that follows. Strings are checked to
//! be UTF-8 (outside them, JSON is ASCII).

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, StructArray};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::arrow::error::ArrowError;
use freshet_common::{Selected, TimestampUnit};

use crate::format::numbers::Rule;

/// The fields to keep, by name: `None` keeps the whole value, `Some` keeps only some of the
/// fields of an object value (any other value is kept whole). A kept number is converted by
/// its column's [`Rule`] (exactly, or the message is refused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    fields: Vec<(Box<[u8]>, Option<Keep>, Rule)>,
    unit: TimestampUnit,
}

impl Keep {
    /// Keeps nothing yet; numbers for TIMESTAMP columns are in `unit`.
    pub fn new(unit: TimestampUnit) -> Keep {
        Keep {
            fields: Vec::new(),
            unit,
        }
    }

    /// Keeps `name`: all of it, or the `selected` fields of it when its type is a struct.
    pub fn add(&mut self, name: &str, data_type: &DataType, selected: &Selected) {
        let sub = match (selected, data_type) {
            (Selected::Fields(sel), DataType::Struct(fields)) => {
                let mut keep = Keep::new(self.unit);
                for f in fields.iter() {
                    if let Some(s) = sel.get(f.name()) {
                        keep.add(f.name(), f.data_type(), s);
                    }
                }
                Some(keep)
            }
            _ => None,
        };
        let rule = Rule::for_type(data_type, self.unit);
        self.fields.push((name.as_bytes().into(), sub, rule));
    }

    /// Whether some kept number must be checked or converted.
    pub fn converts(&self) -> bool {
        self.fields
            .iter()
            .any(|(_, sub, rule)| *rule != Rule::Any || sub.as_ref().is_some_and(Keep::converts))
    }

    fn find(&self, key: &[u8]) -> Option<(&Option<Keep>, Rule)> {
        self.fields
            .iter()
            .find(|(name, _, _)| name.as_ref() == key)
            .map(|(_, k, r)| (k, *r))
    }
}

/// `field` narrowed to what `selected` reads (the same `Arc` when it reads all of it).
pub fn pruned_field(field: &FieldRef, selected: &Selected) -> FieldRef {
    match (selected, field.data_type()) {
        (Selected::Fields(sel), DataType::Struct(children)) => {
            let kept: Vec<FieldRef> = children
                .iter()
                .filter_map(|c| sel.get(c.name()).map(|s| pruned_field(c, s)))
                .collect();
            Arc::new(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(DataType::Struct(kept.into())),
            )
        }
        _ => Arc::clone(field),
    }
}

/// `array`, decoded as [`pruned_field`]'s type, widened back to `full`: the fields not read
/// are NULL.
pub fn expand(
    array: &ArrayRef,
    full: &DataType,
    selected: &Selected,
) -> Result<ArrayRef, ArrowError> {
    let (Selected::Fields(sel), DataType::Struct(children)) = (selected, full) else {
        return Ok(Arc::clone(array));
    };
    let Some(decoded) = array.as_struct_opt() else {
        return Ok(Arc::clone(array));
    };
    let columns = children
        .iter()
        .map(
            |c| match (decoded.column_by_name(c.name()), sel.get(c.name())) {
                (Some(a), Some(s)) => expand(a, c.data_type(), s),
                _ => Ok(new_null_array(c.data_type(), array.len())),
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(StructArray::try_new(
        children.clone(),
        columns,
        decoded.nulls().cloned(),
    )?))
}

/// A syntax error, with a message for the error relation.
pub type PruneError = String;

/// Writes the kept fields of the one JSON object in `input` to `out` as a JSON object.
pub fn prune(input: &[u8], keep: &Keep, out: &mut Vec<u8>) -> Result<(), PruneError> {
    let mut s = Scanner { b: input, pos: 0 };
    s.ws();
    match s.peek() {
        None => return Err("empty message".into()),
        Some(b'{') => {}
        Some(_) => return Err("message is not a JSON object".into()),
    }
    s.object(keep, out)?;
    s.ws();
    if s.pos != input.len() {
        return Err("more than one JSON value in the message".into());
    }
    Ok(())
}

struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
}

const TRUNCATED: &str = "truncated JSON object";
const NOT_UTF8: &str = "message is not valid UTF-8";

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, PruneError> {
        if self.pos >= self.b.len() {
            Err(TRUNCATED.into())
        } else {
            Err(format!("invalid JSON at byte {}: {what}", self.pos))
        }
    }

    #[inline]
    fn expect(&mut self, c: u8, what: &str) -> Result<(), PruneError> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    /// At a `"`: skips the string; returns whether it has escapes.
    fn string(&mut self) -> Result<bool, PruneError> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            self.pos += plain_run(&self.b[self.pos..]);
            let Some(&c) = self.b.get(self.pos) else {
                return Err(TRUNCATED.into());
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.pos + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 2
                        }
                        Some(b'u') => {
                            let hex = self.b.get(self.pos + 2..self.pos + 6);
                            match hex {
                                Some(h) if h.iter().all(u8::is_ascii_hexdigit) => self.pos += 6,
                                Some(_) => return self.err("bad \\u escape"),
                                None => return Err(TRUNCATED.into()),
                            }
                        }
                        Some(_) => return self.err("bad escape"),
                        None => return Err(TRUNCATED.into()),
                    }
                }
                0x80.. => {
                    // One UTF-8 sequence, checked on its own.
                    let width = match c {
                        0xC2..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF4 => 4,
                        _ => return Err(NOT_UTF8.into()),
                    };
                    match self.b.get(self.pos..self.pos + width) {
                        Some(seq) if std::str::from_utf8(seq).is_ok() => self.pos += width,
                        _ => return Err(NOT_UTF8.into()),
                    }
                }
                _ => return self.err("control character in string"),
            }
        }
    }

    fn number(&mut self) -> Result<(), PruneError> {
        let digits = |s: &mut Self| {
            let start = s.pos;
            while s.peek().is_some_and(|c| c.is_ascii_digit()) {
                s.pos += 1;
            }
            s.pos > start
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return self.err("bad number"),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return self.err("bad number");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !digits(self) {
                return self.err("bad number");
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), PruneError> {
        match self.b.get(self.pos..self.pos + word.len()) {
            Some(w) if w == word => {
                self.pos += word.len();
                Ok(())
            }
            Some(_) => self.err("unexpected character"),
            None if self.b[self.pos..] == word[..self.b.len() - self.pos] => Err(TRUNCATED.into()),
            None => self.err("unexpected character"),
        }
    }

    /// One scalar value at the current position (after whitespace), or `Ok(false)` at the
    /// start of an array or object (not consumed).
    #[inline]
    fn scalar(&mut self) -> Result<bool, PruneError> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| true),
            Some(b'-' | b'0'..=b'9') => self.number().map(|()| true),
            Some(b't') => self.literal(b"true").map(|()| true),
            Some(b'f') => self.literal(b"false").map(|()| true),
            Some(b'n') => self.literal(b"null").map(|()| true),
            Some(b'{' | b'[') => Ok(false),
            Some(_) => self.err("unexpected character"),
            None => Err(TRUNCATED.into()),
        }
    }

    /// Skips one value of any kind, checking it.
    fn skip_value(&mut self) -> Result<(), PruneError> {
        self.ws();
        if self.scalar()? {
            return Ok(());
        }
        // Containers, without recursion: `true` for an object on the stack.
        let mut stack: Vec<bool> = Vec::new();
        'value: loop {
            // At the start of a value.
            self.ws();
            if !self.scalar()? {
                let object = self.peek() == Some(b'{');
                self.pos += 1;
                self.ws();
                let close = if object { b'}' } else { b']' };
                if self.peek() == Some(close) {
                    self.pos += 1;
                } else {
                    if stack.len() >= MAX_DEPTH {
                        // Decoders after this one recurse per level: the message is refused
                        // here, alone, rather than exhausting their stack.
                        return self.err("JSON nested too deeply");
                    }
                    stack.push(object);
                    if object {
                        self.key()?;
                    }
                    continue 'value;
                }
            }
            // After a value: close containers until one continues.
            loop {
                let Some(&object) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {
                        self.pos += 1;
                        stack.pop();
                    }
                    Some(b']') if !object => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ => return self.err("expected ',' or the end of a container"),
                }
            }
        }
    }

    /// A member's key and the colon after it.
    fn key(&mut self) -> Result<(usize, usize, bool), PruneError> {
        self.ws();
        if self.peek() != Some(b'"') {
            return self.err("expected a string key");
        }
        let start = self.pos;
        let escaped = self.string()?;
        let end = self.pos;
        self.expect(b':', "expected ':'")?;
        self.ws();
        Ok((start, end, escaped))
    }

    /// At a `{`: checks the object and writes its kept members to `out`.
    fn object(&mut self, keep: &Keep, out: &mut Vec<u8>) -> Result<(), PruneError> {
        self.pos += 1;
        out.push(b'{');
        let mut first = true;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            out.push(b'}');
            return Ok(());
        }
        loop {
            let (start, end, escaped) = self.key()?;
            let raw = &self.b[start + 1..end - 1];
            let unescaped;
            let name: &[u8] = if escaped {
                unescaped = serde_json::from_slice::<String>(&self.b[start..end])
                    .map_err(|e| format!("bad key: {e}"))?;
                unescaped.as_bytes()
            } else {
                raw
            };
            match keep.find(name) {
                None => self.skip_value()?,
                Some((sub, rule)) => {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.extend_from_slice(&self.b[start..end]);
                    out.push(b':');
                    match sub {
                        Some(sub) if self.peek() == Some(b'{') => self.object(sub, out)?,
                        _ => {
                            let v = self.pos;
                            self.skip_value()?;
                            let value = &self.b[v..self.pos];
                            match value.first() {
                                Some(b'-' | b'0'..=b'9') if rule != Rule::Any => {
                                    let converted = rule.apply(value).map_err(|e| {
                                        format!("field \"{}\": {e}", String::from_utf8_lossy(name))
                                    })?;
                                    out.extend_from_slice(&converted);
                                }
                                _ => out.extend_from_slice(value),
                            }
                        }
                    }
                }
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    out.push(b'}');
                    return Ok(());
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }
}

/// The deepest nesting of arrays and objects a message may have (serde_json's limit).
pub const MAX_DEPTH: usize = 128;

/// How many bytes at the start of `b` need no attention inside a string: ASCII other than
/// `"`, `\\` and control characters.
#[inline]
fn plain_run(b: &[u8]) -> usize {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        // SSE2 is part of x86_64: 16 bytes at a time.
        use std::arch::x86_64::*;
        while i + 16 <= b.len() {
            // SAFETY: 16 bytes from `i` are in bounds (checked above); unaligned load.
            let mask = unsafe {
                let v = _mm_loadu_si128(b.as_ptr().add(i).cast());
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v);
                let special = _mm_or_si128(_mm_or_si128(quote, backslash), control);
                // The sign bit of every byte: non-ASCII.
                (_mm_movemask_epi8(special) | _mm_movemask_epi8(v)) as u32
            };
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if has_special(w) || w & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        i += 8;
    }
    while b
        .get(i)
        .is_some_and(|&c| c >= 0x20 && c < 0x80 && c != b'"' && c != b'\\')
    {
        i += 1;
    }
    i
}

/// Whether any of the eight bytes of `w` is `"`, `\\` or below 0x20.
#[inline]
fn has_special(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64)) | below_space) != 0
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Fields};

    use super::*;

    fn keep_user_name() -> Keep {
        let user = DataType::Struct(Fields::from(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let mut k = Keep::new(TimestampUnit::Seconds);
        k.add("id", &DataType::Int64, &Selected::All);
        let sel = Selected::Fields([("name".to_string(), Selected::All)].into());
        k.add("user", &user, &sel);
        k
    }

    fn run(input: &str) -> Result<String, String> {
        let mut out = Vec::new();
        prune(input.as_bytes(), &keep_user_name(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn keeps_selected_fields_and_nested_parts() {
        assert_eq!(
            run(r#" {"text":"a \"q\" \u00e9","id":12,"user":{"id":3,"name":"bob","x":[1,{"y":null}]},"e":[]} "#)
                .unwrap(),
            r#"{"id":12,"user":{"name":"bob"}}"#
        );
        assert_eq!(run(r#"{"user":null}"#).unwrap(), r#"{"user":null}"#);
        assert_eq!(run(r#"{"user":5}"#).unwrap(), r#"{"user":5}"#);
        assert_eq!(run(r#"{"i\u0064":1}"#).unwrap(), r#"{"i\u0064":1}"#);
        assert_eq!(run("{}").unwrap(), "{}");
        assert_eq!(
            run(r#"{"a":-1.5e+3,"b":true,"c":false,"d":null,"id":0}"#).unwrap(),
            r#"{"id":0}"#
        );
    }

    #[test]
    fn rejects_nesting_deeper_than_the_limit_without_recursing() {
        let deep = format!(
            "{{\"x\":1,\"other\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(run(&deep).is_err());
        let ok = format!(
            "{{\"x\":1,\"other\":{}{}}}",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(run(&ok).is_ok());
    }

    #[test]
    fn rejects_what_is_not_one_object() {
        for (input, want) in [
            ("", "empty message"),
            ("  ", "empty message"),
            ("[1]", "message is not a JSON object"),
            ("\"s\"", "message is not a JSON object"),
            (
                "{\"id\":1}{\"id\":2}",
                "more than one JSON value in the message",
            ),
            ("{\"id\": 5, \"lang\": \"en\"", TRUNCATED),
            ("{\"a\":\"abc", TRUNCATED),
            ("{\"a\":[1,2", TRUNCATED),
            ("{\"a\":tru", TRUNCATED),
        ] {
            assert_eq!(run(input).unwrap_err(), want, "{input:?}");
        }
        for input in [
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":[1,]}",
            "{\"a\":{\"b\"}}",
            "{\"a\":{\"b\":1,}}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":\"tab\there\"}",
            "{\"a\":nul}",
            "{\"a\":[1}",
            "{\"a\":{]}",
            "{a:1}",
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
        ] {
            let e = run(input).unwrap_err();
            assert!(e.starts_with("invalid JSON"), "{input:?}: {e}");
        }
        let mut out = Vec::new();
        assert_eq!(
            prune(b"{\"a\":\"\xff\"}", &keep_user_name(), &mut out).unwrap_err(),
            "message is not valid UTF-8"
        );
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        // A mixed corpus; every valid one must pass, every invalid one must fail.
        let samples = [
            r#"{"a":[[],[{}],{"b":[1,2,{"c":"d"}]}],"id":1}"#,
            r#"{"s":"\\\/\b\f\n\r\t\u0041","n":-0.0e-0}"#,
            r#"{"x":"ünïcødé ✓ 🎉"}"#,
            "{\n\t\"a\" : [ 1 , 2 ] \r\n}",
            r#"{"a":[1,2,]}"#,
            r#"{"a":1,}"#,
            r#"{"a":"\u00"}"#,
            r#"{"a":[}"#,
        ];
        for s in samples {
            let valid = serde_json::from_str::<serde_json::Value>(s).is_ok();
            assert_eq!(run(s).is_ok(), valid, "{s}");
        }
    }

    #[test]
    fn strings_agree_with_serde_json_byte_by_byte() {
        // Every byte value at every position of strings around the 8- and 16-byte steps.
        let probes: &[&[u8]] = &[
            b"\"",
            b"\\",
            b"\\n",
            b"\\u00e9",
            b"\\x",
            b"\t",
            b"\x01",
            b"\x7f",
            "é".as_bytes(),
            "✓".as_bytes(),
            "🎉".as_bytes(),
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"\xe2\x82",
            b"\xff",
            b"\xf5\x80\x80\x80",
            b"\x80",
        ];
        for len in [0usize, 7, 8, 15, 16, 17, 31, 40] {
            for at in 0..=len {
                for probe in probes {
                    let mut body = vec![b'a'; len];
                    body.splice(at..at, probe.iter().copied());
                    let mut msg = b"{\"id\":\"".to_vec();
                    msg.extend_from_slice(&body);
                    msg.extend_from_slice(b"\"}");
                    let valid = serde_json::from_slice::<serde_json::Value>(&msg).is_ok();
                    let mut out = Vec::new();
                    let got = prune(&msg, &keep_user_name(), &mut out);
                    assert_eq!(
                        got.is_ok(),
                        valid,
                        "{:?}: {got:?}",
                        String::from_utf8_lossy(&msg)
                    );
                    if valid {
                        assert_eq!(out, msg);
                    }
                }
            }
        }
    }

    #[test]
    fn special_bytes_are_found_in_words() {
        for c in 0u8..=255 {
            for at in 0..8 {
                let mut w = [b'a'; 8];
                w[at] = c;
                let want = c < 0x20 || c == b'"' || c == b'\\';
                assert_eq!(has_special(u64::from_le_bytes(w)), want, "{c} at {at}");
            }
        }
    }
}
