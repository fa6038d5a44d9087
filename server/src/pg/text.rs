//! PostgreSQL's text form of timestamps, which pgwire's encoder does not give (it always
//! prints six fraction digits): `2026-01-01 00:00:05`, `2026-01-01 00:00:05.25`, and for
//! `timestamptz` the offset as PostgreSQL prints it (`+00`, `+05:30`). Columns sent in text
//! format are turned into their text before encoding; binary format is left to pgwire.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{
    DataType, Field, Schema, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use pgwire::api::portal::Format;
use pgwire::api::results::FieldFormat;

/// `batch` with each timestamp column that goes out in text format as PostgreSQL's text.
pub fn timestamps_as_text(batch: RecordBatch, format: &Format) -> RecordBatch {
    let schema = batch.schema();
    let wanted = |i: usize, f: &Field| {
        matches!(f.data_type(), DataType::Timestamp(_, _))
            && format.format_for(i) == FieldFormat::Text
    };
    if !schema
        .fields()
        .iter()
        .enumerate()
        .any(|(i, f)| wanted(i, f))
    {
        return batch;
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, (f, c)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        match (wanted(i, f), f.data_type()) {
            (true, DataType::Timestamp(unit, tz)) => match offset_seconds(tz.as_deref()) {
                Some(offset) => {
                    fields.push(Arc::new(Field::new(
                        f.name(),
                        DataType::Utf8,
                        f.is_nullable(),
                    )));
                    columns.push(render(c, *unit, tz.is_some().then_some(offset)));
                }
                None => {
                    fields.push(Arc::clone(f));
                    columns.push(Arc::clone(c));
                }
            },
            _ => {
                fields.push(Arc::clone(f));
                columns.push(Arc::clone(c));
            }
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(schema, columns).unwrap_or(batch)
}

/// The offset of a fixed time zone (`+00:00`, `UTC`, `-05:30`) in seconds; `None` for a named
/// zone (left to pgwire).
fn offset_seconds(tz: Option<&str>) -> Option<i32> {
    let Some(tz) = tz else {
        return Some(0);
    };
    if tz.eq_ignore_ascii_case("utc") || tz == "Z" {
        return Some(0);
    }
    let (sign, rest) = match tz.as_bytes().first()? {
        b'+' => (1, &tz[1..]),
        b'-' => (-1, &tz[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    Some(sign * (h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60))
}

fn render(c: &ArrayRef, unit: TimeUnit, offset: Option<i32>) -> ArrayRef {
    let micros: Vec<Option<i64>> = match unit {
        TimeUnit::Second => c
            .as_primitive::<TimestampSecondType>()
            .iter()
            .map(|v| v.and_then(|v| v.checked_mul(1_000_000)))
            .collect(),
        TimeUnit::Millisecond => c
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .map(|v| v.and_then(|v| v.checked_mul(1000)))
            .collect(),
        TimeUnit::Microsecond => c
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        TimeUnit::Nanosecond => c
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .map(|v| v.map(|v| v.div_euclid(1000)))
            .collect(),
    };
    let mut out = StringBuilder::with_capacity(c.len(), c.len() * 26);
    for v in micros {
        match v.and_then(|m| text(m, offset)) {
            Some(s) => out.append_value(s),
            None => out.append_null(),
        }
    }
    Arc::new(out.finish())
}

/// One timestamp (microseconds since 1970-01-01 00:00 UTC), shifted to `offset` seconds east
/// when it is a timestamptz.
fn text(micros: i64, offset: Option<i32>) -> Option<String> {
    use std::fmt::Write;
    let shifted = micros.checked_add(i64::from(offset.unwrap_or(0)) * 1_000_000)?;
    let t = chrono::DateTime::from_timestamp_micros(shifted)?.naive_utc();
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let frac = shifted.rem_euclid(1_000_000);
    if frac != 0 {
        let digits = format!("{frac:06}");
        let _ = write!(s, ".{}", digits.trim_end_matches('0'));
    }
    if let Some(o) = offset {
        let sign = if o < 0 { '-' } else { '+' };
        let (h, m) = (o.abs() / 3600, o.abs() % 3600 / 60);
        let _ = write!(s, "{sign}{h:02}");
        if m != 0 {
            let _ = write!(s, ":{m:02}");
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_text() {
        assert_eq!(
            text(1_767_225_605_000_000, None).unwrap(),
            "2026-01-01 00:00:05"
        );
        assert_eq!(
            text(1_767_225_605_250_000, None).unwrap(),
            "2026-01-01 00:00:05.25"
        );
        assert_eq!(
            text(1_767_225_605_000_001, Some(0)).unwrap(),
            "2026-01-01 00:00:05.000001+00"
        );
        assert_eq!(text(0, Some(19800)).unwrap(), "1970-01-01 05:30:00+05:30");
        assert_eq!(text(-1, None).unwrap(), "1969-12-31 23:59:59.999999");
        assert_eq!(offset_seconds(Some("+00:00")), Some(0));
        assert_eq!(offset_seconds(Some("-05:30")), Some(-19800));
        assert_eq!(offset_seconds(Some("Europe/Paris")), None);
    }
}
