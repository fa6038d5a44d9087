//! Splitting a query string into statements and parsing each: sqlparser's, or one of the
//! statements it does not know (sources, sinks, SUBSCRIBE, roles).

use datafusion::sql::sqlparser::ast;
use freshet_common::PgError;

use crate::ast_parse::parse;
use crate::statement::{classify, Statement};

/// One parsed statement: sqlparser's AST, or one of ours that sqlparser does not know
/// (source DDL), already classified.
#[derive(Debug, Clone)]
pub enum Parsed {
    Ast(ast::Statement),
    Ours(Statement),
}

/// Parses `sql` into statements, ours included.
pub fn parse_statements(sql: &str) -> Result<Vec<Parsed>, PgError> {
    let pieces = crate::words::split_statements(sql);
    if pieces.len() > 1 && pieces.iter().any(|p| parse_ours(p).is_some()) {
        // Several statements, some of them ours (sqlparser knows neither): one by one.
        let mut out = Vec::with_capacity(pieces.len());
        for piece in pieces {
            match parse_ours(piece) {
                Some(stmt) => out.push(stmt?),
                None => out.extend(parse(piece)?.into_iter().map(Parsed::Ast)),
            }
        }
        return Ok(out);
    }
    if let Some(stmt) = parse_ours(sql) {
        return Ok(vec![stmt?]);
    }
    Ok(parse(sql)?.into_iter().map(Parsed::Ast).collect())
}

/// One of the statements sqlparser does not know (sources, sinks, SUBSCRIBE, roles), parsed;
/// `None` for any other.
fn parse_ours(sql: &str) -> Option<Result<Parsed, PgError>> {
    if let Some(stmt) = crate::source::parse_source_statement(sql) {
        return Some(stmt.map(|s| Parsed::Ours(s.into())));
    }
    if let Some(stmt) = crate::sink::parse_sink_statement(sql) {
        return Some(stmt.map(|s| Parsed::Ours(s.into())));
    }
    if let Some(stmt) = crate::subscribe::parse_subscribe_statement(sql) {
        return Some(stmt.map(|s| Parsed::Ours(Statement::Subscribe(Box::new(s)))));
    }
    if let Some(stmt) = crate::cursor::parse_cursor_statement(sql) {
        return Some(stmt.map(|s| Parsed::Ours(s.into())));
    }
    crate::role::parse_role_statement(sql)
        .map(|stmt| stmt.map(|s| Parsed::Ours(Statement::Role(s))))
}

/// Classifies one parsed statement.
pub fn classify_parsed(stmt: Parsed) -> Result<Statement, PgError> {
    match stmt {
        Parsed::Ast(s) => classify(s),
        Parsed::Ours(s) => Ok(s),
    }
}
