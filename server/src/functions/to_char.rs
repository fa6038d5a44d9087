//! `to_char(timestamp | timestamptz | date, template)` with PostgreSQL's template patterns
//! (`YYYY-MM-DD HH24:MI:SS`, `FMMonth`, `"quoted text"`, …). DataFusion's `to_char` takes
//! strftime patterns and copies PostgreSQL's through unchanged, so `to_char(ts, 'YYYY')` gave
//! `YYYY`. Other argument types (numbers, intervals) go to DataFusion's function.

use std::sync::Arc;

use chrono::{Datelike, NaiveDateTime, Offset, TimeZone, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// PostgreSQL's `to_char` for dates and timestamps, DataFusion's for the rest.
#[derive(Debug)]
pub struct ToChar {
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl ToChar {
    pub fn new(inner: Arc<ScalarUDF>) -> Self {
        ToChar {
            inner,
            signature: Signature::any(2, Volatility::Stable),
        }
    }
}

impl PartialEq for ToChar {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for ToChar {}

impl std::hash::Hash for ToChar {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "to_char".hash(state);
    }
}

fn ours(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    )
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    // DataFusion's function is also registered under its aliases (`date_format`): a state
    // rebuilt from the registry must find ours under every one of them, or either may win.
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.first().is_some_and(ours) {
            Ok(DataType::Utf8)
        } else {
            self.inner.return_type(args)
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !ours(&args.args[0].data_type()) {
            return self.inner.invoke_with_args(args);
        }
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let zone = match args.args[0].data_type() {
            DataType::Timestamp(_, Some(tz)) => Some(tz),
            _ => None,
        };
        let times = args.args[0].to_array(rows)?;
        let times = datafusion::arrow::compute::cast(
            &times,
            &DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
        )?;
        let times = times.as_primitive::<TimestampMicrosecondType>();
        let templates =
            datafusion::arrow::compute::cast(&args.args[1].to_array(rows)?, &DataType::Utf8)?;
        let templates = templates.as_string::<i32>();
        let tz: Option<datafusion::arrow::array::timezone::Tz> =
            zone.as_deref().map(str::parse).transpose()?;
        let mut out = StringBuilder::new();
        let mut text = String::new();
        for row in 0..rows {
            if times.is_null(row) || templates.is_null(row) {
                out.append_null();
                continue;
            }
            let micros = times.value(row);
            let Some(utc) = chrono::DateTime::from_timestamp_micros(micros) else {
                out.append_null();
                continue;
            };
            let (local, offset_secs, zone_name) = match &tz {
                Some(tz) => {
                    let offset = tz.offset_from_utc_datetime(&utc.naive_utc()).fix();
                    let secs = offset.local_minus_utc();
                    let name = if secs == 0 {
                        "UTC".to_owned()
                    } else {
                        offset_text(secs)
                    };
                    (utc.naive_utc() + offset, secs, name)
                }
                None => (utc.naive_utc(), 0, String::new()),
            };
            text.clear();
            format(
                &local,
                offset_secs,
                &zone_name,
                templates.value(row),
                &mut text,
            );
            out.append_value(&text);
        }
        let out: ArrayRef = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// `+02`, `-05:30`: an offset as PostgreSQL's `OF` prints it.
fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let (h, m) = (secs.abs() / 3600, secs.abs() % 3600 / 60);
    if m == 0 {
        format!("{sign}{h:02}")
    } else {
        format!("{sign}{h:02}:{m:02}")
    }
}

/// Template patterns, longest first where one begins another.
const PATTERNS: &[&str] = &[
    "Y,YYY", "SSSSS", "MONTH", "A.D.", "A.M.", "B.C.", "P.M.", "IDDD", "IYYY", "HH24", "HH12",
    "SSSS", "YYYY", "DAY", "DDD", "FF1", "FF2", "FF3", "FF4", "FF5", "FF6", "IYY", "MON", "TZH",
    "TZM", "YYY", "AD", "AM", "BC", "CC", "DD", "DY", "HH", "ID", "IW", "IY", "MI", "MM", "MS",
    "OF", "PM", "RM", "SS", "TZ", "US", "WW", "YY", "D", "I", "J", "Q", "W", "Y",
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const ROMAN: [&str; 12] = [
    "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII",
];

/// How a name is spelled: as the template spells its pattern (`MONTH`, `Month`, `month`).
fn cased(name: &str, written: &str) -> String {
    let mut letters = written.chars().filter(|c| c.is_ascii_alphabetic());
    let first = letters.next().is_some_and(|c| c.is_ascii_uppercase());
    let second = letters.next().is_some_and(|c| c.is_ascii_uppercase());
    match (first, second) {
        (true, true) => name.to_ascii_uppercase(),
        (true, false) => name.to_owned(),
        _ => name.to_ascii_lowercase(),
    }
}

/// Copies the quoted text starting at `from` (just after its opening quote) to `out`; `\"`
/// inside stands for a quote. Returns the position after the closing quote.
fn copy_quoted(template: &str, from: usize, out: &mut String) -> usize {
    let bytes = template.as_bytes();
    let mut j = from;
    while j < template.len() && bytes[j] != b'"' {
        if bytes[j] == b'\\' && j + 1 < template.len() {
            j += 1;
        }
        let c = template[j..].chars().next().expect("in bounds");
        out.push(c);
        j += c.len_utf8();
    }
    j + 1
}

/// Appends `t` formatted by `template` to `out`.
fn format(t: &NaiveDateTime, offset_secs: i32, zone: &str, template: &str, out: &mut String) {
    use std::fmt::Write;
    let mut i = 0;
    let mut fill = false; // FM: no padding for the next pattern
    while i < template.len() {
        let rest = &template[i..];
        if rest.starts_with('"') {
            i = copy_quoted(template, i + 1, out);
            continue;
        }
        if rest.starts_with("\\\"") {
            out.push('"');
            i += 2;
            continue;
        }
        if rest.len() >= 2 && (rest[..2].eq_ignore_ascii_case("FM")) {
            fill = true;
            i += 2;
            continue;
        }
        if rest.len() >= 2 && rest[..2].eq_ignore_ascii_case("TM") {
            i += 2; // translation mode: names are English either way
            continue;
        }
        let Some(pattern) = PATTERNS.iter().find(|p| {
            rest.len() >= p.len()
                && rest.is_char_boundary(p.len())
                && rest[..p.len()].eq_ignore_ascii_case(p)
        }) else {
            let c = rest.chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
            fill = false;
            continue;
        };
        let written = &rest[..pattern.len()];
        i += pattern.len();
        let num = |out: &mut String, v: i64, width: usize| {
            if fill {
                let _ = write!(out, "{v}");
            } else {
                let _ = write!(out, "{v:0width$}");
            }
        };
        let name = |out: &mut String, n: &str, width: usize| {
            let n = cased(n, written);
            if fill {
                out.push_str(&n);
            } else {
                let _ = write!(out, "{n:<width$}");
            }
        };
        let year = i64::from(t.year());
        let hour12 = match t.hour() % 12 {
            0 => 12,
            h => i64::from(h),
        };
        let pm = t.hour() >= 12;
        let iso = t.iso_week();
        match *pattern {
            "YYYY" => num(out, year, 4),
            "Y,YYY" => {
                let _ = write!(out, "{},{:03}", year / 1000, year % 1000);
            }
            "YYY" => num(out, year % 1000, 3),
            "YY" => num(out, year % 100, 2),
            "Y" => num(out, year % 10, 1),
            "IYYY" => num(out, i64::from(iso.year()), 4),
            "IYY" => num(out, i64::from(iso.year()) % 1000, 3),
            "IY" => num(out, i64::from(iso.year()) % 100, 2),
            "I" => num(out, i64::from(iso.year()) % 10, 1),
            "IW" => num(out, i64::from(iso.week()), 2),
            "ID" => num(out, i64::from(t.weekday().number_from_monday()), 1),
            "IDDD" => num(
                out,
                i64::from((iso.week() - 1) * 7 + t.weekday().number_from_monday()),
                3,
            ),
            "CC" => num(
                out,
                if year > 0 {
                    (year + 99) / 100
                } else {
                    year / 100 - 1
                },
                2,
            ),
            "Q" => num(out, i64::from((t.month() - 1) / 3 + 1), 1),
            "MM" => num(out, i64::from(t.month()), 2),
            "MONTH" => name(out, MONTHS[t.month0() as usize], 9),
            "MON" => name(out, &MONTHS[t.month0() as usize][..3], 3),
            "RM" => name(out, ROMAN[t.month0() as usize], 4),
            "WW" => num(out, i64::from(t.ordinal0() / 7 + 1), 2),
            "W" => num(out, i64::from(t.day0() / 7 + 1), 1),
            "DDD" => num(out, i64::from(t.ordinal()), 3),
            "DD" => num(out, i64::from(t.day()), 2),
            "D" => num(out, i64::from(t.weekday().number_from_sunday()), 1),
            "DAY" => name(out, DAYS[t.weekday().num_days_from_sunday() as usize], 9),
            "DY" => name(
                out,
                &DAYS[t.weekday().num_days_from_sunday() as usize][..3],
                3,
            ),
            "J" => num(out, i64::from(t.num_days_from_ce()) + 1_721_425, 1),
            "HH" | "HH12" => num(out, hour12, 2),
            "HH24" => num(out, i64::from(t.hour()), 2),
            "MI" => num(out, i64::from(t.minute()), 2),
            "SS" => num(out, i64::from(t.second()), 2),
            "SSSS" | "SSSSS" => {
                let _ = write!(out, "{}", t.num_seconds_from_midnight());
            }
            "MS" => num(out, i64::from(t.nanosecond() / 1_000_000), 3),
            "US" => num(out, i64::from(t.nanosecond() / 1_000), 6),
            "FF1" | "FF2" | "FF3" | "FF4" | "FF5" | "FF6" => {
                let digits = usize::from(pattern.as_bytes()[2] - b'0');
                let micros = format!("{:06}", t.nanosecond() / 1_000);
                out.push_str(&micros[..digits]);
            }
            "AM" | "PM" => out.push_str(&cased(if pm { "PM" } else { "AM" }, written)),
            "A.M." | "P.M." => out.push_str(&cased(if pm { "P.M." } else { "A.M." }, written)),
            "AD" | "BC" => out.push_str(&cased(if year > 0 { "AD" } else { "BC" }, written)),
            "A.D." | "B.C." => {
                out.push_str(&cased(if year > 0 { "A.D." } else { "B.C." }, written))
            }
            "TZ" => out.push_str(&cased(zone, written)),
            "OF" => out.push_str(&offset_text(offset_secs)),
            "TZH" => {
                let _ = write!(
                    out,
                    "{}{:02}",
                    if offset_secs < 0 { '-' } else { '+' },
                    offset_secs.abs() / 3600
                );
            }
            "TZM" => num(out, i64::from(offset_secs.abs() % 3600 / 60), 2),
            _ => out.push_str(written),
        }
        fill = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ts: &str, template: &str) -> String {
        let t = NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let mut out = String::new();
        format(&t, 0, "", template, &mut out);
        out
    }

    #[test]
    fn templates_print_as_postgres_prints_them() {
        let t = "2026-11-01 14:05:09.123456";
        assert_eq!(fmt(t, "YYYY-MM-DD"), "2026-11-01");
        assert_eq!(
            fmt(t, "YYYY-MM-DD HH24:MI:SS.MS"),
            "2026-11-01 14:05:09.123"
        );
        assert_eq!(fmt(t, "HH12:MI AM, US"), "02:05 PM, 123456");
        assert_eq!(fmt(t, "Month DD, YYYY"), "November  01, 2026");
        assert_eq!(fmt(t, "FMMonth FMDD, Day"), "November 1, Sunday   ");
        assert_eq!(fmt(t, "MON mon Mon DY dy"), "NOV nov Nov SUN sun");
        assert_eq!(
            fmt(t, "\"Week\" IW, \"day\" DDD, Q, D, J"),
            "Week 44, day 305, 4, 1, 2461346"
        );
        assert_eq!(
            fmt(t, "Y,YYY YY CC RM FF2 SSSS"),
            "2,026 26 21 XI   12 50709"
        );
        assert_eq!(fmt("2026-01-01 00:00:00", "hh12 a.m. WW W"), "12 a.m. 01 1");
    }
}
