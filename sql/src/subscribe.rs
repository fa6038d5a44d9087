//! `SUBSCRIBE` and the cursor statements that read it, in Materialize's syntax:
//!
//! ```text
//! SUBSCRIBE [TO] {relation | (query)} [ENVELOPE UPSERT (KEY (column, …))]
//!   [WITH (SNAPSHOT [= bool], PROGRESS [= bool])] [AS OF epoch] [UP TO epoch]
//! COPY (SUBSCRIBE …) TO STDOUT
//! ```
//!
//! read through `COPY`, or through a cursor (`crate::cursor`). sqlparser knows neither form, so they are parsed here with its tokenizer and parser
//! primitives, like the source statements.

use std::time::Duration;

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use freshet_common::{PgError, SqlState};

use crate::words::{expect_end, expect_word, ident, leading_words, object_name, parser, syntax, word};

/// A bound `SUBSCRIBE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribePlan {
    /// The view, table or source whose changes stream (`(query)` for a query).
    pub relation: String,
    /// `SUBSCRIBE (query)`: the query whose results' changes stream, maintained by a
    /// dataflow of its own while the subscription lasts.
    pub query: Option<Box<ast::Query>>,
    /// Start with the relation's rows as of the first epoch (default true).
    pub snapshot: bool,
    /// Emit a progress row each time an epoch is complete (default false).
    pub progress: bool,
    /// The first epoch to emit (default: the latest committed one).
    pub as_of: Option<u64>,
    /// Stop before this epoch.
    pub up_to: Option<u64>,
    /// `ENVELOPE UPSERT (KEY (…))`: one row per changed key with its state.
    pub upsert_key: Option<Vec<String>>,
}

/// Parses `sql` when it is a `SUBSCRIBE` or `COPY (SUBSCRIBE …) TO STDOUT`; `None` otherwise.
pub fn parse_subscribe_statement(sql: &str) -> Option<Result<SubscribePlan, PgError>> {
    let words = leading_words(sql, 2);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["subscribe", ..] => Some(parse_bare(sql)),
        ["copy", ""] if copies_subscribe(sql) => Some(parse_copy(sql)),
        _ => None,
    }
}

fn parse_bare(sql: &str) -> Result<SubscribePlan, PgError> {
    let mut p = parser(sql)?;
    let plan = parse_subscribe(&mut p)?;
    expect_end(&mut p)?;
    Ok(plan)
}

/// `COPY ( SUBSCRIBE …`: the third word decides.
fn copies_subscribe(sql: &str) -> bool {
    leading_words(sql, 3).get(2).is_some_and(|w| w == "subscribe")
}

fn parse_copy(sql: &str) -> Result<SubscribePlan, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "copy")?;
    p.expect_token(&Token::LParen).map_err(syntax)?;
    let plan = parse_subscribe(&mut p)?;
    p.expect_token(&Token::RParen).map_err(syntax)?;
    expect_word(&mut p, "to")?;
    expect_word(&mut p, "stdout")?;
    if word(&mut p, "with") {
        // Only the text format, the default, is written.
        p.expect_token(&Token::LParen).map_err(syntax)?;
        loop {
            let key = p.parse_identifier().map_err(syntax)?.value.to_ascii_lowercase();
            let value = option_value(&mut p)?;
            if key != "format" || !value.eq_ignore_ascii_case("text") {
                return Err(PgError::not_supported(format!(
                    "COPY (SUBSCRIBE …) TO STDOUT option {key} {value}"
                )));
            }
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        p.expect_token(&Token::RParen).map_err(syntax)?;
    }
    expect_end(&mut p)?;
    Ok(plan)
}

/// `SUBSCRIBE [TO] relation …`, from the word SUBSCRIBE on.
pub(crate) fn parse_subscribe(p: &mut Parser<'_>) -> Result<SubscribePlan, PgError> {
    expect_word(p, "subscribe")?;
    word(p, "to");
    let (relation, query) = if p.consume_token(&Token::LParen) {
        let q = p.parse_query().map_err(syntax)?;
        p.expect_token(&Token::RParen).map_err(syntax)?;
        ("(query)".to_owned(), Some(q))
    } else {
        (object_name(&p.parse_object_name(false).map_err(syntax)?)?, None)
    };
    let mut plan = SubscribePlan {
        relation,
        query,
        snapshot: true,
        progress: false,
        as_of: None,
        up_to: None,
        upsert_key: None,
    };
    if word(p, "envelope") {
        expect_word(p, "upsert")?;
        p.expect_token(&Token::LParen).map_err(syntax)?;
        expect_word(p, "key")?;
        p.expect_token(&Token::LParen).map_err(syntax)?;
        let mut key = Vec::new();
        loop {
            key.push(ident(&p.parse_identifier().map_err(syntax)?));
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        p.expect_token(&Token::RParen).map_err(syntax)?;
        p.expect_token(&Token::RParen).map_err(syntax)?;
        plan.upsert_key = Some(key);
    }
    if word(p, "with") {
        p.expect_token(&Token::LParen).map_err(syntax)?;
        loop {
            let key = p.parse_identifier().map_err(syntax)?.value.to_ascii_lowercase();
            let on = if p.consume_token(&Token::Eq) || !matches!(p.peek_token().token, Token::Comma | Token::RParen) {
                parse_bool(&option_value(p)?)?
            } else {
                true
            };
            match key.as_str() {
                "snapshot" => plan.snapshot = on,
                "progress" => plan.progress = on,
                _ => {
                    return Err(PgError::new(
                        SqlState::INVALID_PARAMETER_VALUE,
                        format!("unrecognized SUBSCRIBE option \"{key}\""),
                    ))
                }
            }
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        p.expect_token(&Token::RParen).map_err(syntax)?;
    }
    if word(p, "as") {
        expect_word(p, "of")?;
        plan.as_of = Some(epoch(p)?);
    }
    if word(p, "up") {
        expect_word(p, "to")?;
        plan.up_to = Some(epoch(p)?);
    }
    Ok(plan)
}

fn epoch(p: &mut Parser<'_>) -> Result<u64, PgError> {
    match p.next_token().token {
        Token::Number(n, _) => n.parse().map_err(|_| {
            PgError::new(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("epoch \"{n}\" is not a non-negative integer"),
            )
        }),
        t => Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            format!("syntax error at or near \"{t}\": expected an epoch number"),
        )),
    }
}

/// An option's value after an optional `=`: a word, number or string.
pub(crate) fn option_value(p: &mut Parser<'_>) -> Result<String, PgError> {
    let _ = p.consume_token(&Token::Eq);
    match p.next_token().token {
        Token::SingleQuotedString(s) | Token::Number(s, _) => Ok(s),
        Token::Word(w) => Ok(w.value),
        t => Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            format!("syntax error at or near \"{t}\": expected an option value"),
        )),
    }
}

fn parse_bool(v: &str) -> Result<bool, PgError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" | "yes" | "t" => Ok(true),
        "false" | "off" | "0" | "no" | "f" => Ok(false),
        _ => Err(PgError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid value for a boolean option: \"{v}\""),
        )),
    }
}

/// `'1s'`, `'250ms'`, `'2 minutes'`, or a bare number of seconds.
pub fn parse_duration(v: &str) -> Result<Duration, PgError> {
    let bad = || {
        PgError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid interval \"{v}\": expected a duration such as '1s' or '500ms'"),
        )
    };
    let t = v.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => n,
        "ms" | "millisecond" | "milliseconds" => n / 1000.0,
        "us" | "microsecond" | "microseconds" => n / 1e6,
        "min" | "mins" | "minute" | "minutes" => n * 60.0,
        "h" | "hour" | "hours" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 || secs > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(sql: &str) -> SubscribePlan {
        parse_subscribe_statement(sql).unwrap().unwrap()
    }

    #[test]
    fn forms() {
        let p = plan("SUBSCRIBE v");
        assert_eq!((p.relation.as_str(), p.snapshot, p.progress), ("v", true, false));
        let p = plan("subscribe to v with (snapshot = false, progress) as of 10 up to 20;");
        assert_eq!((p.snapshot, p.progress, p.as_of, p.up_to), (false, true, Some(10), Some(20)));
        let p = plan("COPY (SUBSCRIBE v ENVELOPE UPSERT (KEY (a, b))) TO STDOUT");
        assert_eq!(p.upsert_key, Some(vec!["a".into(), "b".into()]));
        let p = plan("COPY (SUBSCRIBE (SELECT g, count(*) FROM t WHERE (a) > 1 GROUP BY g) WITH (PROGRESS)) TO STDOUT");
        assert_eq!(
            (p.query.map(|q| q.to_string()), p.progress),
            (Some("SELECT g, count(*) FROM t WHERE (a) > 1 GROUP BY g".to_owned()), true)
        );
        assert!(parse_subscribe_statement("COPY t FROM STDIN").is_none());
        assert!(parse_subscribe_statement("SELECT 1").is_none());
    }

    #[test]
    fn errors() {
        let e = parse_subscribe_statement("SUBSCRIBE (SELECT 1").unwrap().unwrap_err();
        assert_eq!(e.sqlstate, SqlState::SYNTAX_ERROR);
        let e = parse_subscribe_statement("SUBSCRIBE v WITH (bogus)").unwrap().unwrap_err();
        assert_eq!(e.sqlstate, SqlState::INVALID_PARAMETER_VALUE);
        let e = parse_subscribe_statement("SUBSCRIBE v extra").unwrap().unwrap_err();
        assert_eq!(e.sqlstate, SqlState::SYNTAX_ERROR);
        assert!(parse_duration("abc").is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }
}
