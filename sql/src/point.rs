//! Statements that name their rows by key: the shapes the server answers with a direct store
//! lookup instead of planning a query (see `docs/design/20261203_point_statements.md`).
//!
//! Recognition is syntactic and conservative: anything beyond the plain shape (a function, a
//! cast, a join, ORDER BY, RETURNING, …) is not a point statement and takes the general path.
//! The server then binds the shape against the catalog and may still decline it (a relation
//! that is not a table or view, conditions that do not cover the key, literal types that do
//! not match exactly), which also leaves the statement to the general path. Either way the
//! answer is the same; only its cost differs.

use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, Expr, GroupByExpr, SelectItem, SetExpr, TableFactor, TableWithJoins,
    UnaryOperator, Value,
};

use crate::words::{ident, object_name};

/// A value a point statement compares with or assigns: a literal or a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    /// `$n`, as its 0-based index.
    Param(usize),
    /// A numeric literal as written (with its sign).
    Number(String),
    /// A string literal.
    Text(String),
    Bool(bool),
}

/// An assigned value: a value, a column of the row, or integer arithmetic over them.
#[derive(Debug, Clone, PartialEq)]
pub enum PointExpr {
    Value(PointValue),
    Column(String),
    Arith(Box<PointExpr>, ArithOp, Box<PointExpr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
}

/// `SELECT cols FROM relation WHERE c1 = v1 AND …`.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSelect {
    /// The relation's normalized name.
    pub relation: String,
    /// (column, output name) in output order; `None` for `*`.
    pub columns: Option<Vec<(String, String)>>,
    /// Equality conditions (column, value), at least one.
    pub conditions: Vec<(String, PointValue)>,
}

/// `UPDATE table SET c = expr, … WHERE k1 = v1 AND …` or `DELETE FROM table WHERE …`
/// (no FROM/USING, no RETURNING).
#[derive(Debug, Clone, PartialEq)]
pub struct PointWrite {
    pub table: String,
    pub conditions: Vec<(String, PointValue)>,
    /// UPDATE's assignments (column, new value); empty for DELETE.
    pub assignments: Vec<(String, PointExpr)>,
}

/// One value of an INSERT's VALUES row that the server converts without planning.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertValue {
    Value(PointValue),
    Null,
    /// `CURRENT_TIMESTAMP`, `now()`, `LOCALTIMESTAMP`: the statement's start.
    Now,
}

/// The rows of an INSERT's `VALUES` source when every value is a literal, a parameter,
/// NULL or the current time; `None` for any other source.
pub fn insert_values(source: &ast::Query) -> Option<Vec<Vec<InsertValue>>> {
    if source.with.is_some()
        || source.order_by.is_some()
        || source.limit_clause.is_some()
        || source.fetch.is_some()
        || !source.locks.is_empty()
        || !source.pipe_operators.is_empty()
    {
        return None;
    }
    let SetExpr::Values(values) = source.body.as_ref() else {
        return None;
    };
    values
        .rows
        .iter()
        .map(|row| row.iter().map(insert_value).collect())
        .collect()
}

/// The width of a `VALUES` source's rows (its first row's).
pub fn values_width(source: &ast::Query) -> Option<usize> {
    match source.body.as_ref() {
        SetExpr::Values(v) => v.rows.first().map(|r| r.len()),
        _ => None,
    }
}

fn insert_value(e: &Expr) -> Option<InsertValue> {
    if let Some(v) = value(e) {
        return Some(InsertValue::Value(v));
    }
    match e {
        Expr::Value(v) if matches!(v.value, Value::Null) => Some(InsertValue::Null),
        Expr::Function(f) if f.over.is_none() && f.filter.is_none() && f.within_group.is_empty() => {
            let [part] = f.name.0.as_slice() else {
                return None;
            };
            let name = part.as_ident()?.value.to_ascii_lowercase();
            let no_args = match &f.args {
                ast::FunctionArguments::None => name != "now",
                ast::FunctionArguments::List(l) => l.args.is_empty() && name == "now",
                ast::FunctionArguments::Subquery(_) => false,
            };
            let known = matches!(name.as_str(), "current_timestamp" | "now" | "localtimestamp");
            (no_args && known).then_some(InsertValue::Now)
        }
        Expr::Nested(e) => insert_value(e),
        _ => None,
    }
}

/// The point shape of a query statement, if it has one.
pub fn point_select(stmt: &ast::Statement) -> Option<PointSelect> {
    let ast::Statement::Query(q) = stmt else {
        return None;
    };
    if q.with.is_some()
        || q.order_by.is_some()
        || q.limit_clause.is_some()
        || q.fetch.is_some()
        || !q.locks.is_empty()
        || q.for_clause.is_some()
        || q.settings.is_some()
        || q.format_clause.is_some()
        || !q.pipe_operators.is_empty()
    {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let plain_group = matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if s.distinct.is_some()
        || s.top.is_some()
        || s.into.is_some()
        || s.exclude.is_some()
        || !s.lateral_views.is_empty()
        || s.prewhere.is_some()
        || !s.connect_by.is_empty()
        || !plain_group
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || s.having.is_some()
        || !s.named_window.is_empty()
        || s.qualify.is_some()
        || s.value_table_mode.is_some()
        || s.select_modifiers.is_some()
        || !s.optimizer_hints.is_empty()
    {
        return None;
    }
    let [from] = s.from.as_slice() else {
        return None;
    };
    let (relation, qualifier) = relation_of(from)?;
    let mut columns = Some(Vec::with_capacity(s.projection.len()));
    for item in &s.projection {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let c = column(e, &qualifier)?;
                columns.as_mut()?.push((c.clone(), c));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let c = column(expr, &qualifier)?;
                columns.as_mut()?.push((c, ident(alias)));
            }
            SelectItem::Wildcard(o) if s.projection.len() == 1 && plain_wildcard(o) => {
                columns = None;
            }
            _ => return None,
        }
    }
    let conditions = conditions(s.selection.as_ref()?, &qualifier)?;
    Some(PointSelect {
        relation,
        columns,
        conditions,
    })
}

/// The point shape of an UPDATE or DELETE, if it has one.
pub fn point_write(stmt: &ast::Statement) -> Option<PointWrite> {
    match stmt {
        ast::Statement::Update(u) => {
            if u.from.is_some()
                || u.returning.is_some()
                || u.output.is_some()
                || u.or.is_some()
                || !u.order_by.is_empty()
                || u.limit.is_some()
            {
                return None;
            }
            let (table, qualifier) = relation_of(&u.table)?;
            let mut assignments = Vec::with_capacity(u.assignments.len());
            for a in &u.assignments {
                let ast::AssignmentTarget::ColumnName(name) = &a.target else {
                    return None;
                };
                let [part] = name.0.as_slice() else {
                    return None;
                };
                let col = ident(part.as_ident()?);
                if assignments.iter().any(|(c, _)| c == &col) {
                    return None;
                }
                assignments.push((col, expr(&a.value, &qualifier)?));
            }
            let conditions = conditions(u.selection.as_ref()?, &qualifier)?;
            Some(PointWrite {
                table,
                conditions,
                assignments,
            })
        }
        ast::Statement::Delete(d) => {
            if !d.tables.is_empty()
                || d.using.is_some()
                || d.returning.is_some()
                || d.output.is_some()
                || !d.order_by.is_empty()
                || d.limit.is_some()
            {
                return None;
            }
            let from = match &d.from {
                ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
            };
            let [target] = from.as_slice() else {
                return None;
            };
            let (table, qualifier) = relation_of(target)?;
            let conditions = conditions(d.selection.as_ref()?, &qualifier)?;
            Some(PointWrite {
                table,
                conditions,
                assignments: Vec::new(),
            })
        }
        _ => None,
    }
}

/// A plain table reference: its normalized name and what its columns may be qualified with
/// (its alias, else its name).
fn relation_of(t: &TableWithJoins) -> Option<(String, String)> {
    if !t.joins.is_empty() {
        return None;
    }
    let TableFactor::Table {
        name,
        alias,
        args,
        with_hints,
        version,
        with_ordinality,
        partitions,
        json_path,
        sample,
        index_hints,
    } = &t.relation
    else {
        return None;
    };
    if args.is_some()
        || !with_hints.is_empty()
        || version.is_some()
        || *with_ordinality
        || !partitions.is_empty()
        || json_path.is_some()
        || sample.is_some()
        || !index_hints.is_empty()
    {
        return None;
    }
    let relation = object_name(name).ok()?;
    let qualifier = match alias {
        Some(a) if !a.columns.is_empty() => return None,
        Some(a) => ident(&a.name),
        None => relation.clone(),
    };
    Some((relation, qualifier))
}

fn plain_wildcard(o: &ast::WildcardAdditionalOptions) -> bool {
    o.opt_ilike.is_none()
        && o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
        && o.opt_alias.is_none()
}

/// `col` or `qualifier.col`.
fn column(e: &Expr, qualifier: &str) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident(i)),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] if ident(q) == qualifier => Some(ident(c)),
            _ => None,
        },
        Expr::Nested(e) => column(e, qualifier),
        _ => None,
    }
}

fn value(e: &Expr) -> Option<PointValue> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, false) => Some(PointValue::Number(n.clone())),
            Value::SingleQuotedString(s) => Some(PointValue::Text(s.clone())),
            Value::Boolean(b) => Some(PointValue::Bool(*b)),
            Value::Placeholder(p) => {
                let n: usize = p.strip_prefix('$')?.parse().ok()?;
                n.checked_sub(1).map(PointValue::Param)
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, false) if !n.starts_with('-') => {
                    Some(PointValue::Number(format!("-{n}")))
                }
                _ => None,
            },
            _ => None,
        },
        Expr::Nested(e) => value(e),
        _ => None,
    }
}

fn expr(e: &Expr, qualifier: &str) -> Option<PointExpr> {
    if let Some(v) = value(e) {
        return Some(PointExpr::Value(v));
    }
    if let Some(c) = column(e, qualifier) {
        return Some(PointExpr::Column(c));
    }
    match e {
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Plus => ArithOp::Add,
                BinaryOperator::Minus => ArithOp::Sub,
                BinaryOperator::Multiply => ArithOp::Mul,
                _ => return None,
            };
            Some(PointExpr::Arith(
                Box::new(expr(left, qualifier)?),
                op,
                Box::new(expr(right, qualifier)?),
            ))
        }
        Expr::Nested(e) => expr(e, qualifier),
        _ => None,
    }
}

/// `c1 = v1 AND c2 = v2 …` (either side of each `=`), each column once.
fn conditions(e: &Expr, qualifier: &str) -> Option<Vec<(String, PointValue)>> {
    let mut out = Vec::new();
    collect(e, qualifier, &mut out)?;
    Some(out)
}

fn collect(e: &Expr, qualifier: &str, out: &mut Vec<(String, PointValue)>) -> Option<()> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            collect(left, qualifier, out)?;
            collect(right, qualifier, out)
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let (c, v) = match (column(left, qualifier), value(right)) {
                (Some(c), Some(v)) => (c, v),
                _ => (column(right, qualifier)?, value(left)?),
            };
            if out.iter().any(|(d, _)| d == &c) {
                return None;
            }
            out.push((c, v));
            Some(())
        }
        Expr::Nested(e) => collect(e, qualifier, out),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(sql: &str) -> ast::Statement {
        crate::ast_parse::parse(sql).unwrap().remove(0)
    }

    #[test]
    fn point_selects_are_recognized() {
        let p = point_select(&stmt("SELECT v, k AS key FROM Kv WHERE k = $1")).unwrap();
        assert_eq!(p.relation, "kv");
        assert_eq!(
            p.columns,
            Some(vec![("v".into(), "v".into()), ("k".into(), "key".into())])
        );
        assert_eq!(p.conditions, vec![("k".into(), PointValue::Param(0))]);
        let p = point_select(&stmt("select * from public.t x where 5 = x.a and (x.b = -3)")).unwrap();
        assert_eq!(p.columns, None);
        assert_eq!(
            p.conditions,
            vec![
                ("a".into(), PointValue::Number("5".into())),
                ("b".into(), PointValue::Number("-3".into()))
            ]
        );
    }

    #[test]
    fn other_selects_are_not() {
        for sql in [
            "SELECT v FROM kv",
            "SELECT v FROM kv WHERE k = 1 OR k = 2",
            "SELECT v FROM kv WHERE k > 1",
            "SELECT v FROM kv WHERE k = 1 AND k = 2",
            "SELECT v FROM kv WHERE k = 1 ORDER BY v",
            "SELECT v FROM kv WHERE k = 1 LIMIT 1",
            "SELECT DISTINCT v FROM kv WHERE k = 1",
            "SELECT v + 1 FROM kv WHERE k = 1",
            "SELECT count(*) FROM kv WHERE k = 1",
            "SELECT v FROM kv, u WHERE k = 1",
            "SELECT v FROM kv x WHERE kv.k = 1",
            "SELECT v FROM kv WHERE k = 1::int",
            "SELECT *, v FROM kv WHERE k = 1",
            "SELECT v FROM kv WHERE k = 1 FOR UPDATE",
            "WITH w AS (SELECT 1) SELECT v FROM kv WHERE k = 1",
            "SELECT v FROM other.kv WHERE k = 1",
        ] {
            assert_eq!(point_select(&stmt(sql)), None, "{sql}");
        }
    }

    #[test]
    fn plain_values_are_recognized() {
        let ast::Statement::Insert(ins) = stmt(
            "INSERT INTO h VALUES (1, 'a', $1, NULL, CURRENT_TIMESTAMP, now(), -2.5)",
        ) else {
            panic!("not an insert")
        };
        let rows = insert_values(ins.source.as_ref().unwrap()).unwrap();
        assert_eq!(
            rows[0],
            vec![
                InsertValue::Value(PointValue::Number("1".into())),
                InsertValue::Value(PointValue::Text("a".into())),
                InsertValue::Value(PointValue::Param(0)),
                InsertValue::Null,
                InsertValue::Now,
                InsertValue::Now,
                InsertValue::Value(PointValue::Number("-2.5".into())),
            ]
        );
        for sql in [
            "INSERT INTO h VALUES (1 + 1)",
            "INSERT INTO h VALUES (now(1))",
            "INSERT INTO h VALUES (current_date)",
            "INSERT INTO h SELECT 1",
        ] {
            let ast::Statement::Insert(ins) = stmt(sql) else {
                panic!("not an insert")
            };
            assert_eq!(insert_values(ins.source.as_ref().unwrap()), None, "{sql}");
        }
    }

    #[test]
    fn point_writes_are_recognized() {
        let p = point_write(&stmt("UPDATE t SET v = v + $1, w = 'x' WHERE id = $2")).unwrap();
        assert_eq!(p.table, "t");
        assert_eq!(
            p.assignments[0],
            (
                "v".into(),
                PointExpr::Arith(
                    Box::new(PointExpr::Column("v".into())),
                    ArithOp::Add,
                    Box::new(PointExpr::Value(PointValue::Param(0)))
                )
            )
        );
        assert_eq!(p.conditions, vec![("id".into(), PointValue::Param(1))]);
        let p = point_write(&stmt("DELETE FROM t AS x WHERE x.id = 4")).unwrap();
        assert!(p.assignments.is_empty());
        for sql in [
            "UPDATE t SET v = 1",
            "UPDATE t SET v = 1 WHERE false",
            "UPDATE t SET v = 1 WHERE id = 1 RETURNING v",
            "UPDATE t SET v = abs(v) WHERE id = 1",
            "UPDATE t SET v = v / 2 WHERE id = 1",
            "UPDATE t SET v = 1 FROM u WHERE id = 1",
            "DELETE FROM t WHERE id IN (1, 2)",
            "DELETE FROM t USING u WHERE id = 1",
        ] {
            assert_eq!(point_write(&stmt(sql)), None, "{sql}");
        }
    }
}
