//! JSON messages straight into Arrow columns in one pass, for the common shape: top-level
//! fields of integer, floating-point, boolean, text and timestamp columns.
//!
//! Each message is walked once by the [`Scanner`], in the order the pruning pass walks it, so a
//! malformed message is refused with the same words; a number is checked by its column's
//! [`Rule`] as there. A value is converted as arrow-json converts it after pruning (text takes
//! numbers and booleans as written, a timestamp takes what arrow parses). Anything else — a
//! string for a number column, an object or array, a key with escapes, a field given twice —
//! makes [`Direct::decode`] give up on the batch (`None`): the general decoder then decodes it,
//! with its own rules for those cases.

use std::sync::Arc;

use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    new_null_array, ArrayRef, BooleanArray, PrimitiveArray, StringArray,
};
use datafusion::arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, SchemaRef, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::arrow::error::ArrowError;
use freshet_common::{Selected, Selection, TimestampUnit};

use crate::format::numbers::Rule;
use crate::format::scan::Scanner;
use crate::format::Payloads;
use crate::message::{BadMessage, Message};

/// What a decoded column holds.
#[derive(Debug, Clone)]
enum Kind {
    Int {
        min: i64,
        max: i64,
    },
    Float32,
    Float64,
    Bool,
    Text,
    /// Microseconds; strings without an offset are read in the zone (UTC when none).
    Timestamp(Option<Tz>),
}

/// One decoded field.
#[derive(Debug, Clone)]
struct Field {
    name: Box<[u8]>,
    kind: Kind,
    rule: Rule,
    data_type: DataType,
}

/// The one-pass decoder of a selection of a payload schema.
#[derive(Debug, Clone)]
pub(crate) struct Direct {
    fields: Vec<Field>,
    /// Per payload column: its index among `fields`, when it is decoded.
    of_column: Vec<Option<usize>>,
    payload: SchemaRef,
}

/// Why a message did not become a row.
enum Stop {
    /// Refused, with the words of the general decoder.
    Bad(String),
    /// Not a case this decoder handles.
    GiveUp,
}

impl From<String> for Stop {
    fn from(e: String) -> Stop {
        Stop::Bad(e)
    }
}

impl Direct {
    /// The decoder of `selection` of `payload`, when every selected column is one this decoder
    /// takes whole (none of the `raw` JSON columns among them).
    pub(crate) fn new(
        payload: &SchemaRef,
        selection: &Selection,
        raw: &[usize],
        unit: TimestampUnit,
    ) -> Option<Direct> {
        let mut fields = Vec::new();
        let mut of_column = Vec::with_capacity(payload.fields().len());
        for (i, f) in payload.fields().iter().enumerate() {
            let Some(sel) = selection.get(i) else {
                of_column.push(None);
                continue;
            };
            if raw.contains(&i) || !matches!(sel, Selected::All) {
                return None;
            }
            let int = |min: i64, max: i64| Kind::Int { min, max };
            let kind = match f.data_type() {
                DataType::Int16 => int(i16::MIN.into(), i16::MAX.into()),
                DataType::Int32 => int(i32::MIN.into(), i32::MAX.into()),
                DataType::Int64 => int(i64::MIN, i64::MAX),
                DataType::Float32 => Kind::Float32,
                DataType::Float64 => Kind::Float64,
                DataType::Boolean => Kind::Bool,
                DataType::Utf8 => Kind::Text,
                DataType::Timestamp(TimeUnit::Microsecond, tz) => match tz {
                    None => Kind::Timestamp(None),
                    Some(tz) => Kind::Timestamp(Some(tz.parse().ok()?)),
                },
                _ => return None,
            };
            of_column.push(Some(fields.len()));
            fields.push(Field {
                name: f.name().as_bytes().into(),
                kind,
                rule: Rule::for_type(f.data_type(), unit),
                data_type: f.data_type().clone(),
            });
        }
        // A message's fields seen are a bit each.
        if fields.is_empty() || fields.len() > 64 {
            return None;
        }
        Some(Direct {
            fields,
            of_column,
            payload: Arc::clone(payload),
        })
    }

    /// The rows of `msgs` and the messages refused, or `None` when some message needs the
    /// general decoder.
    pub(crate) fn decode(&self, msgs: &[Message]) -> Result<Option<Payloads>, ArrowError> {
        let mut columns: Vec<Column> = self
            .fields
            .iter()
            .map(|f| Column::new(&f.kind, msgs.len()))
            .collect();
        let mut rows = Vec::with_capacity(msgs.len());
        let mut bad = Vec::new();
        let mut keys = Keys::default();
        for (i, m) in msgs.iter().enumerate() {
            match self.message(m.bytes(), &mut columns, &mut keys) {
                Ok(()) => rows.push(i),
                Err(Stop::Bad(e)) => {
                    for c in &mut columns {
                        c.truncate(rows.len());
                    }
                    bad.push(BadMessage::new(m, e));
                }
                Err(Stop::GiveUp) => return Ok(None),
            }
        }
        if rows.is_empty() {
            return Ok(Some(Payloads {
                bad,
                ..Payloads::default()
            }));
        }
        let mut finished: Vec<Option<ArrayRef>> = Vec::with_capacity(columns.len());
        for (c, f) in columns.into_iter().zip(&self.fields) {
            finished.push(Some(c.finish(&f.data_type)?));
        }
        let columns = self
            .of_column
            .iter()
            .zip(self.payload.fields())
            .map(|(at, f)| match at {
                Some(k) => finished[*k].take().expect("each decoded column once"),
                None => new_null_array(f.data_type(), rows.len()),
            })
            .collect();
        Ok(Some(Payloads { columns, rows, bad }))
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        self.fields.iter().position(|f| *f.name == *key)
    }

    /// One message into `columns` (a value or NULL in each), or why not; on `Err` the columns
    /// may hold part of the row.
    fn message(&self, b: &[u8], columns: &mut [Column], keys: &mut Keys) -> Result<(), Stop> {
        let mut s = Scanner::new(b);
        s.ws();
        match s.peek() {
            None => return Err(Stop::Bad("empty message".into())),
            Some(b'{') => s.pos += 1,
            Some(_) => return Err(Stop::Bad("message is not a JSON object".into())),
        }
        let mut seen = 0u64;
        s.ws();
        if s.peek() == Some(b'}') {
            s.pos += 1;
        } else {
            for place in 0.. {
                let (start, end, escaped) = s.key()?;
                if escaped {
                    return Err(Stop::GiveUp);
                }
                match keys.field(place, &b[start + 1..end - 1], |k| self.find(k)) {
                    None => s.skip_value()?,
                    Some(k) => {
                        let bit = 1u64 << k;
                        if seen & bit != 0 {
                            return Err(Stop::GiveUp);
                        }
                        seen |= bit;
                        self.value(&mut s, &self.fields[k], &mut columns[k])?;
                    }
                }
                s.ws();
                match s.peek() {
                    Some(b',') => s.pos += 1,
                    Some(b'}') => {
                        s.pos += 1;
                        break;
                    }
                    _ => s.err::<()>("expected ',' or '}'")?,
                }
            }
        }
        s.ws();
        if s.pos != b.len() {
            return Err(Stop::Bad("more than one JSON value in the message".into()));
        }
        for (k, c) in columns.iter_mut().enumerate() {
            if seen & (1u64 << k) == 0 {
                c.null();
            }
        }
        Ok(())
    }

    /// The value at the scanner (after the key's colon) into `column`.
    fn value(&self, s: &mut Scanner, f: &Field, column: &mut Column) -> Result<(), Stop> {
        let v = s.pos;
        match s.peek() {
            Some(b'"') => {
                let escaped = s.string()?;
                let inner = &s.b[v + 1..s.pos - 1];
                match &f.kind {
                    Kind::Text if escaped => {
                        let text: String =
                            serde_json::from_slice(&s.b[v..s.pos]).map_err(|_| Stop::GiveUp)?;
                        column.text(text.as_bytes())
                    }
                    Kind::Text => column.text(inner),
                    Kind::Timestamp(tz) if !escaped => {
                        let at = match (tz, plain_timestamp(inner)) {
                            (None, Some(at)) => at,
                            (tz, _) => {
                                // The scanner checked the string is UTF-8.
                                let text = std::str::from_utf8(inner).map_err(|_| Stop::GiveUp)?;
                                let at = match tz {
                                    None => string_to_datetime(&chrono::Utc, text)
                                        .map(|d| d.timestamp_micros()),
                                    Some(tz) => {
                                        string_to_datetime(tz, text).map(|d| d.timestamp_micros())
                                    }
                                };
                                at.map_err(|_| Stop::GiveUp)?
                            }
                        };
                        column.int(at);
                        Ok(())
                    }
                    _ => Err(Stop::GiveUp),
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                s.number()?;
                self.number(&s.b[v..s.pos], f, column)
            }
            Some(b't' | b'f') => {
                let yes = s.peek() == Some(b't');
                s.literal(if yes { b"true" } else { b"false" })?;
                match f.kind {
                    Kind::Bool => {
                        column.bool(yes);
                        Ok(())
                    }
                    Kind::Text => column.text(&s.b[v..s.pos]),
                    _ => Err(Stop::GiveUp),
                }
            }
            Some(b'n') => {
                s.literal(b"null")?;
                column.null();
                Ok(())
            }
            // An object or an array (`Ok(false)`), or a malformed value.
            _ => {
                s.scalar()?;
                Err(Stop::GiveUp)
            }
        }
    }

    /// A number token (checked against the grammar) into `column`.
    fn number(&self, tok: &[u8], f: &Field, column: &mut Column) -> Result<(), Stop> {
        let refused = |e: String| {
            Stop::Bad(format!(
                "field \"{}\": {e}",
                String::from_utf8_lossy(&f.name)
            ))
        };
        match f.kind {
            Kind::Int { min, max } => {
                let v = match plain_i64(tok) {
                    Some(v) if (min..=max).contains(&v) => v,
                    _ => {
                        let exact = f.rule.apply(tok).map_err(refused)?;
                        plain_i64(&exact).ok_or(Stop::GiveUp)?
                    }
                };
                column.int(v);
            }
            Kind::Timestamp(_) => {
                let micros = f.rule.apply(tok).map_err(refused)?;
                column.int(plain_i64(&micros).ok_or(Stop::GiveUp)?);
            }
            Kind::Float32 | Kind::Float64 => {
                f.rule.apply(tok).map_err(refused)?;
                let text = std::str::from_utf8(tok).map_err(|_| Stop::GiveUp)?;
                if matches!(f.kind, Kind::Float32) {
                    column.float(f64::from(text.parse::<f32>().map_err(|_| Stop::GiveUp)?));
                } else {
                    column.float(text.parse::<f64>().map_err(|_| Stop::GiveUp)?);
                }
            }
            Kind::Text => return column.text(tok),
            Kind::Bool => return Err(Stop::GiveUp),
        }
        Ok(())
    }
}

/// The keys of the message before, by place, with the field each names: messages of one
/// producer list their keys in one order, so a key is mostly one comparison away.
#[derive(Default)]
struct Keys {
    places: Vec<(Vec<u8>, Option<usize>)>,
}

impl Keys {
    /// The field `key` names, at `place` among the message's keys.
    #[inline]
    fn field(
        &mut self,
        place: usize,
        key: &[u8],
        find: impl FnOnce(&[u8]) -> Option<usize>,
    ) -> Option<usize> {
        match self.places.get_mut(place) {
            Some((k, field)) if k.as_slice() == key => *field,
            Some((k, field)) => {
                k.clear();
                k.extend_from_slice(key);
                *field = find(key);
                *field
            }
            None => {
                let field = find(key);
                self.places.push((key.to_vec(), field));
                field
            }
        }
    }
}

/// An integer written as plain digits (an optional minus, at most 18 digits), else `None`.
#[inline]
fn plain_i64(tok: &[u8]) -> Option<i64> {
    let (neg, digits) = match tok.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, tok),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(if neg { -v } else { v })
}

/// `YYYY-MM-DD HH:MM:SS[.f{1,6}]` (or `T` between), the common shape of timestamps in JSON, as
/// microseconds since 1970 (UTC); `None` for any other text, which arrow's parser reads.
/// Leap seconds and more than six decimals are left to it too.
#[inline]
fn plain_timestamp(s: &[u8]) -> Option<i64> {
    if s.len() < 19 || s.len() == 20 || s.len() > 26 {
        return None;
    }
    let digit = |i: usize| {
        let d = s[i].wrapping_sub(b'0');
        (d < 10).then_some(i64::from(d))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    if s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b' ' | b'T' | b't') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut micros = 0;
    if s.len() > 19 {
        if s[19] != b'.' {
            return None;
        }
        for i in 20..26 {
            micros = micros * 10 + if i < s.len() { digit(i)? } else { 0 };
        }
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1_000_000 + micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The values of one column so far, a slot per row.
enum Values {
    Ints(Vec<i64>),
    /// Float32 columns too (an f32 is exactly an f64).
    Floats(Vec<f64>),
    Bools(Vec<bool>),
    Text {
        offsets: Vec<i32>,
        bytes: Vec<u8>,
    },
}

struct Column {
    values: Values,
    valid: Vec<bool>,
}

impl Column {
    fn new(kind: &Kind, rows: usize) -> Column {
        let values = match kind {
            Kind::Int { .. } | Kind::Timestamp(_) => Values::Ints(Vec::with_capacity(rows)),
            Kind::Float32 | Kind::Float64 => Values::Floats(Vec::with_capacity(rows)),
            Kind::Bool => Values::Bools(Vec::with_capacity(rows)),
            Kind::Text => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                Values::Text {
                    offsets,
                    bytes: Vec::with_capacity(rows * 16),
                }
            }
        };
        Column {
            values,
            valid: Vec::with_capacity(rows),
        }
    }

    fn null(&mut self) {
        self.valid.push(false);
        match &mut self.values {
            Values::Ints(v) => v.push(0),
            Values::Floats(v) => v.push(0.0),
            Values::Bools(v) => v.push(false),
            Values::Text { offsets, bytes } => offsets.push(bytes.len() as i32),
        }
    }

    fn int(&mut self, x: i64) {
        self.valid.push(true);
        if let Values::Ints(v) = &mut self.values {
            v.push(x);
        }
    }

    fn float(&mut self, x: f64) {
        self.valid.push(true);
        if let Values::Floats(v) = &mut self.values {
            v.push(x);
        }
    }

    fn bool(&mut self, x: bool) {
        self.valid.push(true);
        if let Values::Bools(v) = &mut self.values {
            v.push(x);
        }
    }

    /// UTF-8 text (the scanner checked it).
    fn text(&mut self, s: &[u8]) -> Result<(), Stop> {
        let Values::Text { offsets, bytes } = &mut self.values else {
            return Err(Stop::GiveUp);
        };
        let end = i32::try_from(bytes.len() + s.len()).map_err(|_| Stop::GiveUp)?;
        bytes.extend_from_slice(s);
        offsets.push(end);
        self.valid.push(true);
        Ok(())
    }

    /// Back to the first `rows` rows.
    fn truncate(&mut self, rows: usize) {
        self.valid.truncate(rows);
        match &mut self.values {
            Values::Ints(v) => v.truncate(rows),
            Values::Floats(v) => v.truncate(rows),
            Values::Bools(v) => v.truncate(rows),
            Values::Text { offsets, bytes } => {
                offsets.truncate(rows + 1);
                bytes.truncate(offsets[rows] as usize);
            }
        }
    }

    fn finish(self, data_type: &DataType) -> Result<ArrayRef, ArrowError> {
        let nulls = (!self.valid.iter().all(|&v| v)).then(|| NullBuffer::from(self.valid));
        let array: ArrayRef = match (self.values, data_type) {
            (Values::Ints(v), DataType::Int16) => Arc::new(PrimitiveArray::<Int16Type>::new(
                v.into_iter().map(|x| x as i16).collect(),
                nulls,
            )),
            (Values::Ints(v), DataType::Int32) => Arc::new(PrimitiveArray::<Int32Type>::new(
                v.into_iter().map(|x| x as i32).collect(),
                nulls,
            )),
            (Values::Ints(v), DataType::Int64) => {
                Arc::new(PrimitiveArray::<Int64Type>::new(v.into(), nulls))
            }
            (Values::Ints(v), DataType::Timestamp(..)) => Arc::new(
                PrimitiveArray::<TimestampMicrosecondType>::new(v.into(), nulls)
                    .with_data_type(data_type.clone()),
            ),
            (Values::Floats(v), DataType::Float32) => Arc::new(PrimitiveArray::<Float32Type>::new(
                v.into_iter().map(|x| x as f32).collect(),
                nulls,
            )),
            (Values::Floats(v), DataType::Float64) => {
                Arc::new(PrimitiveArray::<Float64Type>::new(v.into(), nulls))
            }
            (Values::Bools(v), DataType::Boolean) => {
                Arc::new(BooleanArray::new(v.into_iter().collect(), nulls))
            }
            (Values::Text { offsets, bytes }, DataType::Utf8) => Arc::new(StringArray::try_new(
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                Buffer::from_vec(bytes),
                nulls,
            )?),
            (_, t) => {
                return Err(ArrowError::SchemaError(format!(
                    "one-pass JSON decoding does not build {t}"
                )))
            }
        };
        Ok(array)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_timestamps_read_as_arrow_reads_them() {
        let arrow = |t: &str| {
            string_to_datetime(&chrono::Utc, t)
                .ok()
                .map(|d| d.timestamp_micros())
        };
        let mut texts: Vec<String> = [
            "2026-01-01 00:00:00.000123",
            "2024-02-29 23:59:59",
            "2023-02-29 00:00:00",
            "1900-02-29T00:00:00",
            "2000-02-29t12:00:00.5",
            "0000-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
            "1969-12-31 23:59:59.9",
            "2026-04-31 00:00:00",
            "2026-00-10 00:00:00",
            "2026-13-10 00:00:00",
            "2026-01-00 00:00:00",
            "2026-01-01 24:00:00",
            "2026-01-01 23:60:00",
            "2026-01-01 23:59:60",
            "2026-01-01 23:59:59.",
            "2026-01-01 23:59:59.1234567",
            "2026-01-01 23:59:59Z",
            "2026-01-01 23:59:59+02:00",
            "2026-01-01_23:59:59",
            "2026-1-01 23:59:59",
            "2026-01-01 23:59:5x",
            "+026-01-01 23:59:59",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        // Every day of four years around a leap year and a century, at odd times.
        let mut day = days_from_civil(1899, 11, 1);
        let mut rng = 17u64;
        while day < days_from_civil(1904, 3, 1) {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            let t = day * 86_400_000_000 + (rng >> 20) as i64 % 86_400_000_000;
            let d = chrono::DateTime::from_timestamp_micros(t).unwrap();
            let frac = (rng >> 8) as usize % 7;
            let mut text = d.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            text.truncate(if frac == 0 { 19 } else { 20 + frac });
            texts.push(text);
            day += 1;
        }
        let mut plain = 0;
        for t in &texts {
            match plain_timestamp(t.as_bytes()) {
                Some(v) => {
                    plain += 1;
                    assert_eq!(Some(v), arrow(t), "{t}");
                }
                // Left to arrow: fine whatever arrow makes of it, as long as it is not plain.
                None => assert!(
                    t.len() == 20
                        || t.len() > 26
                        || t.contains(['Z', '+', '_'])
                        || arrow(t).is_none()
                        || t.contains(":60"),
                    "{t} is plain"
                ),
            }
        }
        assert!(plain > 1000);
    }
}
