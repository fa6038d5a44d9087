//! Subqueries in the select list of a query whose rows come through a catalog that is always
//! empty in freshet (event triggers, partitioned tables, publications, row security policies,
//! transforms, security labels — alone or inner-joined): no row ever evaluates them, so they
//! are planned as NULL, and its WHERE clause as false. pg_dump's queries over these catalogs
//! use correlated `unnest(evttags)` or `generate_series(0, array_upper(prattrs, 1))`, which
//! DataFusion cannot plan (no lateral table functions), or `= ANY(partclass)` over an
//! `oidvector` the catalog keeps as text; the answer — no rows — is the same.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, VisitMut, VisitorMut};

/// The catalogs that never have a row here.
pub const ALWAYS_EMPTY: &[&str] = &[
    "pg_event_trigger",
    "pg_partitioned_table",
    "pg_policy",
    "pg_publication_rel",
    "pg_seclabels",
    "pg_transform",
];

/// Whether `lower` (a statement in lower case) may read one of them.
pub fn mentions(lower: &str) -> bool {
    ALWAYS_EMPTY.iter().any(|c| lower.contains(c))
}

pub fn rewrite(stmt: &mut ast::Statement) {
    let _ = stmt.visit(&mut OverEmpty);
}

struct OverEmpty;

impl VisitorMut for OverEmpty {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        let ast::SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        if !reads_only_an_empty_catalog(select) {
            return ControlFlow::Continue(());
        }
        if let Some(selection) = &mut select.selection {
            *selection = ast::Expr::Value(ast::Value::Boolean(false).into());
        }
        for item in &mut select.projection {
            if let ast::SelectItem::UnnamedExpr(e)
            | ast::SelectItem::ExprWithAlias { expr: e, .. } = item
            {
                let _ = ast::visit_expressions_mut(e, |e| {
                    if let Some(null) = never_evaluated(e) {
                        *e = null;
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether the FROM clause can only give no rows: an always-empty catalog joined so that
/// an empty side empties the result (inner and cross joins, the preserved side of an outer
/// join), or any comma-separated item that is so.
fn reads_only_an_empty_catalog(select: &ast::Select) -> bool {
    select.from.iter().any(|from| {
        let mut empty = is_empty_catalog(&from.relation);
        for join in &from.joins {
            let right = is_empty_catalog(&join.relation);
            empty = match join.join_operator {
                ast::JoinOperator::Join(_)
                | ast::JoinOperator::Inner(_)
                | ast::JoinOperator::CrossJoin(_)
                | ast::JoinOperator::Semi(_)
                | ast::JoinOperator::LeftSemi(_) => empty || right,
                ast::JoinOperator::Left(_)
                | ast::JoinOperator::LeftOuter(_)
                | ast::JoinOperator::Anti(_)
                | ast::JoinOperator::LeftAnti(_) => empty,
                ast::JoinOperator::Right(_) | ast::JoinOperator::RightOuter(_) => right,
                ast::JoinOperator::FullOuter(_) => empty && right,
                _ => false,
            };
        }
        empty
    })
}

/// A catalog named unqualified or in pg_catalog that is in [`ALWAYS_EMPTY`].
fn is_empty_catalog(relation: &ast::TableFactor) -> bool {
    let ast::TableFactor::Table {
        name, args: None, ..
    } = relation
    else {
        return false;
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
        .collect();
    match parts.as_slice() {
        [table] => ALWAYS_EMPTY.contains(&table.as_str()),
        [schema, table] if schema == "pg_catalog" => ALWAYS_EMPTY.contains(&table.as_str()),
        _ => false,
    }
}

/// The NULL a subquery (or `ARRAY(subquery)`, an array) stands for.
fn never_evaluated(e: &ast::Expr) -> Option<ast::Expr> {
    let null = ast::Expr::Value(ast::Value::Null.into());
    match e {
        ast::Expr::Subquery(_) => Some(null),
        ast::Expr::Function(f)
            if matches!(f.args, ast::FunctionArguments::Subquery(_))
                && f.name.0.len() == 1
                && f.name.0[0]
                    .as_ident()
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("array")) =>
        {
            Some(ast::Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(null),
                data_type: ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
                    Box::new(ast::DataType::Text),
                    None,
                )),
                array: false,
                format: None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        stmts.iter_mut().for_each(rewrite);
        stmts[0].to_string()
    }

    #[test]
    fn subqueries_over_an_empty_catalog_are_null() {
        assert_eq!(
            rewritten(
                "SELECT e.oid, array_to_string(array(select quote_literal(x) from unnest(evttags) as t(x)), ', ') AS tags FROM pg_event_trigger e"
            ),
            "SELECT e.oid, array_to_string(NULL::TEXT[], ', ') AS tags FROM pg_event_trigger e"
        );
        assert_eq!(
            rewritten("SELECT (CASE WHEN prattrs IS NOT NULL THEN (SELECT 1) ELSE NULL END) p FROM pg_catalog.pg_publication_rel pr"),
            "SELECT (CASE WHEN prattrs IS NOT NULL THEN NULL ELSE NULL END) AS p FROM pg_catalog.pg_publication_rel pr"
        );
        assert!(rewritten(
            "SELECT (SELECT 1) x FROM unnest('{1}'::oid[]) AS src(o) JOIN pg_catalog.pg_policy pol ON (src.o = pol.polrelid)"
        )
        .starts_with("SELECT NULL AS x"));
        assert_eq!(
            rewritten("SELECT partrelid FROM pg_partitioned_table WHERE (SELECT 1) = ANY(partclass)"),
            "SELECT partrelid FROM pg_partitioned_table WHERE false"
        );
    }

    #[test]
    fn other_relations_keep_their_subqueries() {
        for sql in [
            "SELECT (SELECT 1) FROM pg_class",
            "SELECT (SELECT 1) FROM public.pg_policy",
            "SELECT (SELECT 1) FROM pg_class c LEFT JOIN pg_policy p ON true",
            "SELECT (SELECT 1) FROM pg_policy p FULL JOIN pg_class c ON true",
        ] {
            assert!(rewritten(sql).contains("(SELECT 1)"), "{sql}");
        }
    }
}
