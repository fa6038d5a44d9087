//! Cursors, as PostgreSQL spells them, over a query or over a SUBSCRIBE (as in Materialize):
//!
//! ```text
//! DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [NO SCROLL] CURSOR [{WITH | WITHOUT} HOLD]
//!   FOR {query | SUBSCRIBE …}
//! FETCH [NEXT | [FORWARD] count | [FORWARD] ALL] [FROM | IN] name [WITH (timeout = 'interval')]
//! MOVE  [NEXT | [FORWARD] count | [FORWARD] ALL] [FROM | IN] name
//! CLOSE name | ALL
//! ```
//!
//! The query after `FOR` is parsed as any statement is (`crate::ast_parse`), so it gets the
//! same rewrites as when it runs on its own.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Location, Token};
use freshet_common::{PgError, SqlState};

use crate::subscribe::{option_value, parse_duration, parse_subscribe};
use crate::words::{expect_end, expect_word, ident, leading_words, parser, syntax, word};

/// How many rows a `FETCH` or `MOVE` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCount {
    All,
    Count(u64),
}

/// A parsed cursor statement.
#[derive(Debug, Clone)]
pub enum CursorStatement {
    DeclareQuery {
        cursor: String,
        query: Box<ast::Statement>,
        hold: bool,
    },
    DeclareSubscribe {
        cursor: String,
        plan: Box<crate::subscribe::SubscribePlan>,
    },
    Fetch {
        cursor: String,
        count: FetchCount,
        timeout: Option<std::time::Duration>,
    },
    Move {
        cursor: String,
        count: FetchCount,
    },
    /// `CLOSE name`, or `CLOSE ALL` when `None`.
    Close {
        cursor: Option<String>,
    },
}

/// Parses `sql` when it is a cursor statement; `None` otherwise.
pub fn parse_cursor_statement(sql: &str) -> Option<Result<CursorStatement, PgError>> {
    match leading_words(sql, 1).first().map(String::as_str) {
        Some("declare") => Some(parse_declare(sql)),
        Some("fetch") => Some(parse_fetch(sql)),
        Some("move") => Some(parse_move(sql)),
        Some("close") => Some(parse_close(sql)),
        _ => None,
    }
}

fn parse_declare(sql: &str) -> Result<CursorStatement, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "declare")?;
    let cursor = ident(&p.parse_identifier().map_err(syntax)?);
    if word(&mut p, "binary") {
        return Err(PgError::not_supported(
            "DECLARE … BINARY CURSOR (fetch in binary through the extended protocol)",
        ));
    }
    let _ = word(&mut p, "asensitive") || word(&mut p, "insensitive");
    if word(&mut p, "no") {
        expect_word(&mut p, "scroll")?;
    } else if word(&mut p, "scroll") {
        return Err(PgError::not_supported("DECLARE … SCROLL CURSOR"));
    }
    expect_word(&mut p, "cursor")?;
    let hold = if word(&mut p, "with") {
        expect_word(&mut p, "hold")?;
        true
    } else {
        if word(&mut p, "without") {
            expect_word(&mut p, "hold")?;
        }
        false
    };
    expect_word(&mut p, "for")?;
    if matches!(&p.peek_token().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("subscribe"))
    {
        if hold {
            return Err(PgError::not_supported(
                "DECLARE … CURSOR WITH HOLD for SUBSCRIBE",
            ));
        }
        let plan = parse_subscribe(&mut p)?;
        expect_end(&mut p)?;
        return Ok(CursorStatement::DeclareSubscribe {
            cursor,
            plan: Box::new(plan),
        });
    }
    let rest = &sql[offset(sql, p.peek_token().span.start)..];
    let mut stmts = crate::ast_parse::parse(rest)?;
    let query = match (stmts.pop(), stmts.is_empty()) {
        (Some(q @ ast::Statement::Query(_)), true) => q,
        _ => {
            return Err(PgError::new(
                SqlState::SYNTAX_ERROR,
                "syntax error: DECLARE … CURSOR FOR takes one SELECT or VALUES query",
            ))
        }
    };
    Ok(CursorStatement::DeclareQuery {
        cursor,
        query: Box::new(query),
        hold,
    })
}

/// The byte offset in `sql` of a tokenizer location (1-based line and character column).
fn offset(sql: &str, at: Location) -> usize {
    let mut line_start = 0;
    for _ in 1..at.line {
        match sql[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return sql.len(),
        }
    }
    sql[line_start..]
        .char_indices()
        .nth((at.column as usize).saturating_sub(1))
        .map_or(sql.len(), |(i, _)| line_start + i)
}

/// The direction and count of FETCH and MOVE: forward only (cursors are NO SCROLL).
fn parse_count(p: &mut Parser<'_>) -> Result<FetchCount, PgError> {
    for backward in ["backward", "prior", "first", "last", "absolute", "relative"] {
        if word(p, backward) {
            return Err(PgError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                "cursor can only scan forward",
            )
            .with_hint("Declare it with SCROLL option to enable backward scan."));
        }
    }
    let forward = word(p, "forward");
    Ok(if word(p, "all") {
        FetchCount::All
    } else if !forward && word(p, "next") {
        FetchCount::Count(1)
    } else if let Token::Number(n, _) = p.peek_token().token {
        p.next_token();
        FetchCount::Count(n.parse().map_err(|_| {
            PgError::new(
                SqlState::SYNTAX_ERROR,
                format!("syntax error at or near \"{n}\": expected a row count"),
            )
        })?)
    } else {
        FetchCount::Count(1)
    })
}

/// `[FROM | IN] name`.
fn cursor_name(p: &mut Parser<'_>) -> Result<String, PgError> {
    if !word(p, "from") {
        word(p, "in");
    }
    Ok(ident(&p.parse_identifier().map_err(syntax)?))
}

fn parse_fetch(sql: &str) -> Result<CursorStatement, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "fetch")?;
    let count = parse_count(&mut p)?;
    let cursor = cursor_name(&mut p)?;
    let mut timeout = None;
    if word(&mut p, "with") {
        p.expect_token(&Token::LParen).map_err(syntax)?;
        loop {
            let key = p
                .parse_identifier()
                .map_err(syntax)?
                .value
                .to_ascii_lowercase();
            let value = option_value(&mut p)?;
            if key != "timeout" {
                return Err(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("unrecognized FETCH option \"{key}\""),
                ));
            }
            timeout = Some(parse_duration(&value)?);
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        p.expect_token(&Token::RParen).map_err(syntax)?;
    }
    expect_end(&mut p)?;
    Ok(CursorStatement::Fetch {
        cursor,
        count,
        timeout,
    })
}

fn parse_move(sql: &str) -> Result<CursorStatement, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "move")?;
    let count = parse_count(&mut p)?;
    let cursor = cursor_name(&mut p)?;
    expect_end(&mut p)?;
    Ok(CursorStatement::Move { cursor, count })
}

fn parse_close(sql: &str) -> Result<CursorStatement, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "close")?;
    let cursor = if word(&mut p, "all") {
        None
    } else {
        Some(ident(&p.parse_identifier().map_err(syntax)?))
    };
    expect_end(&mut p)?;
    Ok(CursorStatement::Close { cursor })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(sql: &str) -> CursorStatement {
        parse_cursor_statement(sql).unwrap().unwrap()
    }

    #[test]
    fn forms() {
        let CursorStatement::DeclareSubscribe { plan, .. } =
            parse("DECLARE c CURSOR FOR SUBSCRIBE v WITH (SNAPSHOT false)")
        else {
            panic!("not a SUBSCRIBE cursor")
        };
        assert!(!plan.snapshot);
        let CursorStatement::DeclareQuery {
            cursor,
            query,
            hold,
        } = parse(
            "DECLARE \"My c\" NO SCROLL CURSOR WITH HOLD FOR\n  SELECT a, 'x' FROM t WHERE a > $1",
        )
        else {
            panic!("not a query cursor")
        };
        assert_eq!(
            (cursor.as_str(), query.to_string().as_str(), hold),
            ("My c", "SELECT a, 'x' FROM t WHERE a > $1", true)
        );
        assert!(matches!(
            parse("FETCH 10 c WITH (timeout = '1s')"),
            CursorStatement::Fetch { count: FetchCount::Count(10), timeout: Some(t), .. } if t == Duration::from_secs(1)
        ));
        assert!(matches!(
            parse("FETCH FORWARD ALL FROM c"),
            CursorStatement::Fetch {
                count: FetchCount::All,
                timeout: None,
                ..
            }
        ));
        assert!(matches!(
            parse("fetch forward 2000 from \"c\""),
            CursorStatement::Fetch {
                count: FetchCount::Count(2000),
                ..
            }
        ));
        assert!(matches!(
            parse("MOVE FORWARD 5 IN c"),
            CursorStatement::Move {
                count: FetchCount::Count(5),
                ..
            }
        ));
        assert!(parse_cursor_statement("SELECT 1").is_none());
    }

    #[test]
    fn errors() {
        for (sql, state) in [
            (
                "FETCH PRIOR FROM c",
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            ),
            (
                "DECLARE c SCROLL CURSOR FOR SELECT 1",
                SqlState::FEATURE_NOT_SUPPORTED,
            ),
            (
                "DECLARE c CURSOR FOR INSERT INTO t VALUES (1)",
                SqlState::SYNTAX_ERROR,
            ),
            (
                "DECLARE c CURSOR WITH HOLD FOR SUBSCRIBE v",
                SqlState::FEATURE_NOT_SUPPORTED,
            ),
        ] {
            let e = parse_cursor_statement(sql).unwrap().unwrap_err();
            assert_eq!(e.sqlstate, state, "{sql}");
        }
    }
}
