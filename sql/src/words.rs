//! Shared pieces of parsing: leading words, sqlparser's parser over one statement, words and
//! options of the statements sqlparser does not know, and PostgreSQL's identifier and object
//! name rules.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{self, ObjectName, ObjectNamePart};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;
use freshet_common::{PgError, SqlState};

/// `sql` cut at its top-level semicolons — as PostgreSQL's tokenizer sees them, not inside
/// strings, quoted names or comments — each piece trimmed, empty ones dropped. `sql` whole
/// when it cannot be tokenized (the parser then reports the error).
pub(crate) fn split_statements(sql: &str) -> Vec<&str> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Location, Tokenizer};
    let body = sql.trim().trim_end_matches(';').trim_end();
    if !body.contains(';') {
        // One statement (most are): no tokenizing.
        return if body.is_empty() { Vec::new() } else { vec![body] };
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location() else {
        return vec![sql];
    };
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    // Locations count lines and characters from 1.
    let offset = |at: Location| -> Option<usize> {
        let start = *line_starts.get((at.line as usize).checked_sub(1)?)?;
        let column = (at.column as usize).checked_sub(1)?;
        sql[start..].char_indices().nth(column).map(|(i, _)| start + i)
    };
    let mut pieces = Vec::new();
    let mut from = 0;
    for t in &tokens {
        if t.token == Token::SemiColon {
            match offset(t.span.start) {
                Some(at) if sql[at..].starts_with(';') => {
                    pieces.push(&sql[from..at]);
                    from = at + 1;
                }
                _ => return vec![sql],
            }
        }
    }
    pieces.push(&sql[from..]);
    pieces
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first `n` words of `sql`, lower-cased (comments and whitespace skipped).
pub(crate) fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let Ok(tokens) =
        datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&GenericDialect {}, sql).tokenize()
    else {
        return vec![];
    };
    tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .take(n)
        .map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_lowercase(),
            _ => String::new(),
        })
        .collect()
}

pub(crate) fn syntax(e: ParserError) -> PgError {
    let msg = e.to_string();
    let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg);
    PgError::new(SqlState::SYNTAX_ERROR, format!("syntax error: {msg}"))
}

pub(crate) fn parser(sql: &str) -> Result<Parser<'static>, PgError> {
    static DIALECT: GenericDialect = GenericDialect {};
    Parser::new(&DIALECT).try_with_sql(sql).map_err(syntax)
}

/// Consumes `n` words, then requires the end of the statement.
pub(crate) fn expect_only(sql: &str, n: usize) -> Result<(), PgError> {
    let mut p = parser(sql)?;
    for _ in 0..n {
        p.next_token();
    }
    expect_end(&mut p)
}

pub(crate) fn expect_end(p: &mut Parser<'_>) -> Result<(), PgError> {
    while p.consume_token(&Token::SemiColon) {}
    match p.peek_token().token {
        Token::EOF => Ok(()),
        t => Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            format!("syntax error at or near \"{t}\""),
        )),
    }
}

/// Consumes the word `w` (case-insensitive, unquoted) if it comes next.
pub(crate) fn word(p: &mut Parser<'_>, w: &str) -> bool {
    match p.peek_token().token {
        Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w) => {
            p.next_token();
            true
        }
        _ => false,
    }
}

pub(crate) fn expect_word(p: &mut Parser<'_>, w: &str) -> Result<(), PgError> {
    if word(p, w) {
        Ok(())
    } else {
        Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            format!(
                "syntax error at or near \"{}\": expected {}",
                p.peek_token().token,
                w.to_ascii_uppercase()
            ),
        ))
    }
}

pub(crate) fn parse_options(p: &mut Parser<'_>) -> Result<BTreeMap<String, String>, PgError> {
    p.expect_token(&Token::LParen).map_err(syntax)?;
    let mut out = BTreeMap::new();
    if p.consume_token(&Token::RParen) {
        return Ok(out);
    }
    loop {
        let mut key = Vec::new();
        loop {
            key.push(
                p.parse_identifier()
                    .map_err(syntax)?
                    .value
                    .to_ascii_lowercase(),
            );
            if !p.consume_token(&Token::Period) {
                break;
            }
        }
        p.expect_token(&Token::Eq).map_err(syntax)?;
        let value = match p.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            t => {
                return Err(PgError::new(
                    SqlState::SYNTAX_ERROR,
                    format!("syntax error at or near \"{t}\": expected an option value"),
                ))
            }
        };
        out.insert(key.join("."), value);
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen).map_err(syntax)?;
    Ok(out)
}

pub(crate) fn object_name(name: &ObjectName) -> Result<String, PgError> {
    let parts: Vec<&str> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(i.value.as_str()),
            ObjectNamePart::Function(_) => Err(PgError::not_supported("function in object name")),
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [t] => Ok(normalize(t, name, 0)),
        [s, t] if s.eq_ignore_ascii_case("public") => Ok(normalize(t, name, 1)),
        [_, s, t] if s.eq_ignore_ascii_case("public") => Ok(normalize(t, name, 2)),
        _ => Err(PgError::new(
            SqlState::UNDEFINED_OBJECT,
            format!("schema of \"{name}\" does not exist"),
        )),
    }
}

fn normalize(s: &str, name: &ObjectName, idx: usize) -> String {
    let quoted = matches!(&name.0[idx], ObjectNamePart::Identifier(i) if i.quote_style.is_some());
    if quoted {
        s.to_owned()
    } else {
        s.to_lowercase()
    }
}

pub(crate) fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}


/// `[IF EXISTS] name [, …]` after `DROP <kind>`: the names and whether IF EXISTS was given.
pub(crate) fn drop_targets(p: &mut Parser<'_>) -> Result<(Vec<String>, bool), PgError> {
    let if_exists = if word(p, "if") {
        expect_word(p, "exists")?;
        true
    } else {
        false
    };
    let mut names = Vec::new();
    loop {
        names.push(object_name(&p.parse_object_name(false).map_err(syntax)?)?);
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    Ok((names, if_exists))
}

#[cfg(test)]
mod split_tests {
    use super::split_statements;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        assert_eq!(
            split_statements("CREATE TABLE t (a INT);\n -- x; y\n INSERT INTO t VALUES (';'); SELECT $$a;b$$;;"),
            vec!["CREATE TABLE t (a INT)", "-- x; y\n INSERT INTO t VALUES (';')", "SELECT $$a;b$$"]
        );
        assert_eq!(split_statements("SELECT 'é;'; SELECT \"a;b\""), vec!["SELECT 'é;'", "SELECT \"a;b\""]);
        assert_eq!(split_statements("SELECT 1"), vec!["SELECT 1"]);
    }
}
