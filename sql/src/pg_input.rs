//! PostgreSQL's input forms of timestamps and dates, for values assigned to columns (INSERT,
//! UPDATE, COPY): `2026-11-01`, `2026-11-01 10:00`, `2026-11-01T10:00:05.25`, with an optional
//! zone (`Z`, `UTC`, `+02`, `+0530`, `-05:30`). Arrow's parser wants seconds and refuses the
//! shorter forms PostgreSQL users write.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// Microseconds since 1970-01-01 00:00 UTC of timestamp text `s`, or `None` if it is not one
/// of the forms above. A zone in the text is honoured for `timestamptz` (`with_zone`) and
/// ignored for `timestamp`, as PostgreSQL does; text without a zone is UTC.
pub fn parse_timestamp(s: &str, with_zone: bool) -> Option<i64> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("epoch") {
        return Some(0);
    }
    if s.eq_ignore_ascii_case("now") {
        return Some(chrono::Utc::now().timestamp_micros());
    }
    if let Some(day) = relative_day(s) {
        return Some(i64::from(day) * 86_400_000_000);
    }
    let (local, offset) = split_zone(s)?;
    let dt = parse_local(local.trim_end())?;
    let micros = dt.and_utc().timestamp_micros();
    Some(if with_zone {
        micros - i64::from(offset) * 1_000_000
    } else {
        micros
    })
}

/// Days since 1970-01-01 of date text `s` (`2026-11-01`; a time part must be midnight-free
/// of meaning: it is dropped, as PostgreSQL does for `date`).
pub fn parse_date(s: &str) -> Option<i32> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("epoch") {
        return Some(0);
    }
    if let Some(day) = relative_day(s).or_else(|| s.eq_ignore_ascii_case("now").then(|| today(0))) {
        return Some(day);
    }
    let (local, _) = split_zone(s)?;
    let d = parse_local(local.trim_end())?.date();
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from(d.signed_duration_since(epoch).num_days()).ok()
}

/// PostgreSQL's special inputs `today`, `tomorrow` and `yesterday` as days since 1970-01-01
/// (the server's zone is UTC).
fn relative_day(s: &str) -> Option<i32> {
    let offset = match s.to_ascii_lowercase().as_str() {
        "today" => 0,
        "tomorrow" => 1,
        "yesterday" => -1,
        _ => return None,
    };
    Some(today(offset))
}

fn today(offset: i32) -> i32 {
    (chrono::Utc::now().timestamp().div_euclid(86_400)) as i32 + offset
}

/// The text before a trailing zone, and the zone's offset east of UTC in seconds (0 without).
fn split_zone(s: &str) -> Option<(&str, i32)> {
    if let Some(rest) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        return Some((rest, 0));
    }
    let lower = s.to_ascii_lowercase();
    for name in [" utc", " gmt"] {
        if lower.ends_with(name) {
            return Some((&s[..s.len() - name.len()], 0));
        }
    }
    // A sign after the time part (`10:00+02`, `10:00 -05:30`); a date's own dashes come
    // before any colon or space.
    let Some(time_start) = s.find([' ', 'T', 't']).map(|i| i + 1) else {
        return Some((s, 0));
    };
    let Some(sign_at) = s[time_start..].rfind(['+', '-']).map(|i| i + time_start) else {
        return Some((s, 0));
    };
    let zone = &s[sign_at + 1..];
    let digits: String = zone.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || digits.len() > 4 {
        return None;
    }
    let (h, m) = if digits.len() <= 2 {
        (digits.parse::<i32>().ok()?, 0)
    } else {
        let split = digits.len() - 2;
        (
            digits[..split].parse::<i32>().ok()?,
            digits[split..].parse::<i32>().ok()?,
        )
    };
    if h > 15 || m > 59 {
        return None;
    }
    let sign = if s.as_bytes()[sign_at] == b'-' { -1 } else { 1 };
    Some((&s[..sign_at], sign * (h * 3600 + m * 60)))
}

fn parse_local(s: &str) -> Option<NaiveDateTime> {
    let (date, time) = match s.find([' ', 'T', 't']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim_start())),
        None => (s, None),
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let time = match time {
        None | Some("") => NaiveTime::MIN,
        Some(t) => ["%H:%M:%S%.f", "%H:%M"]
            .iter()
            .find_map(|f| NaiveTime::parse_from_str(t, f).ok())?,
    };
    Some(date.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    #[test]
    fn special_values_are_relative_to_now() {
        let now = chrono::Utc::now().timestamp_micros();
        let day = 86_400_000_000;
        let today = parse_timestamp("today", true).unwrap();
        assert!(today <= now && now - today < day);
        assert_eq!(parse_timestamp(" Tomorrow ", false), Some(today + day));
        assert_eq!(parse_timestamp("yesterday", true), Some(today - day));
        assert!((parse_timestamp("now", true).unwrap() - now).abs() < 60_000_000);
        assert_eq!(parse_date("now"), parse_date("today"));
        assert_eq!(parse_date("tomorrow").unwrap(), parse_date("today").unwrap() + 1);
        assert_eq!(parse_timestamp("later", true), None);
    }

    #[test]
    fn postgres_forms_parse() {
        let ten = at("2026-11-01 10:00:00");
        for s in [
            "2026-11-01 10:00",
            "2026-11-01 10:00:00",
            "2026-11-01T10:00",
            " 2026-11-01 10:00:00.000 ",
            "2026-11-01 10:00Z",
            "2026-11-01 10:00:00 UTC",
            "2026-11-01 10:00+00",
        ] {
            assert_eq!(parse_timestamp(s, true), Some(ten), "{s}");
            assert_eq!(parse_timestamp(s, false), Some(ten), "{s}");
        }
        assert_eq!(
            parse_timestamp("2026-11-01 10:00:05.25", false),
            Some(at("2026-11-01 10:00:05.25"))
        );
        assert_eq!(
            parse_timestamp("2026-11-01", false),
            Some(at("2026-11-01 00:00:00"))
        );
        // A zone moves a timestamptz and is ignored by a timestamp.
        assert_eq!(parse_timestamp("2026-11-01 12:00+02", true), Some(ten));
        assert_eq!(parse_timestamp("2026-11-01 04:30-05:30", true), Some(ten));
        assert_eq!(parse_timestamp("2026-11-01 15:30 +0530", true), Some(ten));
        assert_eq!(
            parse_timestamp("2026-11-01 12:00+02", false),
            Some(at("2026-11-01 12:00:00"))
        );
        assert_eq!(parse_timestamp("epoch", false), Some(0));
        assert_eq!(parse_date("2026-11-01"), Some(20758));
        for bad in [
            "2026-13-01",
            "2026-11-01 25:00",
            "tomorrowish",
            "2026-11-01 10:00+99",
            "x",
        ] {
            assert_eq!(parse_timestamp(bad, true), None, "{bad}");
        }
    }
}

/// PostgreSQL's `bytea` input: `\x` then pairs of hex digits (white space between pairs
/// allowed), or the escape form, where `\\` is a backslash, `\nnn` an octal byte and every
/// other byte stands for itself.
pub fn parse_bytea(s: &str) -> Result<Vec<u8>, freshet_common::PgError> {
    use freshet_common::{PgError, SqlState};
    let b = s.as_bytes();
    if let Some(hex) = s.strip_prefix("\\x").or_else(|| s.strip_prefix("\\X")) {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut digits = hex.chars().filter(|c| !c.is_ascii_whitespace());
        while let Some(hi) = digits.next() {
            let digit = |c: char| {
                c.to_digit(16).ok_or_else(|| {
                    PgError::new(
                        SqlState::INVALID_PARAMETER_VALUE,
                        format!("invalid hexadecimal digit: \"{c}\""),
                    )
                })
            };
            let hi = digit(hi)?;
            let Some(lo) = digits.next() else {
                return Err(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    "invalid hexadecimal data: odd number of digits",
                ));
            };
            out.push((hi * 16 + digit(lo)?) as u8);
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = |k: usize, max: u8| b.get(i + k).filter(|c| (b'0'..=max).contains(c));
            let (Some(a), Some(c), Some(d)) = (octal(1, b'3'), octal(2, b'7'), octal(3, b'7'))
            else {
                return Err(bad_bytea());
            };
            out.push((a - b'0') * 64 + (c - b'0') * 8 + (d - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

fn bad_bytea() -> freshet_common::PgError {
    freshet_common::PgError::new(
        freshet_common::SqlState::INVALID_TEXT_REPRESENTATION,
        "invalid input syntax for type bytea",
    )
}

#[cfg(test)]
mod bytea_tests {
    #[test]
    fn bytea_input_forms() {
        use super::parse_bytea;
        assert_eq!(
            parse_bytea("\\xdeadBEEF").unwrap(),
            vec![0xde, 0xad, 0xbe, 0xef]
        );
        assert_eq!(parse_bytea("\\x de ad").unwrap(), vec![0xde, 0xad]);
        assert_eq!(parse_bytea("\\x").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_bytea("abc").unwrap(), b"abc".to_vec());
        assert_eq!(parse_bytea("a\\\\b").unwrap(), b"a\\b".to_vec());
        assert_eq!(
            parse_bytea("a\\000b\\377").unwrap(),
            vec![b'a', 0, b'b', 255]
        );
        assert_eq!(parse_bytea("\\xZZ").unwrap_err().sqlstate.code(), "22023");
        assert_eq!(parse_bytea("\\xabc").unwrap_err().sqlstate.code(), "22023");
        assert_eq!(parse_bytea("a\\b").unwrap_err().sqlstate.code(), "22P02");
        assert_eq!(parse_bytea("a\\400").unwrap_err().sqlstate.code(), "22P02");
        assert_eq!(parse_bytea("a\\").unwrap_err().sqlstate.code(), "22P02");
    }
}
