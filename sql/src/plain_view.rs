//! `CREATE [OR REPLACE] VIEW` (a named query, planned at each use) bound into a plan.

use freshet_common::PgError;

use crate::ast;
use crate::words::{ident, object_name};

/// A bound `CREATE [OR REPLACE] VIEW name [(columns)] AS query`.
#[derive(Debug, Clone)]
pub struct CreatePlainViewPlan {
    pub name: String,
    pub or_replace: bool,
    /// Column names given after the view's name; empty for the query's own.
    pub columns: Vec<String>,
    pub query: Box<ast::Query>,
    /// The query as written.
    pub sql: String,
}

/// Binds a `CREATE VIEW` that is not materialized; what PostgreSQL has but freshet does not
/// keep is refused with 0A000 naming it.
pub(crate) fn bind(cv: ast::CreateView) -> Result<CreatePlainViewPlan, PgError> {
    if cv.temporary {
        return Err(PgError::not_supported("CREATE TEMPORARY VIEW"));
    }
    if cv.or_alter {
        return Err(PgError::not_supported("CREATE OR ALTER VIEW"));
    }
    if cv.if_not_exists {
        // PostgreSQL has no IF NOT EXISTS for views: a syntax error there.
        return Err(PgError::new(
            freshet_common::SqlState::SYNTAX_ERROR,
            "syntax error at or near \"NOT\"",
        ));
    }
    match &cv.options {
        ast::CreateTableOptions::None => {}
        other => return Err(PgError::not_supported(format!("view options {other}"))),
    }
    if cv.to.is_some() || cv.params.is_some() || cv.comment.is_some() || !cv.cluster_by.is_empty() {
        return Err(PgError::not_supported(format!("this form of CREATE VIEW: {cv}")));
    }
    if let Some(c) = cv.columns.iter().find(|c| c.data_type.is_some() || c.options.is_some()) {
        return Err(PgError::not_supported(format!("a view column with a type or options: {c}")));
    }
    Ok(CreatePlainViewPlan {
        name: object_name(&cv.name)?,
        or_replace: cv.or_replace,
        columns: cv.columns.iter().map(|c| ident(&c.name)).collect(),
        sql: cv.query.to_string(),
        query: cv.query,
    })
}

#[cfg(test)]
mod tests {
    use crate::ast;
    use crate::ast_parse::parse;

    fn bind(sql: &str) -> Result<super::CreatePlainViewPlan, freshet_common::PgError> {
        match parse(sql).unwrap().pop().unwrap() {
            ast::Statement::CreateView(cv) => super::bind(cv),
            other => panic!("not a view: {other}"),
        }
    }

    #[test]
    fn binds_views_and_refuses_what_it_does_not_keep() {
        let p = bind("CREATE OR REPLACE VIEW \"V\" (x, \"Y\") AS SELECT a, b FROM t").unwrap();
        assert_eq!((p.name.as_str(), p.or_replace), ("V", true));
        assert_eq!(p.columns, ["x", "Y"]);
        assert_eq!(p.sql, "SELECT a, b FROM t");
        for sql in [
            "CREATE TEMPORARY VIEW v AS SELECT 1",
            "CREATE VIEW v WITH (security_barrier = true) AS SELECT 1",
        ] {
            assert_eq!(bind(sql).unwrap_err().sqlstate.code(), "0A000", "{sql}");
        }
    }
}
