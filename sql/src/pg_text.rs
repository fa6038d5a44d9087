//! PostgreSQL's text form of timestamps (`2026-01-01 00:00:05`, `2026-01-01 00:00:05.25`, and
//! for `timestamptz` the offset as PostgreSQL prints it: `+00`, `+05:30`), of floats (`1e-05`,
//! `Infinity`) and of intervals (`1 mon 3 days 00:00:01.5`). Arrow writes an ISO `T` between
//! date and time, `1e-5`, `inf` and `1 days 2 hours`, and pgwire always six fraction digits;
//! all differ from what clients compare against. Used by the server's encoder for result
//! columns, and for casts to text (`ts::text`, `x || ''`) through
//! [`crate::text_casts::TextCasts`], which replaces them by the `pg_timestamp_text` function.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{
    DataType, IntervalUnit, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The offset of a fixed time zone (`+00:00`, `UTC`, `-05:30`) in seconds, `Some(0)` without
/// one; `None` for a named zone (left as it is).
pub fn offset_seconds(tz: Option<&str>) -> Option<i32> {
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

/// Whether values of type `t` have a PostgreSQL text form here that Arrow's cast to text
/// does not give.
pub fn has_text_form(t: &DataType) -> bool {
    match t {
        DataType::Timestamp(_, tz) => offset_seconds(tz.as_deref()).is_some(),
        DataType::Float32 | DataType::Float64 => true,
        DataType::Interval(IntervalUnit::MonthDayNano) => true,
        _ => false,
    }
}

/// One timestamp (microseconds since 1970-01-01 00:00 UTC) as PostgreSQL prints it; shifted
/// to `offset` seconds east and followed by the offset when it is a timestamptz.
pub fn timestamp_text(micros: i64, offset: Option<i32>) -> Option<String> {
    let shifted = micros.checked_add(i64::from(offset.unwrap_or(0)) * 1_000_000)?;
    let secs = shifted.div_euclid(1_000_000);
    let frac = shifted.rem_euclid(1_000_000);
    let date = datafusion::arrow::temporal_conversions::timestamp_s_to_datetime(secs)?;
    let mut s = date.format("%Y-%m-%d %H:%M:%S").to_string();
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

/// An array of a type [`has_text_form`] accepts as PostgreSQL's text; others as they are.
pub fn text_form(c: &ArrayRef) -> ArrayRef {
    let DataType::Timestamp(unit, tz) = c.data_type() else {
        return match c.data_type() {
            DataType::Float32 | DataType::Float64 => floats_text(c),
            DataType::Interval(_) => intervals_text(c),
            _ => Arc::clone(c),
        };
    };
    let Some(offset) = offset_seconds(tz.as_deref()) else {
        return Arc::clone(c);
    };
    let offset = tz.is_some().then_some(offset);
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
        out.append_option(v.and_then(|m| timestamp_text(m, offset)));
    }
    Arc::new(out.finish())
}

/// `pg_timestamp_text(x)`: what `x::text` gives in PostgreSQL, for the types [`has_text_form`]
/// accepts.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgTimestampText {
    signature: Signature,
}

impl PgTimestampText {
    pub fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(PgTimestampText {
            signature: Signature::any(1, Volatility::Immutable),
        }))
    }
}

impl ScalarUDFImpl for PgTimestampText {
    fn name(&self) -> &str {
        "pg_timestamp_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(text_form(a))),
            ColumnarValue::Scalar(s) => {
                let text = text_form(&s.to_array()?);
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &text, 0,
                )?))
            }
        }
    }
}

/// An interval (months, days, nanoseconds) as PostgreSQL prints it (`IntervalStyle`
/// `postgres`, its default): `1 year 2 mons -3 days +04:05:06.5`, `00:00:00` when zero.
pub fn interval_text(months: i32, days: i32, nanos: i64) -> String {
    let mut out = String::new();
    let (mut is_zero, mut is_before) = (true, false);
    let mut part = |out: &mut String, value: i64, unit: &str| {
        if value == 0 {
            return;
        }
        let _ = write!(
            out,
            "{}{}{value} {unit}{}",
            if is_zero { "" } else { " " },
            if is_before && value > 0 { "+" } else { "" },
            if value != 1 { "s" } else { "" }
        );
        is_before = value < 0;
        is_zero = false;
    };
    part(&mut out, i64::from(months / 12), "year");
    part(&mut out, i64::from(months % 12), "mon");
    part(&mut out, i64::from(days), "day");
    let micros = nanos / 1000;
    if is_zero || micros != 0 {
        let minus = micros < 0;
        let abs = micros.unsigned_abs();
        let (hours, rest) = (abs / 3_600_000_000, abs % 3_600_000_000);
        let (mins, rest) = (rest / 60_000_000, rest % 60_000_000);
        let (secs, frac) = (rest / 1_000_000, rest % 1_000_000);
        let _ = write!(
            out,
            "{}{}{hours:02}:{mins:02}:{secs:02}",
            if is_zero { "" } else { " " },
            if minus { "-" } else if is_before { "+" } else { "" },
        );
        if frac != 0 {
            let digits = format!("{frac:06}");
            let _ = write!(out, ".{}", digits.trim_end_matches('0'));
        }
    }
    out
}

/// An `interval` column as PostgreSQL's text ([`interval_text`]).
pub fn intervals_text(c: &ArrayRef) -> ArrayRef {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::IntervalMonthDayNanoType;
    if !matches!(c.data_type(), DataType::Interval(IntervalUnit::MonthDayNano)) {
        return Arc::clone(c);
    }
    let text: StringArray = c
        .as_primitive::<IntervalMonthDayNanoType>()
        .iter()
        .map(|v| v.map(|v| interval_text(v.months, v.days, v.nanoseconds)))
        .collect();
    Arc::new(text)
}

/// A float as PostgreSQL prints it (with `extra_float_digits` at its default of 1, or more):
/// the shortest digits that read back as the same value, in fixed notation for decimal
/// exponents from -4 up to 14 (5 for `real`), otherwise as `1.5e+20` with at least two
/// exponent digits; `Infinity`, `-Infinity`, `NaN`, `-0`.
pub fn float_text(v: f64, real: bool) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let mut buf = ryu::Buffer::new();
    // The shortest digits of the value in its own precision.
    let shortest = if real {
        buf.format_finite(v as f32)
    } else {
        buf.format_finite(v)
    };
    let (negative, body) = match shortest.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, shortest),
    };
    let (mantissa, exp) = match body.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The significant digits, and the decimal exponent of the first of them.
    let all = format!("{int}{frac}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0');
    let point = int.len() as i32 + exp - lead as i32 - 1;
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    let fixed_below = if real { 6 } else { 15 };
    if (-4..fixed_below).contains(&point) {
        if point < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point - 1) as usize));
            out.push_str(digits);
        } else {
            let whole = point as usize + 1;
            if digits.len() <= whole {
                out.push_str(digits);
                out.extend(std::iter::repeat_n('0', whole - digits.len()));
            } else {
                out.push_str(&digits[..whole]);
                out.push('.');
                out.push_str(&digits[whole..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if point < 0 { '-' } else { '+' },
            point.abs()
        );
    }
    out
}

/// A `real` or `double precision` column as PostgreSQL's text ([`float_text`]).
pub fn floats_text(c: &ArrayRef) -> ArrayRef {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Float32Type, Float64Type};
    let text: StringArray = match c.data_type() {
        DataType::Float64 => c
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map(|v| float_text(v, false)))
            .collect(),
        DataType::Float32 => c
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(|v| float_text(f64::from(v), true)))
            .collect(),
        _ => return Arc::clone(c),
    };
    Arc::new(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_text() {
        assert_eq!(
            timestamp_text(1_767_225_605_000_000, None).unwrap(),
            "2026-01-01 00:00:05"
        );
        assert_eq!(
            timestamp_text(1_767_225_605_250_000, None).unwrap(),
            "2026-01-01 00:00:05.25"
        );
        assert_eq!(
            timestamp_text(1_767_225_605_000_001, Some(0)).unwrap(),
            "2026-01-01 00:00:05.000001+00"
        );
        assert_eq!(
            timestamp_text(0, Some(19800)).unwrap(),
            "1970-01-01 05:30:00+05:30"
        );
        assert_eq!(
            timestamp_text(-1, None).unwrap(),
            "1969-12-31 23:59:59.999999"
        );
        assert_eq!(offset_seconds(Some("+00:00")), Some(0));
        assert_eq!(offset_seconds(Some("-05:30")), Some(-19800));
        assert_eq!(offset_seconds(Some("Europe/Paris")), None);
    }

    #[test]
    fn floats_as_postgresql_prints_them() {
        for (v, want) in [
            (0.1, "0.1"),
            (-1e10, "-10000000000"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e15, "1e+15"),
            (123456789012345.0, "123456789012345"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (2.5e-300, "2.5e-300"),
            (-0.0, "-0"),
            (f64::INFINITY, "Infinity"),
            (f64::NAN, "NaN"),
            (100.0, "100"),
            (12345.678, "12345.678"),
        ] {
            assert_eq!(float_text(v, false), want, "{v}");
        }
        assert_eq!(float_text(f64::from(1e6f32), true), "1e+06");
        assert_eq!(float_text(f64::from(123456f32), true), "123456");
        assert_eq!(float_text(f64::from(0.1f32), true), "0.1");
    }

    #[test]
    fn intervals_as_postgresql_prints_them() {
        let hour = 3_600_000_000_000i64;
        for ((m, d, n), want) in [
            ((0, 1, 2 * hour), "1 day 02:00:00"),
            ((1, 3, 1_500_000_000), "1 mon 3 days 00:00:01.5"),
            ((0, -1, 0), "-1 days"),
            ((14, 0, 0), "1 year 2 mons"),
            ((0, 0, 0), "00:00:00"),
            ((0, -1, 2 * hour), "-1 days +02:00:00"),
            ((0, 1, -2 * hour), "1 day -02:00:00"),
            ((0, 0, 25 * hour + 1000), "25:00:00.000001"),
            ((-13, 0, 0), "-1 years -1 mons"),
        ] {
            assert_eq!(interval_text(m, d, n), want);
        }
    }
}
