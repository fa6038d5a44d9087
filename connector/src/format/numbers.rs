//! JSON numbers into column types, exactly or not at all: a fractional value into an integer
//! column, a value outside the column type's range (either way) and a value a DOUBLE cannot
//! hold (`1e400`) are errors, never truncated, clamped or infinite. A number for a TIMESTAMP
//! column is a Unix time in the source's `timestamp.unit` (seconds unless set), converted to
//! microseconds with rounding to the nearest (as PostgreSQL's `to_timestamp`).

use std::borrow::Cow;

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// What a JSON number for a column must satisfy, and what it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Passed on as written.
    Any,
    /// An integer within `min..=max`, written in plain digits.
    Integer {
        min: i128,
        max: i128,
        type_name: &'static str,
    },
    /// Finite once read (`max` the largest magnitude: `f32::MAX` or `f64::MAX`).
    Float { f32: bool },
    /// Unix time in units of `micros` microseconds, written as microseconds.
    Timestamp { micros: i64 },
}

use freshet_common::TimestampUnit;

impl Rule {
    /// The rule for a column of type `t`.
    pub fn for_type(t: &DataType, unit: TimestampUnit) -> Rule {
        let int = |min: i128, max: i128, type_name| Rule::Integer {
            min,
            max,
            type_name,
        };
        match t {
            DataType::Int8 => int(i8::MIN.into(), i8::MAX.into(), "\"char\""),
            DataType::Int16 => int(i16::MIN.into(), i16::MAX.into(), "smallint"),
            DataType::Int32 => int(i32::MIN.into(), i32::MAX.into(), "integer"),
            DataType::Int64 => int(i64::MIN.into(), i64::MAX.into(), "bigint"),
            DataType::UInt8 => int(0, u8::MAX.into(), "uint1"),
            DataType::UInt16 => int(0, u16::MAX.into(), "uint2"),
            DataType::UInt32 => int(0, u32::MAX.into(), "uint4"),
            DataType::UInt64 => int(0, u64::MAX.into(), "uint8"),
            DataType::Float32 => Rule::Float { f32: true },
            DataType::Float64 => Rule::Float { f32: false },
            DataType::Timestamp(TimeUnit::Microsecond, _) => Rule::Timestamp {
                micros: unit.micros(),
            },
            _ => Rule::Any,
        }
    }

    /// `tok` (a JSON number, already checked against the grammar) as the decoder must see
    /// it, or why it does not convert.
    pub fn apply<'a>(&self, tok: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
        let text = || String::from_utf8_lossy(tok).into_owned();
        match *self {
            Rule::Any => Ok(Cow::Borrowed(tok)),
            Rule::Float { f32 } => {
                let v: f64 = std::str::from_utf8(tok)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("invalid number {}", text()))?;
                let max = if f32 { f64::from(f32::MAX) } else { f64::MAX };
                if !v.is_finite() || v.abs() > max {
                    let t = if f32 { "real" } else { "double precision" };
                    return Err(format!("\"{}\" is out of range for type {t}", text()));
                }
                Ok(Cow::Borrowed(tok))
            }
            Rule::Integer {
                min,
                max,
                type_name,
            } => {
                let out_of_range = || format!("value \"{}\" is out of range for type {type_name}", text());
                // Plain digits (the common case): checked in place, passed on as written.
                let digits = tok.strip_prefix(b"-").unwrap_or(tok);
                if !digits.is_empty() && digits.len() <= 38 && digits.iter().all(u8::is_ascii_digit) {
                    let v: i128 = std::str::from_utf8(tok)
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .ok_or_else(out_of_range)?;
                    if v < min || v > max {
                        return Err(out_of_range());
                    }
                    return Ok(Cow::Borrowed(tok));
                }
                let d = Decimal::parse(tok).ok_or_else(out_of_range)?;
                let v = d
                    .integer()
                    .ok_or_else(|| format!("invalid input syntax for type {type_name}: \"{}\" (not an integer)", text()))?
                    .ok_or_else(out_of_range)?;
                if v < min || v > max {
                    return Err(out_of_range());
                }
                Ok(owned_or_same(tok, v))
            }
            Rule::Timestamp { micros } => {
                let out_of_range = || format!("timestamp {} is out of range", text());
                let d = Decimal::parse(tok).ok_or_else(out_of_range)?;
                let v = d.scaled_rounded(micros).ok_or_else(out_of_range)?;
                if v < i128::from(i64::MIN) || v > i128::from(i64::MAX) {
                    return Err(out_of_range());
                }
                Ok(owned_or_same(tok, v))
            }
        }
    }
}

/// `v` in plain digits, borrowing `tok` when it already says exactly that.
fn owned_or_same(tok: &[u8], v: i128) -> Cow<'_, [u8]> {
    let s = v.to_string();
    if s.as_bytes() == tok {
        Cow::Borrowed(tok)
    } else {
        Cow::Owned(s.into_bytes())
    }
}

/// A JSON number exactly: `digits × 10^exp`, negative when `neg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    neg: bool,
    digits: i128,
    exp: i32,
}

impl Decimal {
    /// `None` when it has more significant digits than an i128 holds or an absurd exponent.
    fn parse(tok: &[u8]) -> Option<Decimal> {
        let s = std::str::from_utf8(tok).ok()?;
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (mantissa, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
            None => (s, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let frac = frac.trim_end_matches('0');
        let mut digits: i128 = 0;
        for c in int.bytes().chain(frac.bytes()) {
            digits = digits.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
        }
        let exp = exp.checked_sub(i32::try_from(frac.len()).ok()?)?;
        if exp.abs() > 10_000 && digits != 0 {
            return None;
        }
        Some(Decimal { neg, digits, exp })
    }

    /// The value when it is an integer (`Some(None)` when it is one too large for i128);
    /// `None` when it has a fraction.
    fn integer(&self) -> Option<Option<i128>> {
        let sign = if self.neg { -1 } else { 1 };
        if self.digits == 0 {
            return Some(Some(0));
        }
        if self.exp >= 0 {
            let scaled = pow10(self.exp).and_then(|p| self.digits.checked_mul(p));
            return Some(scaled.map(|v| sign * v));
        }
        let p = pow10(-self.exp)?;
        (self.digits % p == 0).then(|| Some(sign * (self.digits / p)))
    }

    /// `self × unit` rounded to the nearest integer (halves away from zero); `None` when out
    /// of i128.
    fn scaled_rounded(&self, unit: i64) -> Option<i128> {
        let sign = if self.neg { -1 } else { 1 };
        let v = self.digits.checked_mul(i128::from(unit))?;
        if self.exp >= 0 {
            return Some(sign * v.checked_mul(pow10(self.exp)?)?);
        }
        let Some(p) = pow10(-self.exp) else {
            return Some(0); // below half a microsecond
        };
        let (q, r) = (v / p, v % p);
        Some(sign * if r * 2 >= p { q + 1 } else { q })
    }
}

fn pow10(e: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(e).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(rule: Rule, tok: &str) -> Result<String, String> {
        rule.apply(tok.as_bytes())
            .map(|c| String::from_utf8(c.into_owned()).unwrap())
    }

    #[test]
    fn integers_convert_exactly_or_fail() {
        let big = Rule::for_type(&DataType::Int64, TimestampUnit::Seconds);
        assert_eq!(apply(big, "42").unwrap(), "42");
        assert_eq!(apply(big, "-7").unwrap(), "-7");
        assert_eq!(apply(big, "1.0").unwrap(), "1");
        assert_eq!(apply(big, "1e3").unwrap(), "1000");
        assert_eq!(apply(big, "12.50e1").unwrap(), "125");
        assert_eq!(apply(big, "0.0e99999").unwrap(), "0");
        assert_eq!(apply(big, "9223372036854775807").unwrap(), "9223372036854775807");
        assert_eq!(apply(big, "-9223372036854775808").unwrap(), "-9223372036854775808");
        for bad in ["1000037.5", "1e-1", "0.5"] {
            assert!(apply(big, bad).unwrap_err().contains("not an integer"), "{bad}");
        }
        for bad in ["-9223372036854775809", "9223372036854775808", "1e400", "1e19", "123456789012345678901234567890123456789012"] {
            assert!(apply(big, bad).unwrap_err().contains("out of range"), "{bad}");
        }
        let int = Rule::for_type(&DataType::Int32, TimestampUnit::Seconds);
        assert!(apply(int, "2147483648").is_err());
        assert_eq!(apply(int, "-2147483648").unwrap(), "-2147483648");
    }

    #[test]
    fn floats_must_be_finite() {
        let d = Rule::for_type(&DataType::Float64, TimestampUnit::Seconds);
        assert_eq!(apply(d, "1.5e300").unwrap(), "1.5e300");
        assert!(apply(d, "1e400").unwrap_err().contains("out of range for type double precision"));
        assert!(apply(d, "-1e400").is_err());
        let r = Rule::for_type(&DataType::Float32, TimestampUnit::Seconds);
        assert!(apply(r, "1e39").unwrap_err().contains("real"));
    }

    #[test]
    fn timestamps_follow_the_unit() {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let s = Rule::for_type(&ts, TimestampUnit::Seconds);
        assert_eq!(apply(s, "1700000000").unwrap(), "1700000000000000");
        assert_eq!(apply(s, "1700000000.5").unwrap(), "1700000000500000");
        assert_eq!(apply(s, "0.0000005").unwrap(), "1");
        assert_eq!(apply(s, "-0.0000005").unwrap(), "-1");
        assert_eq!(apply(s, "1e-20").unwrap(), "0");
        assert!(apply(s, "1e300").is_err());
        let ms = Rule::for_type(&ts, TimestampUnit::Milliseconds);
        assert_eq!(apply(ms, "1700000000123").unwrap(), "1700000000123000");
        let us = Rule::for_type(&ts, TimestampUnit::Microseconds);
        assert_eq!(apply(us, "5").unwrap(), "5");
    }
}
