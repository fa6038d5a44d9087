//! Parsing one query string into sqlparser's AST, with the rewrites PostgreSQL's forms need
//! (FLUSH, EMIT clauses, precedence, set-returning functions, window table functions, and
//! datafusion-pg-catalog's catalog rewrites where a statement reads the catalogs).

use datafusion::sql::sqlparser::ast;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use freshet_common::{PgError, SqlState};

use crate::words::ident;

/// Parses `sql` into AST statements.
///
/// Statements that touch the system catalogs (what psql's `\d` and drivers send) go through
/// datafusion-pg-catalog's rewriting parser. Everything else is parsed as written: some of those
/// rewrites change results (one replaces scalar subqueries in a projection with NULL), so they
/// must never touch user queries.
pub fn parse(sql: &str) -> Result<Vec<ast::Statement>, PgError> {
    // FLUSH is ours (sqlparser only knows MySQL's): a statement of its own.
    if sql
        .trim()
        .trim_end_matches(';')
        .trim()
        .eq_ignore_ascii_case("flush")
    {
        return Ok(vec![flush_statement()]);
    }
    if let Some((sql, at)) = crate::emit::strip(sql) {
        let mut stmts = parse(&sql)?;
        for i in at {
            if let Some(s) = stmts.get_mut(i) {
                crate::emit::restore(s)?;
            }
        }
        return Ok(stmts);
    }
    if !needs_catalog_rewrites(sql) {
        let mut stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .map_err(syntax_error)?;
        for s in &mut stmts {
            crate::limits::check_depth(s)?;
        }
        if sql.contains('.') {
            for s in &mut stmts {
                field_access_by_name(s);
            }
        }
        crate::session_functions::rewrite(sql, &mut stmts);
        crate::precedence::rewrite(sql, &mut stmts);
        crate::set_returning::rewrite(sql, &mut stmts);
        let lower = sql.to_ascii_lowercase();
        literals(sql, &lower, &mut stmts);
        if crate::by_oid::mentions(&lower) {
            stmts.iter_mut().for_each(crate::by_oid::rewrite);
        }
        window_tables(sql, &mut stmts)?;
        return Ok(stmts);
    }
    // The rewriting parser is cheap to build relative to a statement's planning, but not free;
    // keep one per thread.
    thread_local! {
        static PARSER: PostgresCompatibilityParser = PostgresCompatibilityParser::new();
    }
    // Its rewrites recurse over the tree: check the depth on a plain parse first.
    if let Ok(mut stmts) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    ) {
        for s in &mut stmts {
            crate::limits::check_depth(s)?;
        }
    }
    let qualified = crate::system_columns::qualify_catalog_regclass(sql);
    let qualified = qualified.as_deref().unwrap_or(sql);
    let plain = plain_operators(qualified);
    let mut stmts = PARSER
        .with(|p| p.parse(plain.as_deref().unwrap_or(qualified)))
        .map_err(syntax_error)?;
    if sql.contains(").") {
        stmts.iter_mut().for_each(field_access_by_name);
    }
    crate::session_functions::rewrite(sql, &mut stmts);
    crate::precedence::rewrite(sql, &mut stmts);
    crate::set_returning::rewrite(sql, &mut stmts);
    let lower = sql.to_ascii_lowercase();
    literals(sql, &lower, &mut stmts);
    if crate::empty_catalogs::mentions(&lower) {
        stmts.iter_mut().for_each(crate::empty_catalogs::rewrite);
    }
    if lower.contains("array(") {
        stmts.iter_mut().for_each(crate::array_subquery::rewrite);
    }
    if crate::expand_array::mentions(&lower) {
        stmts.iter_mut().for_each(crate::expand_array::rewrite);
    }
    if lower.contains("generate_subscripts") {
        stmts.iter_mut().for_each(crate::set_returning::rewrite_subscripts);
    }
    if lower.contains("pg_table_is_visible") {
        stmts.iter_mut().for_each(crate::visibility::rewrite);
    }
    if crate::by_oid::mentions(&lower) {
        stmts.iter_mut().for_each(crate::by_oid::rewrite);
    }
    if crate::type_introspection::mentions(&lower) {
        stmts.iter_mut().for_each(crate::type_introspection::rewrite);
    }
    if lower.contains("pg_get_viewdef") {
        stmts.iter_mut().for_each(crate::system_columns::rewrite_viewdef);
    }
    if crate::system_columns::mentions_tableoid(&lower) {
        stmts.iter_mut().for_each(crate::system_columns::rewrite_tableoid);
    }
    window_tables(sql, &mut stmts)?;
    Ok(stmts)
}

/// `sql` with the operators psql and pg_dump spell schema-qualified (`OPERATOR(pg_catalog.=)`,
/// `OPERATOR(pg_catalog.~)`) written plainly: sqlparser does not take the qualified form
/// before `ANY` (`c.relkind OPERATOR(pg_catalog.=) ANY (array[…])`, what `pg_dump -t` sends).
/// `None` when there is none.
fn plain_operators(sql: &str) -> Option<String> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !sql.contains("OPERATOR(pg_catalog.") {
        return None;
    }
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize().ok()?;
    let operator = |t: &Token| {
        !matches!(
            t,
            Token::Word(_)
                | Token::Number(..)
                | Token::SingleQuotedString(_)
                | Token::LParen
                | Token::RParen
                | Token::Comma
                | Token::Whitespace(_)
                | Token::EOF
        )
    };
    let mut out = String::with_capacity(sql.len());
    let mut rest = tokens.as_slice();
    while let Some(first) = rest.first() {
        if let [Token::Word(w), Token::LParen, Token::Word(schema), Token::Period, op, Token::RParen, ..] =
            rest
        {
            if w.quote_style.is_none()
                && w.value.eq_ignore_ascii_case("operator")
                && schema.value == "pg_catalog"
                && operator(op)
            {
                out.push_str(&op.to_string());
                rest = &rest[6..];
                continue;
            }
        }
        out.push_str(&first.to_string());
        rest = &rest[1..];
    }
    Some(out)
}

/// Array and interval literals in PostgreSQL's text forms, as DataFusion reads them, and casts
/// to `jsonb` / `json` / `uuid`.
/// `lower` is `sql` in lower case.
fn literals(sql: &str, lower: &str, stmts: &mut [ast::Statement]) {
    crate::pg_array_in::rewrite_literals(sql, stmts);
    if lower.contains("interval") {
        stmts.iter_mut().for_each(crate::pg_interval_in::rewrite_literals);
    }
    if lower.contains("json") || lower.contains("uuid") {
        stmts.iter_mut().for_each(crate::jsonb_functions::rewrite_casts);
    }
    if crate::jsonb_build::mentions(lower) {
        stmts.iter_mut().for_each(crate::jsonb_build::rewrite_calls);
    }
}

/// `TUMBLE(…)` and `HOP(…)` in FROM clauses as the derived tables they stand for.
fn window_tables(sql: &str, stmts: &mut [ast::Statement]) -> Result<(), PgError> {
    if crate::window_tvf::mentions(&sql.to_ascii_lowercase()) {
        for s in stmts {
            crate::window_tvf::rewrite(s)?;
        }
    }
    Ok(())
}

/// PostgreSQL's composite field access `(col).field`: DataFusion's planner only takes a field
/// name as a string after the dot, so the identifier becomes one (normalized like any
/// identifier: unquoted ones fold to lower case).
fn field_access_by_name(stmt: &mut ast::Statement) {
    use std::ops::ControlFlow;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::CompoundFieldAccess { root, access_chain } = e {
            // `t.col[1]`: a column by its qualified name, not a field.
            if matches!(root.as_ref(), ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)) {
                return ControlFlow::<()>::Continue(());
            }
            for a in access_chain.iter_mut() {
                if let ast::AccessExpr::Dot(ast::Expr::Identifier(id)) = a {
                    let name = ident(id);
                    *a = ast::AccessExpr::Dot(ast::Expr::Value(
                        ast::Value::SingleQuotedString(name).into(),
                    ));
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn needs_catalog_rewrites(sql: &str) -> bool {
    let l = sql.to_ascii_lowercase();
    [
        "pg_catalog",
        "information_schema",
        "::reg",
        "operator(",
        " collate ",
        "pg_get_",
        "pg_table_is_visible",
        "tableoid",
    ]
    .iter()
    .any(|m| l.contains(m))
}

fn syntax_error(e: datafusion::sql::sqlparser::parser::ParserError) -> PgError {
    let msg = e.to_string();
    let msg = msg
        .strip_prefix("sql parser error: ")
        .unwrap_or(&msg)
        .to_owned();
    PgError::new(SqlState::SYNTAX_ERROR, format!("syntax error: {msg}"))
}

fn flush_statement() -> ast::Statement {
    ast::Statement::Flush {
        object_type: ast::FlushType::Tables,
        location: None,
        channel: None,
        read_lock: false,
        export: false,
        tables: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::STATEMENT_STACK_BYTES;

    /// Parses (and so checks the depth of) `sql` on a thread with the server's statement stack.
    fn check(sql: &str) -> Result<(), PgError> {
        let sql = sql.to_owned();
        std::thread::Builder::new()
            .stack_size(STATEMENT_STACK_BYTES)
            .spawn(move || parse(&sql).map(drop))
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn qualified_operators_are_written_plainly() {
        let sql = "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind OPERATOR(pg_catalog.=) \
                   ANY (array['r', 'S']) AND c.relname OPERATOR(pg_catalog.~) '^(t)$'";
        assert_eq!(
            plain_operators(sql).unwrap(),
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind = ANY (array['r', 'S']) \
             AND c.relname ~ '^(t)$'"
        );
        assert!(parse(sql).is_ok());
        assert!(plain_operators("SELECT 1").is_none());
    }

    #[test]
    fn deep_chains_are_refused_without_exhausting_the_stack() {
        // Far past the limits: the check and the drop must not recurse per level.
        let plus = format!("SELECT 1{}", "+1".repeat(200_000));
        let e = check(&plus).unwrap_err();
        assert_eq!(e.sqlstate, SqlState::STATEMENT_TOO_COMPLEX);
        let union = vec!["SELECT 1"; 50_000].join(" UNION ALL ");
        assert_eq!(
            check(&union).unwrap_err().sqlstate,
            SqlState::STATEMENT_TOO_COMPLEX
        );
        let ors = (0..20_000)
            .map(|i| format!("k = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        assert!(check(&format!("SELECT * FROM t WHERE {ors}")).is_err());
    }

    #[test]
    fn chains_within_the_limits_pass() {
        let ors = (0..1_500)
            .map(|i| format!("k = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        check(&format!("SELECT * FROM t WHERE {ors}")).unwrap();
        check(&vec!["SELECT 1"; 1_000].join(" UNION ALL ")).unwrap();
    }
}
