//! `ARRAY(SELECT e FROM … [ORDER BY …])`, which psql's `\du` and `\dp` send, as the scalar
//! subquery `(SELECT array_agg(e [ORDER BY …]) FROM …)` DataFusion plans (correlated ones
//! too). One difference from PostgreSQL: no rows give NULL rather than an empty array.
//! Subqueries over `pg_policy` (row security, which freshet does not have) are an empty
//! `text[]` (NULL) outright: psql's `\dp` compares its `oid[]` column with literals DataFusion
//! cannot type. So are those over `unnest(….reloptions)` (psql's `\d+` lists a TOAST table's
//! options so): no relation here has storage options, and DataFusion cannot plan the
//! correlated `unnest`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast;

/// Rewrites every `ARRAY(subquery)` in `stmt` whose subquery is a plain one-column SELECT.
pub fn rewrite(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let Some(q) = array_call(e) {
            if reads_pg_policy(q) || unnests_reloptions(q) {
                *e = ast::Expr::Cast {
                    kind: ast::CastKind::Cast,
                    expr: Box::new(ast::Expr::Value(ast::Value::Null.into())),
                    data_type: ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
                        Box::new(ast::DataType::Text),
                        None,
                    )),
                    array: false,
                    format: None,
                };
            } else if let Some(sub) = aggregated(q) {
                *e = ast::Expr::Subquery(Box::new(sub));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn unnests_reloptions(q: &ast::Query) -> bool {
    let text = q.to_string().to_ascii_lowercase();
    text.contains("unnest(") && text.contains(".reloptions)")
}

fn reads_pg_policy(q: &ast::Query) -> bool {
    let mut found = false;
    let _ = ast::visit_relations(q, |name| {
        if name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("pg_policy")) {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

fn array_call(e: &ast::Expr) -> Option<&ast::Query> {
    let ast::Expr::Function(f) = e else {
        return None;
    };
    let [part] = f.name.0.as_slice() else {
        return None;
    };
    if !part.as_ident()?.value.eq_ignore_ascii_case("array") {
        return None;
    }
    match &f.args {
        ast::FunctionArguments::Subquery(q) => Some(q),
        _ => None,
    }
}

fn aggregated(q: &ast::Query) -> Option<ast::Query> {
    let mut q = q.clone();
    let order_by = q.order_by.take();
    if q.limit_clause.is_some() || q.with.is_some() {
        return None;
    }
    let ast::SetExpr::Select(sel) = q.body.as_mut() else {
        return None;
    };
    if !sel.group_by_is_empty() || sel.distinct.is_some() {
        return None;
    }
    let [item] = sel.projection.as_mut_slice() else {
        return None;
    };
    let expr = match item {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return None,
    };
    let clauses = match order_by.map(|o| o.kind) {
        Some(ast::OrderByKind::Expressions(exprs)) => vec![ast::FunctionArgumentClause::OrderBy(exprs)],
        Some(ast::OrderByKind::All(_)) => return None,
        None => vec![],
    };
    *item = ast::SelectItem::UnnamedExpr(ast::Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new("array_agg")]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(expr))],
            clauses,
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    }));
    Some(q)
}

trait GroupByEmpty {
    fn group_by_is_empty(&self) -> bool;
}

impl GroupByEmpty for ast::Select {
    fn group_by_is_empty(&self) -> bool {
        match &self.group_by {
            ast::GroupByExpr::Expressions(e, m) => e.is_empty() && m.is_empty(),
            ast::GroupByExpr::All(_) => false,
        }
    }
}
