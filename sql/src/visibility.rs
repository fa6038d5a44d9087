//! `pg_table_is_visible(oid)` as PostgreSQL answers it: whether the relation is in a schema
//! of the search path (`public`, `pg_catalog`). datafusion-pg-catalog's function says true
//! for every relation, so clients listing "their" tables (SQLAlchemy's inspector, psql's
//! `\d`) would also see `freshet_internal` and `information_schema`. Each call becomes a
//! subquery over `pg_class` and `pg_namespace`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Rewrites every `pg_table_is_visible(e)` in `stmt`.
pub fn rewrite(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let Some(arg) = visibility_call(e) {
            if let Some(replacement) = in_search_path(&arg) {
                *e = replacement;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn visibility_call(e: &ast::Expr) -> Option<ast::Expr> {
    let ast::Expr::Function(f) = e else {
        return None;
    };
    let name = f.name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    if name != "pg_table_is_visible" {
        return None;
    }
    let ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))] => Some(arg.clone()),
        _ => None,
    }
}

fn in_search_path(arg: &ast::Expr) -> Option<ast::Expr> {
    let sql = format!(
        "SELECT 1 WHERE ({arg}) IN (SELECT vis_c.oid FROM pg_catalog.pg_class AS vis_c \
         JOIN pg_catalog.pg_namespace AS vis_n ON vis_n.oid = vis_c.relnamespace \
         WHERE vis_n.nspname IN ('public', 'pg_catalog'))"
    );
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?;
    let ast::Statement::Query(q) = parsed.into_iter().next()? else {
        return None;
    };
    let ast::SetExpr::Select(select) = *q.body else {
        return None;
    };
    select.selection
}
