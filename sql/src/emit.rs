//! `CREATE MATERIALIZED VIEW … AS SELECT … EMIT ON WINDOW CLOSE` (RisingWave's clause): the
//! parser does not know it, so it is cut from the text before parsing and comes back as the
//! view option `emit = 'on_window_close'` (which may also be written in `WITH (…)`).

use datafusion::sql::sqlparser::ast::{self, Expr, Ident, SqlOption, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};
use freshet_common::{PgError, SqlState};

/// The view option the clause stands for, and its one value.
pub const OPTION: &str = "emit";
pub const ON_WINDOW_CLOSE: &str = "on_window_close";

/// `sql` without its `EMIT ON WINDOW CLOSE` clauses, and the (0-based) statements that had
/// one; `None` when it has none (or does not tokenize: the parser reports that).
pub fn strip(sql: &str) -> Option<(String, Vec<usize>)> {
    let lower = sql.to_ascii_lowercase();
    if !(lower.contains("emit") && lower.contains("window")) {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let words: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let is = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let offsets = LineOffsets::new(sql);
    let mut cuts = Vec::new();
    let mut statements = Vec::new();
    let mut statement = 0;
    let mut i = 0;
    while i < words.len() {
        let t = words[i];
        if t.token == Token::SemiColon {
            statement += 1;
        } else if i + 3 < words.len()
            && ["emit", "on", "window", "close"]
                .iter()
                .enumerate()
                .all(|(k, w)| is(&words[i + k].token, w))
        {
            let from = offsets.at(t.span.start)?;
            let to = offsets.at(words[i + 3].span.end)?;
            cuts.push((from, to));
            statements.push(statement);
            i += 4;
            continue;
        }
        i += 1;
    }
    if cuts.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for (from, to) in cuts {
        out.push_str(&sql[at..from]);
        out.push(' ');
        at = to;
    }
    out.push_str(&sql[at..]);
    Some((out, statements))
}

/// Puts the clause back on statement `s` as the view option; a syntax error on anything but
/// `CREATE MATERIALIZED VIEW` (or its `EXPLAIN`).
pub fn restore(s: &mut ast::Statement) -> Result<(), PgError> {
    let cv = match s {
        ast::Statement::CreateView(cv) if cv.materialized => cv,
        ast::Statement::Explain { statement, .. } => match statement.as_mut() {
            ast::Statement::CreateView(cv) if cv.materialized => cv,
            _ => return Err(misplaced()),
        },
        _ => return Err(misplaced()),
    };
    let option = SqlOption::KeyValue {
        key: Ident::new(OPTION),
        value: Expr::value(Value::SingleQuotedString(ON_WINDOW_CLOSE.into())),
    };
    match &mut cv.options {
        ast::CreateTableOptions::With(o) => o.push(option),
        o @ ast::CreateTableOptions::None => *o = ast::CreateTableOptions::With(vec![option]),
        other => {
            return Err(PgError::not_supported(format!(
                "materialized view options {other}"
            )))
        }
    }
    Ok(())
}

fn misplaced() -> PgError {
    PgError::new(
        SqlState::SYNTAX_ERROR,
        "syntax error at or near \"EMIT\": EMIT ON WINDOW CLOSE ends a CREATE MATERIALIZED VIEW",
    )
}

/// Byte offsets of tokenizer locations (1-based lines and character columns).
struct LineOffsets<'a> {
    sql: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineOffsets<'a> {
    fn new(sql: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Self { sql, starts }
    }

    fn at(&self, l: Location) -> Option<usize> {
        let start = *self.starts.get(usize::try_from(l.line).ok()?.checked_sub(1)?)?;
        let column = usize::try_from(l.column).ok()?.checked_sub(1)?;
        let line = &self.sql[start..];
        match line.char_indices().nth(column) {
            Some((i, _)) => Some(start + i),
            None => Some(self.sql.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_the_clause() {
        let (sql, at) = strip(
            "CREATE MATERIALIZED VIEW v AS SELECT 'é' AS x, window_start\n FROM t GROUP BY 1, 2\n emit ON window CLOSE;",
        )
        .unwrap();
        assert_eq!(
            sql,
            "CREATE MATERIALIZED VIEW v AS SELECT 'é' AS x, window_start\n FROM t GROUP BY 1, 2\n  ;"
        );
        assert_eq!(at, vec![0]);
        let (_, at) = strip("SELECT 1; CREATE MATERIALIZED VIEW v AS SELECT 1 EMIT ON WINDOW CLOSE").unwrap();
        assert_eq!(at, vec![1]);
        assert!(strip("SELECT 'emit on window close'").is_none());
        assert!(strip("SELECT \"emit\" FROM window_t").is_none());
    }
}
