//! Interval literals in the forms PostgreSQL reads that Arrow's parser does not: a time part
//! (`'1 day 02:03:04'`, `'-01:30'`), ISO 8601 durations (`'P1DT2H'`, `'PT0.5S'`), the
//! `@ … ago` form, abbreviated units (`'3 mins'`, `'2h'`). Before planning, such a literal
//! (`INTERVAL '…'` or `'…'::interval`) is rewritten to the same interval in words Arrow reads
//! (`'0 months 1 days 7384000000 microseconds'`); a literal neither reads stays as it was,
//! for Arrow's own error.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast;

/// An interval as PostgreSQL keeps it: months, days and microseconds, each with its sign.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Interval {
    pub months: i64,
    pub days: i64,
    pub micros: i64,
}

/// Reads `text` in PostgreSQL's interval input forms (`None` when it is none of them).
pub fn parse(text: &str) -> Option<Interval> {
    let t = text.trim();
    if let Some(iso) = t.strip_prefix('P').or_else(|| t.strip_prefix('p')) {
        return iso8601(iso);
    }
    let lower = t.to_ascii_lowercase();
    let mut body = lower.strip_prefix('@').unwrap_or(&lower).trim().to_owned();
    let ago = body.ends_with(" ago");
    if ago {
        body.truncate(body.len() - 4);
    }
    let mut out = Interval::default();
    let tokens = split_tokens(&body);
    let mut i = 0;
    while i < tokens.len() {
        let tok = &tokens[i];
        if tok.contains(':') {
            out.micros = out.micros.checked_add(time_part(tok)?)?;
            i += 1;
            continue;
        }
        let (number, unit) = match tok.find(|c: char| c.is_ascii_alphabetic()) {
            Some(at) if at > 0 => (&tok[..at], tok[at..].to_owned()),
            _ => {
                let unit = tokens.get(i + 1)?.clone();
                i += 1;
                (tok.as_str(), unit)
            }
        };
        let value: f64 = number.parse().ok()?;
        add(&mut out, value, &unit)?;
        i += 1;
    }
    if tokens.is_empty() {
        return None;
    }
    Some(if ago { negate(out) } else { out })
}

/// Whether Arrow's interval parser would refuse `text` where [`parse`] reads it.
fn needs_rewrite(text: &str) -> bool {
    let t = text.trim().to_ascii_lowercase();
    t.contains(':')
        || t.starts_with('p')
        || t.starts_with('@')
        || t.ends_with(" ago")
        || split_tokens(&t).iter().any(|tok| {
            tok.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && short_unit(tok)
        })
        || split_tokens(&t).iter().any(|tok| {
            tok.find(|c: char| c.is_ascii_alphabetic())
                .is_some_and(|at| at > 0)
        })
}

/// Units Arrow does not know by these names.
fn short_unit(unit: &str) -> bool {
    matches!(
        unit,
        "mins"
            | "min"
            | "m"
            | "secs"
            | "sec"
            | "s"
            | "hrs"
            | "hr"
            | "h"
            | "d"
            | "w"
            | "y"
            | "yr"
            | "yrs"
            | "mon"
            | "mons"
            | "ms"
            | "us"
            | "usec"
            | "usecs"
            | "msec"
            | "msecs"
    )
}

/// `text` in PostgreSQL's interval input forms as Arrow holds an interval (`None` when it is
/// in none of them, or out of Arrow's range).
pub fn parse_arrow(text: &str) -> Option<datafusion::arrow::datatypes::IntervalMonthDayNano> {
    let i = parse(text)?;
    Some(datafusion::arrow::datatypes::IntervalMonthDayNano::new(
        i32::try_from(i.months).ok()?,
        i32::try_from(i.days).ok()?,
        i.micros.checked_mul(1000)?,
    ))
}

/// `text` as words Arrow's parser reads, if it needs them and is a PostgreSQL interval.
pub fn arrow_text(text: &str) -> Option<String> {
    if !needs_rewrite(text) {
        return None;
    }
    let i = parse(text)?;
    Some(format!(
        "{} months {} days {} microseconds",
        i.months, i.days, i.micros
    ))
}

fn split_tokens(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn negate(i: Interval) -> Interval {
    Interval {
        months: -i.months,
        days: -i.days,
        micros: -i.micros,
    }
}

/// `[-]hh:mm[:ss[.ffffff]]` in microseconds.
fn time_part(tok: &str) -> Option<i64> {
    let (sign, rest) = match tok.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, tok.strip_prefix('+').unwrap_or(tok)),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [h, m] => (*h, *m, "0"),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    let s: f64 = s.parse().ok()?;
    if !(0..60).contains(&m) || !(0.0..60.0).contains(&s) {
        return None;
    }
    let micros = h
        .checked_mul(3600)?
        .checked_add(m * 60)?
        .checked_mul(1_000_000)?
        .checked_add((s * 1_000_000.0).round() as i64)?;
    Some(sign * micros)
}

/// Adds `value` `unit`s; fractions of months and days spill down as PostgreSQL spills them
/// (a month is 30 days, a day 24 hours).
fn add(out: &mut Interval, value: f64, unit: &str) -> Option<()> {
    if !value.is_finite() {
        return None;
    }
    let unit = unit.trim_end_matches('.');
    // (months, days, microseconds) of one `unit`; fractions of months and days spill down.
    let (months, days, micros): (f64, f64, f64) = match unit {
        "millennium" | "millennia" | "millenniums" | "mil" | "mils" => (12_000.0, 0.0, 0.0),
        "century" | "centuries" | "c" => (1_200.0, 0.0, 0.0),
        "decade" | "decades" | "dec" | "decs" => (120.0, 0.0, 0.0),
        "year" | "years" | "y" | "yr" | "yrs" => (12.0, 0.0, 0.0),
        "month" | "months" | "mon" | "mons" => (1.0, 0.0, 0.0),
        "week" | "weeks" | "w" => (0.0, 7.0, 0.0),
        "day" | "days" | "d" => (0.0, 1.0, 0.0),
        "hour" | "hours" | "h" | "hr" | "hrs" => (0.0, 0.0, 3_600_000_000.0),
        "minute" | "minutes" | "m" | "min" | "mins" => (0.0, 0.0, 60_000_000.0),
        "second" | "seconds" | "s" | "sec" | "secs" => (0.0, 0.0, 1_000_000.0),
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => (0.0, 0.0, 1_000.0),
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => (0.0, 0.0, 1.0),
        _ => return None,
    };
    let m = value * months;
    let d = value * days + m.fract() * 30.0;
    let us = value * micros + d.fract() * 86_400_000_000.0;
    // Out of range is not an interval (Arrow's parser then says so); never an overflow.
    let whole = |x: f64| (x.abs() < 9.0e18).then(|| x.trunc() as i64);
    out.months = out.months.checked_add(whole(m)?)?;
    out.days = out.days.checked_add(whole(d)?)?;
    out.micros = out.micros.checked_add(whole(us.round())?)?;
    Some(())
}

/// The part of an ISO 8601 duration after `P`: `nYnMnWnD` then `T nHnMnS`.
fn iso8601(s: &str) -> Option<Interval> {
    let mut out = Interval::default();
    let (date, time) = match s.find(['T', 't']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let mut fields = |part: &str, units: &[(char, &str)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' || c == '-' {
                number.push(c);
                continue;
            }
            let unit = units.iter().find(|(u, _)| *u == c.to_ascii_uppercase())?.1;
            add(&mut out, number.parse().ok()?, unit)?;
            number.clear();
        }
        number.is_empty().then_some(())
    };
    fields(
        date,
        &[
            ('Y', "years"),
            ('M', "months"),
            ('W', "weeks"),
            ('D', "days"),
        ],
    )?;
    if let Some(time) = time {
        if time.is_empty() {
            return None;
        }
        fields(time, &[('H', "hours"), ('M', "minutes"), ('S', "seconds")])?;
    }
    if date.is_empty() && time.is_none() {
        return None;
    }
    Some(out)
}

/// Rewrites interval literals Arrow would refuse (see the module comment).
pub fn rewrite_literals(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        let literal = match e {
            ast::Expr::Interval(ast::Interval {
                value,
                leading_field: None,
                last_field: None,
                ..
            }) => Some(value.as_mut()),
            ast::Expr::Cast {
                expr,
                data_type: ast::DataType::Interval { .. },
                ..
            } => Some(expr.as_mut()),
            _ => None,
        };
        if let Some(ast::Expr::Value(v)) = literal {
            if let ast::Value::SingleQuotedString(text) = &mut v.value {
                if let Some(words) = arrow_text(text) {
                    *text = words;
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(months: i64, days: i64, micros: i64) -> Option<Interval> {
        Some(Interval {
            months,
            days,
            micros,
        })
    }

    #[test]
    fn postgres_forms() {
        let h = 3_600_000_000;
        assert_eq!(
            parse("1 day 02:03:04"),
            iv(0, 1, 2 * h + 3 * 60_000_000 + 4_000_000)
        );
        assert_eq!(parse("-01:30"), iv(0, 0, -(h + h / 2)));
        assert_eq!(parse("P1DT2H"), iv(0, 1, 2 * h));
        assert_eq!(parse("P1Y2M3W"), iv(14, 21, 0));
        assert_eq!(parse("PT0.5S"), iv(0, 0, 500_000));
        assert_eq!(parse("@ 3 days ago"), iv(0, -3, 0));
        assert_eq!(parse("1 year 2 mons 3 mins"), iv(14, 0, 3 * 60_000_000));
        assert_eq!(parse("2h 30m"), iv(0, 0, 2 * h + h / 2));
        assert_eq!(parse("1.5 days"), iv(0, 1, 12 * h));
        assert_eq!(parse("nonsense"), None);
        assert_eq!(parse("P"), None);
        assert_eq!(parse("1 day 25:61"), None);
        assert_eq!(
            parse("9223372036854775807 days 9223372036854775807 days"),
            None
        );
        assert_eq!(parse("inf days"), None);
        assert_eq!(parse("99999999999999999999:00"), None);
    }

    #[test]
    fn only_what_arrow_refuses_is_rewritten() {
        assert_eq!(arrow_text("2 hours 30 minutes"), None);
        assert_eq!(arrow_text("1 day"), None);
        assert_eq!(
            arrow_text("1 day 02:00").as_deref(),
            Some("0 months 1 days 7200000000 microseconds")
        );
        assert!(arrow_text("P1D").is_some());
        assert!(arrow_text("3 mins").is_some());
    }
}
