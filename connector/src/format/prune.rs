//! One fast pass over a JSON message that checks its syntax and keeps only the fields views
//! read, so the typed decoder (arrow-json) sees a few hundred bytes instead of the whole
//! tweet.
//!
//! The message must be one JSON object (surrounding whitespace allowed). Every part of it is
//! checked by the [`Scanner`]; kept fields are copied verbatim, so their values are converted to
//! column types exactly as before. Only what is kept is type-checked, by the decoder that
//! follows.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, StructArray};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::arrow::error::ArrowError;
use freshet_common::{Selected, TimestampUnit};

use crate::format::numbers::Rule;
use crate::format::scan::{ScanError, Scanner};

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
pub type PruneError = ScanError;

/// Writes the kept fields of the one JSON object in `input` to `out` as a JSON object.
pub fn prune(input: &[u8], keep: &Keep, out: &mut Vec<u8>) -> Result<(), PruneError> {
    let mut s = Scanner::new(input);
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

impl Scanner<'_> {
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Fields};

    use super::*;
    use crate::format::scan::TRUNCATED;

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
        for len in [0usize, 7, 8, 15, 16, 17, 31, 32, 33, 40, 47, 48, 63, 64, 65, 80] {
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
}
