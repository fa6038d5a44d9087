//! Binding DELETE and UPDATE to a read query.
//!
//! A DELETE or UPDATE is planned as a SELECT over the statement's snapshot that yields, for
//! every target row the statement changes, the row itself, its store key (a hidden column of
//! the target as the server's [`DmlPlan::target_schema`] lists it) and, for UPDATE, the new
//! values. The server runs that query and applies its rows as one write set when the statement
//! executes: nothing is written while the statement is planned, so `EXPLAIN` writes nothing
//! and whatever the optimizer does to the WHERE clause cannot widen what is changed.
//! Subqueries, `DELETE … USING`, `UPDATE … FROM` and aliases are ordinary parts of that query.

use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, FromTable, ObjectName, TableFactor, TableWithJoins, UpdateTableFromKind,
};
use freshet_common::{PgError, SqlState};

use crate::words::{ident, object_name};

/// Which statement a [`DmlPlan`] carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmlKind {
    Delete,
    Update,
}

impl DmlKind {
    /// The command tag.
    pub fn tag(self) -> &'static str {
        match self {
            DmlKind::Delete => "DELETE",
            DmlKind::Update => "UPDATE",
        }
    }
}

/// A DELETE or UPDATE bound to its read query.
#[derive(Debug, Clone, PartialEq)]
pub struct DmlPlan {
    pub kind: DmlKind,
    /// The target table's name, normalized.
    pub table: String,
    /// `SELECT alias.*, (new value 1), … FROM <target_schema>.table AS alias [, …] [WHERE …]`:
    /// its columns are the target's columns, then the hidden key column the target schema's
    /// tables carry last, then one new value per [`DmlPlan::assignments`] entry.
    pub query: String,
    /// UPDATE: the assigned columns' names (normalized), in the query's order.
    pub assignments: Vec<String>,
    /// What the target's columns are called in `RETURNING`: its alias, or its name.
    pub alias: String,
    /// `RETURNING`: over the deleted rows, or the updated rows' new values.
    pub returning: Option<Vec<crate::insert::ReturningItem>>,
    /// The statement's point shape, when it names its one row by key (see `point.rs`).
    pub point: Option<crate::point::PointWrite>,
}

/// `EXPLAIN [ANALYZE]` of a DELETE or UPDATE.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainDml {
    pub plan: DmlPlan,
    /// `EXPLAIN ANALYZE` runs the statement, as in PostgreSQL.
    pub analyze: bool,
}

/// Binds a DELETE or UPDATE; `target_schema` is the schema whose tables carry the hidden key
/// column. Other statements give `None`.
pub fn bind_dml(stmt: &ast::Statement, target_schema: &str) -> Result<Option<DmlPlan>, PgError> {
    let mut plan = match stmt {
        ast::Statement::Delete(d) => bind_delete(d, target_schema)?,
        ast::Statement::Update(u) => bind_update(u, target_schema)?,
        _ => return Ok(None),
    };
    plan.point = crate::point::point_write(stmt);
    Ok(Some(plan))
}

/// `DELETE FROM table` (every row): what TRUNCATE stages inside a transaction block.
pub fn delete_all(table: &str, target_schema: &str) -> DmlPlan {
    let alias = ast::Ident::with_quote('"', table);
    DmlPlan {
        kind: DmlKind::Delete,
        table: table.to_owned(),
        query: read_query(table, &alias, &[], &[], None, target_schema),
        assignments: Vec::new(),
        alias: table.to_owned(),
        returning: None,
        point: None,
    }
}

fn bind_delete(d: &ast::Delete, target_schema: &str) -> Result<DmlPlan, PgError> {
    if !d.tables.is_empty() {
        return Err(PgError::not_supported("DELETE of several tables"));
    }
    if !d.order_by.is_empty() || d.limit.is_some() {
        return Err(PgError::not_supported("DELETE with ORDER BY or LIMIT"));
    }
    let from = match &d.from {
        FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
    };
    let [target] = from.as_slice() else {
        return Err(PgError::not_supported("DELETE from several tables"));
    };
    let (table, alias) = target_of(target)?;
    let query = read_query(
        &table,
        &alias,
        &[],
        d.using.as_deref().unwrap_or_default(),
        d.selection.as_ref(),
        target_schema,
    );
    Ok(DmlPlan {
        kind: DmlKind::Delete,
        table,
        query,
        assignments: Vec::new(),
        alias: ident(&alias),
        returning: d
            .returning
            .as_deref()
            .map(crate::insert::bind_returning)
            .transpose()?,
        point: None,
    })
}

fn bind_update(u: &ast::Update, target_schema: &str) -> Result<DmlPlan, PgError> {
    if !u.order_by.is_empty() || u.limit.is_some() || u.or.is_some() {
        return Err(PgError::not_supported("UPDATE with ORDER BY, LIMIT or OR"));
    }
    let (table, alias) = target_of(&u.table)?;
    let from: &[TableWithJoins] = match &u.from {
        None => &[],
        Some(UpdateTableFromKind::AfterSet(f)) => f,
        Some(UpdateTableFromKind::BeforeSet(_)) => {
            return Err(PgError::not_supported("UPDATE FROM before SET"))
        }
    };
    let mut assignments = Vec::with_capacity(u.assignments.len());
    let mut values = Vec::with_capacity(u.assignments.len());
    for a in &u.assignments {
        let AssignmentTarget::ColumnName(name) = &a.target else {
            return Err(PgError::not_supported("UPDATE … SET (columns) = (…)"));
        };
        let column = column_of(name, &alias)?;
        if assignments.contains(&column) {
            return Err(PgError::new(
                SqlState::SYNTAX_ERROR,
                format!("multiple assignments to same column \"{column}\""),
            ));
        }
        if matches!(&a.value, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
        {
            return Err(PgError::not_supported("SET column = DEFAULT"));
        }
        assignments.push(column);
        values.push(&a.value);
    }
    let query = read_query(
        &table,
        &alias,
        &values,
        from,
        u.selection.as_ref(),
        target_schema,
    );
    Ok(DmlPlan {
        kind: DmlKind::Update,
        table,
        query,
        assignments,
        alias: ident(&alias),
        returning: u
            .returning
            .as_deref()
            .map(crate::insert::bind_returning)
            .transpose()?,
        point: None,
    })
}

/// The target table's normalized name and the alias its columns are read under (the table's
/// own name when the statement gives none).
fn target_of(t: &TableWithJoins) -> Result<(String, ast::Ident), PgError> {
    if !t.joins.is_empty() {
        return Err(PgError::not_supported(
            "a join in the target of DELETE or UPDATE",
        ));
    }
    let TableFactor::Table {
        name, alias, args, ..
    } = &t.relation
    else {
        return Err(PgError::not_supported(format!(
            "{} as the target of DELETE or UPDATE",
            t.relation
        )));
    };
    if args.is_some() {
        return Err(PgError::not_supported("a table function as a DML target"));
    }
    let table = object_name(name)?;
    let alias = match alias {
        Some(a) if !a.columns.is_empty() => {
            return Err(PgError::not_supported("column aliases on a DML target"))
        }
        Some(a) => a.name.clone(),
        None => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .cloned()
            .ok_or_else(|| PgError::internal("empty table name"))?,
    };
    Ok((table, alias))
}

/// The column an UPDATE assigns: `col`, or `alias.col` naming the target.
fn column_of(name: &ObjectName, alias: &ast::Ident) -> Result<String, PgError> {
    let parts: Vec<&ast::Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
    match parts.as_slice() {
        [c] => Ok(ident(c)),
        [a, c] if ident(a) == ident(alias) => Ok(ident(c)),
        _ => Err(PgError::new(
            SqlState::UNDEFINED_COLUMN,
            format!("column \"{name}\" does not exist"),
        )),
    }
}

fn read_query(
    table: &str,
    alias: &ast::Ident,
    values: &[&ast::Expr],
    from: &[TableWithJoins],
    selection: Option<&ast::Expr>,
    target_schema: &str,
) -> String {
    let mut q = format!("SELECT {alias}.*");
    // Named, so that `SET v = v` does not repeat the target's own column name.
    for (i, v) in values.iter().enumerate() {
        q.push_str(&format!(", ({v}) AS freshet_new_{i}"));
    }
    q.push_str(&format!(
        " FROM {}.{} AS {alias}",
        quote(target_schema),
        quote(table)
    ));
    for f in from {
        q.push_str(&format!(", {f}"));
    }
    if let Some(s) = selection {
        q.push_str(&format!(" WHERE {s}"));
    }
    q
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether `EXPLAIN` options ask to run the statement (`EXPLAIN ANALYZE`, `EXPLAIN (ANALYZE)`).
pub fn explain_analyzes(analyze: bool, options: Option<&[ast::UtilityOption]>) -> bool {
    analyze
        || options.unwrap_or_default().iter().any(|o| {
            o.name.value.eq_ignore_ascii_case("analyze")
                && o.arg.as_ref().is_none_or(|a| {
                    !matches!(
                        a.to_string().to_ascii_lowercase().as_str(),
                        "false" | "off" | "0"
                    )
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(sql: &str) -> DmlPlan {
        let stmt = crate::ast_parse::parse(sql).unwrap().remove(0);
        bind_dml(&stmt, "dml").unwrap().unwrap()
    }

    #[test]
    fn delete_and_update_become_read_queries() {
        let p = bind("DELETE FROM t WHERE false");
        assert_eq!(p.kind, DmlKind::Delete);
        assert_eq!(p.query, "SELECT t.* FROM \"dml\".\"t\" AS t WHERE false");
        let p = bind("DELETE FROM T AS x USING u WHERE x.id = u.id");
        assert_eq!(p.table, "t");
        assert_eq!(
            p.query,
            "SELECT x.* FROM \"dml\".\"t\" AS x, u WHERE x.id = u.id"
        );
        let p = bind("UPDATE t SET v = v + 1, w = (SELECT max(a) FROM u) FROM u WHERE t.id = u.id");
        assert_eq!(p.assignments, vec!["v", "w"]);
        assert_eq!(
            p.query,
            "SELECT t.*, (v + 1) AS freshet_new_0, ((SELECT max(a) FROM u)) AS freshet_new_1 FROM \"dml\".\"t\" AS t, u WHERE t.id = u.id"
        );
    }

    #[test]
    fn refused_forms_say_so() {
        for sql in ["UPDATE t SET v = 1, v = 2", "UPDATE t SET v = DEFAULT"] {
            let stmt = crate::ast_parse::parse(sql).unwrap().remove(0);
            assert!(bind_dml(&stmt, "dml").is_err(), "{sql}");
        }
    }

    #[test]
    fn explain_options() {
        assert!(explain_analyzes(true, None));
        assert!(!explain_analyzes(false, None));
    }
}
