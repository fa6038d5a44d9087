//! Binding INSERT, `ON CONFLICT` and `RETURNING` for execution by the server.
//!
//! An INSERT becomes its source query (VALUES or SELECT, planned as a read over the statement's
//! snapshot), the target columns it fills, what to do with rows whose primary key is taken,
//! and the expressions it returns. The server runs the source, converts its columns to the
//! target's types, and turns the rows into one write set (`server/src/query/insert.rs`).

use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, ConflictTarget, OnConflictAction, OnInsert, SelectItem, SetExpr,
    TableObject,
};
use freshet_common::{PgError, SqlState};

use crate::words::{ident, object_name};

/// An INSERT bound for execution.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertPlan {
    /// The target table's name, normalized.
    pub table: String,
    /// What the target's columns are called in `ON CONFLICT … DO UPDATE` and `RETURNING`:
    /// its alias, or its name.
    pub alias: String,
    /// The target columns named by the statement, normalized; empty: every column in order.
    pub columns: Vec<String>,
    /// The rows to insert; `None` for `DEFAULT VALUES`. `DEFAULT` in a VALUES list is NULL
    /// here, its place listed in [`InsertPlan::defaults`].
    pub source: Option<Box<ast::Query>>,
    /// (row, position) of each `DEFAULT` in a VALUES source: those values are the column's
    /// default.
    pub defaults: Vec<(usize, usize)>,
    pub on_conflict: Option<OnConflict>,
    pub returning: Option<Vec<ReturningItem>>,
}

/// `ON CONFLICT [(columns)] DO …`.
#[derive(Debug, Clone, PartialEq)]
pub struct OnConflict {
    /// The conflict target's columns (normalized); empty when none was given.
    pub target: Vec<String>,
    pub action: ConflictAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConflictAction {
    Nothing,
    /// `DO UPDATE SET column = expr, … [WHERE condition]`: expressions over the target's
    /// columns and `excluded`'s (the row proposed for insertion).
    Update {
        assignments: Vec<(String, String)>,
        selection: Option<String>,
    },
}

/// One item of a `RETURNING` list.
#[derive(Debug, Clone, PartialEq)]
pub enum ReturningItem {
    /// `*` or `alias.*`: every column of the target.
    Wildcard,
    /// An expression (SQL text) and the column name it is returned under.
    Expr { sql: String, name: String },
}

/// Binds an INSERT.
pub fn bind_insert(ins: &ast::Insert) -> Result<InsertPlan, PgError> {
    if ins.or.is_some()
        || ins.ignore
        || ins.overwrite
        || ins.partitioned.is_some()
        || !ins.assignments.is_empty()
        || ins.replace_into
        || ins.insert_alias.is_some()
        || ins.output.is_some()
    {
        return Err(PgError::not_supported(format!(
            "this form of INSERT: {ins}"
        )));
    }
    let TableObject::TableName(name) = &ins.table else {
        return Err(PgError::not_supported("INSERT into a table function"));
    };
    let table = object_name(name)?;
    let alias = match &ins.table_alias {
        Some(a) => ident(&a.alias),
        None => table.clone(),
    };
    let columns = ins
        .columns
        .iter()
        .map(|c| {
            c.0.last()
                .and_then(|p| p.as_ident())
                .map(ident)
                .ok_or_else(|| PgError::internal("empty column name"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut defaults = Vec::new();
    let source = ins.source.clone().map(|mut q| {
        defaults = defaults_to_null(&mut q);
        q
    });
    if let Some(q) = &source {
        // The rows must come in the order the list gives them for DEFAULT's places to hold.
        if !defaults.is_empty()
            && (q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some())
        {
            return Err(PgError::not_supported(
                "DEFAULT in a VALUES list with ORDER BY, LIMIT or FETCH",
            ));
        }
    }
    let on_conflict = match &ins.on {
        None => None,
        Some(OnInsert::OnConflict(c)) => Some(bind_on_conflict(c, &alias)?),
        Some(_) => return Err(PgError::not_supported("ON DUPLICATE KEY UPDATE")),
    };
    let returning = ins.returning.as_deref().map(bind_returning).transpose()?;
    Ok(InsertPlan {
        table,
        alias,
        columns,
        source,
        defaults,
        on_conflict,
        returning,
    })
}

/// Replaces `DEFAULT` in the rows of a VALUES source with NULL; returns where they were.
fn defaults_to_null(q: &mut ast::Query) -> Vec<(usize, usize)> {
    let mut at = Vec::new();
    if let SetExpr::Values(values) = q.body.as_mut() {
        for (r, row) in values.rows.iter_mut().enumerate() {
            for (c, e) in row.iter_mut().enumerate() {
                if matches!(e, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
                {
                    *e = ast::Expr::Value(ast::Value::Null.into());
                    at.push((r, c));
                }
            }
        }
    }
    at
}

fn bind_on_conflict(c: &ast::OnConflict, alias: &str) -> Result<OnConflict, PgError> {
    let target = match &c.conflict_target {
        None => Vec::new(),
        Some(ConflictTarget::Columns(cols)) => cols.iter().map(ident).collect(),
        Some(ConflictTarget::OnConstraint(_)) => {
            return Err(PgError::not_supported("ON CONFLICT ON CONSTRAINT"))
        }
    };
    let action = match &c.action {
        OnConflictAction::DoNothing => ConflictAction::Nothing,
        OnConflictAction::DoUpdate(u) => {
            if target.is_empty() {
                return Err(PgError::new(
                    SqlState::SYNTAX_ERROR,
                    "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                )
                .with_hint("For example, ON CONFLICT (column_name)."));
            }
            let mut assignments = Vec::with_capacity(u.assignments.len());
            for a in &u.assignments {
                let AssignmentTarget::ColumnName(name) = &a.target else {
                    return Err(PgError::not_supported(
                        "ON CONFLICT DO UPDATE SET (columns) = (…)",
                    ));
                };
                let parts: Vec<String> = name
                    .0
                    .iter()
                    .filter_map(|p| p.as_ident())
                    .map(ident)
                    .collect();
                let column = match parts.as_slice() {
                    [c] => c.clone(),
                    [a, c] if a == alias => c.clone(),
                    _ => {
                        return Err(PgError::new(
                            SqlState::UNDEFINED_COLUMN,
                            format!("column \"{name}\" does not exist"),
                        ))
                    }
                };
                if assignments.iter().any(|(c, _)| *c == column) {
                    return Err(PgError::new(
                        SqlState::SYNTAX_ERROR,
                        format!("multiple assignments to same column \"{column}\""),
                    ));
                }
                assignments.push((column, a.value.to_string()));
            }
            ConflictAction::Update {
                assignments,
                selection: u.selection.as_ref().map(ToString::to_string),
            }
        }
    };
    Ok(OnConflict { target, action })
}

/// Binds a `RETURNING` list.
pub fn bind_returning(items: &[SelectItem]) -> Result<Vec<ReturningItem>, PgError> {
    items
        .iter()
        .map(|item| {
            Ok(match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    ReturningItem::Wildcard
                }
                SelectItem::UnnamedExpr(e) => ReturningItem::Expr {
                    sql: e.to_string(),
                    name: output_name(e),
                },
                SelectItem::ExprWithAlias { expr, alias } => ReturningItem::Expr {
                    sql: expr.to_string(),
                    name: ident(alias),
                },
                other => {
                    return Err(PgError::not_supported(format!("RETURNING {other}")));
                }
            })
        })
        .collect()
}

/// The column name PostgreSQL gives an unaliased expression.
fn output_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => ident(i),
        ast::Expr::CompoundIdentifier(parts) => {
            parts.last().map(ident).unwrap_or_else(|| "?column?".into())
        }
        ast::Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(ident)
            .unwrap_or_else(|| "?column?".into()),
        ast::Expr::Cast { expr, .. } | ast::Expr::Nested(expr) => output_name(expr),
        _ => "?column?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(sql: &str) -> Result<InsertPlan, PgError> {
        let stmt = crate::ast_parse::parse(sql).unwrap().remove(0);
        let ast::Statement::Insert(ins) = stmt else {
            panic!("not an INSERT: {sql}")
        };
        bind_insert(&ins)
    }

    #[test]
    fn insert_binds_columns_conflicts_and_returning() {
        let p = bind(
            "INSERT INTO T AS x (Id, v) VALUES (1, DEFAULT) ON CONFLICT (id) DO UPDATE \
             SET v = x.v + excluded.v WHERE x.v < 10 RETURNING *, id AS k, v + 1, upper(s)",
        )
        .unwrap();
        assert_eq!(p.table, "t");
        assert_eq!(p.alias, "x");
        assert_eq!(p.columns, vec!["id", "v"]);
        assert_eq!(p.source.unwrap().to_string(), "VALUES (1, NULL)");
        assert_eq!(p.defaults, vec![(0, 1)]);
        let c = p.on_conflict.unwrap();
        assert_eq!(c.target, vec!["id"]);
        assert_eq!(
            c.action,
            ConflictAction::Update {
                assignments: vec![("v".into(), "x.v + excluded.v".into())],
                selection: Some("x.v < 10".into()),
            }
        );
        let names: Vec<String> = p
            .returning
            .unwrap()
            .into_iter()
            .map(|r| match r {
                ReturningItem::Wildcard => "*".into(),
                ReturningItem::Expr { name, .. } => name,
            })
            .collect();
        assert_eq!(names, vec!["*", "k", "?column?", "upper"]);
    }

    #[test]
    fn insert_refuses_what_it_cannot_do() {
        assert!(bind("INSERT INTO t VALUES (1) ON CONFLICT DO UPDATE SET v = 1").is_err());
        assert!(bind("INSERT INTO t VALUES (1) ON CONFLICT ON CONSTRAINT c DO NOTHING").is_err());
        assert!(
            bind("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 1, v = 2").is_err()
        );
        assert!(bind("INSERT INTO t DEFAULT VALUES")
            .unwrap()
            .source
            .is_none());
    }
}
