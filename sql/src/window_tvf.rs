//! Window table functions (Flink's and RisingWave's syntax), as derived tables DataFusion
//! and the dataflow already plan:
//!
//! - `TUMBLE(rel, ts, size [, offset])`: each row of `rel` with `window_start =
//!   date_bin(size, ts)` and `window_end = window_start + size`;
//! - `HOP(rel, ts, slide, size [, offset])`: each row once per window of `size` starting every
//!   `slide` that holds `ts` (`size` a multiple of `slide`, at most 64 windows per row): a
//!   UNION ALL of the `size / slide` shifted tumbling windows.
//!
//! - `SESSION(rel, ts, gap)`: each row of `rel` with the start and end of its session among
//!   the rows of its group (the enclosing query's GROUP BY columns other than the window's):
//!   the window functions `session_start` and `session_end` over those partitions ordered by
//!   `ts` (see `session_window.rs`).
//!
//! Windows are aligned to 1970-01-01 00:00:00 (UTC for `timestamptz`) plus `offset` (as
//! Flink's and RisingWave's: `TUMBLE(…, INTERVAL '1 day', INTERVAL '8 hours')` makes days that
//! start at 08:00): `date_bin(slide, ts - offset) + offset`, which the dataflow's watermark
//! derivation follows. Sizes and offsets are fixed-length intervals (no months).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use freshet_common::{PgError, SqlState};

/// Most windows `HOP` puts one row in.
const MAX_HOP_WINDOWS: i64 = 64;

/// Whether `sql` may call a window table function (a cheap test before walking the tree).
pub fn mentions(sql_lower: &str) -> bool {
    sql_lower.contains("tumble") || sql_lower.contains("hop") || sql_lower.contains("session")
}

/// Rewrites every `TUMBLE(…)` and `HOP(…)` in `stmt`'s FROM clauses.
pub fn rewrite(stmt: &mut ast::Statement) -> Result<(), PgError> {
    struct Rewriter;
    impl VisitorMut for Rewriter {
        type Break = PgError;
        fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<PgError> {
            if let ast::SetExpr::Select(select) = q.body.as_mut() {
                if let Err(e) = session_tables(select) {
                    return ControlFlow::Break(e);
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<PgError> {
            match window_table(tf) {
                Ok(Some(derived)) => *tf = derived,
                Ok(None) => {}
                Err(e) => return ControlFlow::Break(e),
            }
            ControlFlow::Continue(())
        }
    }
    match stmt.visit(&mut Rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The microseconds of a fixed-length interval literal (`INTERVAL '5 seconds'`,
/// `INTERVAL '5' SECOND`); `None` for any other expression.
pub fn interval_micros(e: &Expr) -> Result<Option<i64>, PgError> {
    let Expr::Interval(iv) = e else {
        return Ok(None);
    };
    let Expr::Value(v) = iv.value.as_ref() else {
        return Ok(None);
    };
    let Value::SingleQuotedString(text) = &v.value else {
        return Ok(None);
    };
    let text = match &iv.leading_field {
        Some(f) => format!("{text} {f}"),
        None => text.clone(),
    };
    let d = crate::subscribe::parse_duration(&text)?;
    Ok(i64::try_from(d.as_micros()).ok())
}

/// A table function call in FROM: its name (lower case), alias and arguments.
fn table_call(
    tf: &TableFactor,
) -> Option<(String, &Option<ast::TableAlias>, &ast::TableFunctionArgs)> {
    let TableFactor::Table {
        name,
        alias,
        args: Some(args),
        ..
    } = tf
    else {
        return None;
    };
    let [part] = name.0.as_slice() else {
        return None;
    };
    Some((part.as_ident()?.value.to_ascii_lowercase(), alias, args))
}

/// A window table function's first argument: the relation it windows.
fn relation_arg(e: &Expr) -> Option<ast::ObjectName> {
    match e {
        Expr::Identifier(i) => Some(ast::ObjectName::from(vec![i.clone()])),
        Expr::CompoundIdentifier(p) => Some(ast::ObjectName::from(p.clone())),
        _ => None,
    }
}

fn window_table(tf: &TableFactor) -> Result<Option<TableFactor>, PgError> {
    let Some((func, alias, args)) = table_call(tf) else {
        return Ok(None);
    };
    if func != "tumble" && func != "hop" {
        return Ok(None);
    }
    let upper = func.to_ascii_uppercase();
    let exprs: Vec<&Expr> = args
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(PgError::not_supported(format!(
                "named or wildcard arguments of {upper}"
            ))),
        })
        .collect::<Result<_, _>>()?;
    let relation = match exprs.first().and_then(|e| relation_arg(e)) {
        Some(r) => r,
        None => {
            return Err(PgError::new(
                SqlState::SYNTAX_ERROR,
                format!("the first argument of {upper} must name a table, view or source"),
            ));
        }
    };
    let size_of = |e: &Expr, what: &str| -> Result<i64, PgError> {
        match interval_micros(e)? {
            Some(n) if n > 0 => Ok(n),
            _ => Err(PgError::not_supported(format!(
                "{upper} {what} {e}: a positive fixed-length interval literal is needed"
            ))),
        }
    };
    let offset_of = |e: &Expr| -> Result<i64, PgError> {
        match interval_micros(e)? {
            Some(n) if n >= 0 => Ok(n),
            _ => Err(PgError::not_supported(format!(
                "{upper} offset {e}: a non-negative fixed-length interval literal is needed"
            ))),
        }
    };
    let hop = |ts: &Expr, slide: &Expr, size: &Expr, offset: i64| {
        let (slide, size) = (size_of(slide, "slide")?, size_of(size, "size")?);
        if size % slide != 0 || size / slide > MAX_HOP_WINDOWS {
            return Err(PgError::not_supported(format!(
                "HOP with a size that is not a multiple of its slide, or more than \
                 {MAX_HOP_WINDOWS} windows per row"
            )));
        }
        Ok(windows(&relation, ts, slide, size, size / slide, offset % slide))
    };
    let query = match (func.as_str(), exprs.as_slice()) {
        ("tumble", [_, ts, size]) => {
            let size = size_of(size, "size")?;
            windows(&relation, ts, size, size, 1, 0)
        }
        ("tumble", [_, ts, size, offset]) => {
            let size = size_of(size, "size")?;
            windows(&relation, ts, size, size, 1, offset_of(offset)? % size)
        }
        ("hop", [_, ts, slide, size]) => hop(ts, slide, size, 0)?,
        ("hop", [_, ts, slide, size, offset]) => hop(ts, slide, size, offset_of(offset)?)?,
        _ => {
            return Err(PgError::new(
                SqlState::UNDEFINED_FUNCTION,
                format!(
                    "function {func} does not exist: {upper}(relation, time column, {} [, offset])",
                    if func == "tumble" {
                        "size"
                    } else {
                        "slide, size"
                    }
                ),
            ));
        }
    };
    derived(&query, &relation, alias.as_ref(), &func).map(Some)
}

/// Rewrites the `SESSION(…)` tables in `select`'s FROM clause, partitioned by its GROUP BY.
fn session_tables(select: &mut ast::Select) -> Result<(), PgError> {
    let mut factors: Vec<&mut TableFactor> = Vec::new();
    for t in select.from.iter_mut() {
        factors.push(&mut t.relation);
        factors.extend(t.joins.iter_mut().map(|j| &mut j.relation));
    }
    let sessions: Vec<usize> = factors
        .iter()
        .enumerate()
        .filter(|(_, tf)| session_call(tf).is_some())
        .map(|(i, _)| i)
        .collect();
    if sessions.is_empty() {
        return Ok(());
    }
    let group_by = match &select.group_by {
        ast::GroupByExpr::Expressions(exprs, _) => exprs.clone(),
        ast::GroupByExpr::All(_) => {
            return Err(PgError::not_supported("SESSION with GROUP BY ALL"));
        }
    };
    let projection = select.projection.clone();
    for i in sessions {
        let tf = &mut *factors[i];
        let Some((relation, alias, args)) = session_call(tf) else {
            continue;
        };
        let names: Vec<String> = alias
            .iter()
            .map(|a| a.name.value.to_ascii_lowercase())
            .chain(
                relation
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.to_ascii_lowercase()),
            )
            .collect();
        let keys = session_keys(&group_by, &projection, &names)?;
        let [ts, gap] = args.as_slice() else {
            return Err(PgError::new(
                SqlState::UNDEFINED_FUNCTION,
                "function session does not exist: SESSION(relation, time column, gap)",
            ));
        };
        let gap = match interval_micros(gap)? {
            Some(n) if n > 0 => n,
            _ => {
                return Err(PgError::not_supported(format!(
                    "SESSION gap {gap}: a positive fixed-length interval literal is needed"
                )))
            }
        };
        let over = if keys.is_empty() {
            format!("OVER (ORDER BY {ts})")
        } else {
            let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
            format!("OVER (PARTITION BY {} ORDER BY {ts})", keys.join(", "))
        };
        let query = format!(
            "SELECT *, {start}({ts}, INTERVAL '{gap} microseconds') {over} AS window_start, \
             {end}({ts}, INTERVAL '{gap} microseconds') {over} AS window_end FROM {relation}",
            start = crate::session_window::name(false),
            end = crate::session_window::name(true),
        );
        *tf = derived(&query, &relation, alias.as_ref(), "session")?;
    }
    Ok(())
}

/// The relation, alias and other arguments of a `SESSION(relation, …)` table.
fn session_call(tf: &TableFactor) -> Option<(ast::ObjectName, Option<ast::TableAlias>, Vec<Expr>)> {
    let (func, alias, args) = table_call(tf)?;
    if func != "session" {
        return None;
    }
    let mut exprs = args.args.iter().map(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
        _ => None,
    });
    let relation = relation_arg(&exprs.next()??)?;
    Some((relation, alias.clone(), exprs.collect::<Option<Vec<_>>>()?))
}

/// The GROUP BY expressions that partition sessions: all but the window's columns, with
/// output positions and names resolved and the session's qualifier dropped.
fn session_keys(
    group_by: &[Expr],
    projection: &[ast::SelectItem],
    names: &[String],
) -> Result<Vec<Expr>, PgError> {
    let window_column = |e: &Expr| {
        let last = match e {
            Expr::Identifier(i) => Some(i),
            Expr::CompoundIdentifier(p) => p.last(),
            _ => None,
        };
        last.is_some_and(|i| {
            i.value.eq_ignore_ascii_case("window_start") || i.value.eq_ignore_ascii_case("window_end")
        })
    };
    let mut keys = Vec::new();
    for e in group_by {
        let mut e = e.clone();
        // An output position or an output name stands for that output's expression.
        let output = match &e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n.parse::<usize>().ok().and_then(|n| projection.get(n.checked_sub(1)?)),
                _ => None,
            },
            Expr::Identifier(i) if !window_column(&e) => projection.iter().find(|item| {
                matches!(item, ast::SelectItem::ExprWithAlias { alias, .. } if alias.value.eq_ignore_ascii_case(&i.value))
            }),
            _ => None,
        };
        match output {
            Some(ast::SelectItem::UnnamedExpr(x) | ast::SelectItem::ExprWithAlias { expr: x, .. }) => e = x.clone(),
            Some(_) => return Err(PgError::not_supported("SESSION grouped by a wildcard")),
            None => {}
        }
        if window_column(&e) {
            continue;
        }
        let mut foreign: Option<String> = None;
        let _ = ast::visit_expressions_mut(&mut e, |x| {
            if let Expr::CompoundIdentifier(p) = x {
                if let [q, c] = p.as_slice() {
                    if names.contains(&q.value.to_ascii_lowercase()) {
                        *x = Expr::Identifier(c.clone());
                    } else {
                        foreign = Some(q.value.clone());
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
        if let Some(q) = foreign {
            return Err(PgError::not_supported(format!(
                "SESSION grouped by a column of {q}: sessions are partitioned by columns of the \
                 relation they window"
            )));
        }
        keys.push(e);
    }
    Ok(keys)
}

/// `query` as a derived table named as the window table was (`alias`, else the relation).
fn derived(
    query: &str,
    relation: &ast::ObjectName,
    alias: Option<&ast::TableAlias>,
    func: &str,
) -> Result<TableFactor, PgError> {
    let alias = match alias {
        Some(a) if a.columns.is_empty() => a.name.to_string(),
        Some(a) => {
            let cols: Vec<String> = a.columns.iter().map(|c| c.name.to_string()).collect();
            format!("{} ({})", a.name, cols.join(", "))
        }
        None => relation
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.to_string())
            .unwrap_or_else(|| func.to_owned()),
    };
    let sql = format!("SELECT * FROM ({query}) AS {alias}");
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .map_err(|e| PgError::new(SqlState::SYNTAX_ERROR, e.to_string()))?;
    let Some(ast::Statement::Query(q)) = parsed.into_iter().next() else {
        return Err(PgError::internal("window table function rewrite"));
    };
    let ast::SetExpr::Select(select) = *q.body else {
        return Err(PgError::internal("window table function rewrite"));
    };
    select
        .from
        .into_iter()
        .next()
        .map(|t| t.relation)
        .ok_or_else(|| PgError::internal("window table function rewrite"))
}

/// `count` windows of `size` per row, starting `slide` apart (aligned to 1970 + `offset`):
/// branch `i` is the window that starts `i` slides before the row's slide-aligned time.
fn windows(
    relation: &ast::ObjectName,
    ts: &Expr,
    slide: i64,
    size: i64,
    count: i64,
    offset: i64,
) -> String {
    let aligned = if offset == 0 {
        format!("date_bin(INTERVAL '{slide} microseconds', {ts})")
    } else {
        format!(
            "date_bin(INTERVAL '{slide} microseconds', {ts} - INTERVAL '{offset} microseconds') \
             + INTERVAL '{offset} microseconds'"
        )
    };
    (0..count)
        .map(|i| {
            let start = if i == 0 {
                aligned.clone()
            } else {
                format!("{aligned} - INTERVAL '{} microseconds'", i * slide)
            };
            format!(
                "SELECT *, {start} AS window_start, {start} + INTERVAL '{size} microseconds' AS window_end FROM {relation}"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> Result<String, PgError> {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        rewrite(&mut stmts[0])?;
        Ok(stmts[0].to_string())
    }

    #[test]
    fn tumble_and_hop() {
        let t = rewritten(
            "SELECT window_start, count(*) FROM TUMBLE(bids, ts, INTERVAL '10' SECOND) GROUP BY 1",
        )
        .unwrap();
        assert!(
            t.contains("date_bin(INTERVAL '10000000 microseconds', ts) AS window_start"),
            "{t}"
        );
        assert!(t.contains(") AS bids GROUP BY"), "{t}");
        let h = rewritten(
            "SELECT * FROM HOP(bids, ts, INTERVAL '2 seconds', INTERVAL '10 seconds') AS h",
        )
        .unwrap();
        assert_eq!(h.matches("UNION ALL").count(), 4, "{h}");
        assert!(h.ends_with("AS h"), "{h}");
        assert_eq!(
            rewritten("SELECT * FROM HOP(b, ts, INTERVAL '3 seconds', INTERVAL '10 seconds')")
                .unwrap_err()
                .sqlstate,
            SqlState::FEATURE_NOT_SUPPORTED
        );
        assert_eq!(
            rewritten("SELECT * FROM TUMBLE(b, ts)")
                .unwrap_err()
                .sqlstate,
            SqlState::UNDEFINED_FUNCTION
        );
        let o = rewritten(
            "SELECT * FROM TUMBLE(b, ts, INTERVAL '1 day', INTERVAL '32 hours')",
        )
        .unwrap();
        assert!(
            o.contains("date_bin(INTERVAL '86400000000 microseconds', ts - INTERVAL '28800000000 microseconds') + INTERVAL '28800000000 microseconds' AS window_start"),
            "{o}"
        );
        let ho = rewritten(
            "SELECT * FROM HOP(b, ts, INTERVAL '2 seconds', INTERVAL '4 seconds', INTERVAL '1 second')",
        )
        .unwrap();
        assert_eq!(ho.matches("ts - INTERVAL '1000000 microseconds'").count(), 4, "{ho}");
        assert_eq!(
            rewritten("SELECT * FROM TUMBLE(b, ts, INTERVAL '1 day', 5)")
                .unwrap_err()
                .sqlstate,
            SqlState::FEATURE_NOT_SUPPORTED
        );
        let s = rewritten(
            "SELECT s.user_id, window_start, count(*) FROM SESSION(clicks, ts, INTERVAL '5 minutes') AS s \
             GROUP BY 1, window_start, window_end",
        )
        .unwrap();
        assert!(
            s.contains("session_start(ts, INTERVAL '300000000 microseconds') OVER (PARTITION BY user_id ORDER BY ts) AS window_start"),
            "{s}"
        );
        assert!(s.contains("FROM clicks) AS s GROUP BY"), "{s}");
        let global = rewritten("SELECT window_start FROM SESSION(c, ts, INTERVAL '1 minute') GROUP BY 1").unwrap();
        assert!(global.contains("OVER (ORDER BY ts)"), "{global}");
        assert_eq!(
            rewritten("SELECT k.x, count(*) FROM SESSION(c, ts, INTERVAL '1 minute') JOIN k ON true GROUP BY k.x")
                .unwrap_err()
                .sqlstate,
            SqlState::FEATURE_NOT_SUPPORTED
        );
        // Other table functions are left alone.
        let g = rewritten("SELECT * FROM generate_series(1, 3)").unwrap();
        assert!(g.contains("generate_series(1, 3)"), "{g}");
    }
}
