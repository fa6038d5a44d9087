//! Set-returning functions in FROM named as PostgreSQL names them: the one column of
//! `generate_series(…)` is called `generate_series`, or after the alias
//! (`generate_series(1, 3) AS g` has a column `g`). DataFusion calls it `value`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, Ident, TableAlias, TableAliasColumnDef, TableFactor};

/// Names the column of every `generate_series(…)` in `stmts`' FROM clauses that has no
/// column alias.
pub fn rewrite(sql: &str, stmts: &mut [ast::Statement]) {
    if !sql.to_ascii_lowercase().contains("generate_series") {
        return;
    }
    for stmt in stmts {
        let _ = ast::VisitMut::visit(stmt, &mut Namer);
    }
}

struct Namer;

impl ast::VisitorMut for Namer {
    type Break = ();

    fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            args: Some(_),
            alias,
            ..
        } = tf
        else {
            return ControlFlow::Continue(());
        };
        let called = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("generate_series"));
        if !called {
            return ControlFlow::Continue(());
        }
        let column = |name: &Ident| TableAliasColumnDef {
            name: name.clone(),
            data_type: None,
        };
        match alias {
            None => {
                let name = Ident::new("generate_series");
                *alias = Some(TableAlias {
                    explicit: true,
                    columns: vec![column(&name)],
                    name,
                    at: None,
                });
            }
            Some(a) if a.columns.is_empty() => a.columns = vec![column(&a.name)],
            Some(_) => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn named(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        super::rewrite(sql, &mut stmts);
        stmts[0].to_string()
    }

    #[test]
    fn generate_series_columns_are_named_as_in_postgres() {
        assert_eq!(
            named("SELECT * FROM generate_series(1, 3)"),
            "SELECT * FROM generate_series(1, 3) AS generate_series (generate_series)"
        );
        assert_eq!(
            named("SELECT g FROM generate_series(1, 3) AS g"),
            "SELECT g FROM generate_series(1, 3) AS g (g)"
        );
        assert_eq!(
            named("SELECT x FROM generate_series(1, 3) AS g(x)"),
            "SELECT x FROM generate_series(1, 3) AS g (x)"
        );
        assert_eq!(named("SELECT * FROM t"), "SELECT * FROM t");
    }
}

/// `generate_subscripts(a, 1)` in a select list as `unnest(generate_series(1,
/// cardinality(a)))`: the subscripts of a one-dimensional array, one row each, zipped with
/// the other set-returning calls of the list as PostgreSQL does (SQLAlchemy's inspector pairs
/// it with `unnest(indkey)`).
pub fn rewrite_subscripts(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        let ast::Expr::Function(f) = e else {
            return ControlFlow::<()>::Continue(());
        };
        let is_it = f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("generate_subscripts"));
        let ast::FunctionArguments::List(list) = &f.args else {
            return ControlFlow::Continue(());
        };
        if !is_it || list.args.len() != 2 {
            return ControlFlow::Continue(());
        }
        let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(array)) = &list.args[0] else {
            return ControlFlow::Continue(());
        };
        let sql = format!("unnest(generate_series(1, cardinality({array})))");
        if let Ok(parsed) = datafusion::sql::sqlparser::parser::Parser::new(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        )
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
        {
            *e = parsed;
        }
        ControlFlow::Continue(())
    });
}
