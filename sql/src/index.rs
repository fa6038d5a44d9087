//! `CREATE INDEX` and `DROP INDEX`, bound to names.

use datafusion::sql::sqlparser::ast;
use freshet_common::PgError;

use crate::words::{ident, object_name};

/// `CREATE INDEX [IF NOT EXISTS] [name] ON table (column, …)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateIndexPlan {
    /// `None`: PostgreSQL's default, `<table>_<columns>_idx`.
    pub name: Option<String>,
    pub table: String,
    pub columns: Vec<String>,
    pub if_not_exists: bool,
}

pub(crate) fn bind_create_index(ci: ast::CreateIndex) -> Result<CreateIndexPlan, PgError> {
    if ci.unique {
        return Err(PgError::not_supported(
            "CREATE UNIQUE INDEX (declare UNIQUE in CREATE TABLE)",
        ));
    }
    if ci.predicate.is_some() {
        return Err(PgError::not_supported(
            "partial indexes (CREATE INDEX … WHERE)",
        ));
    }
    if !ci.include.is_empty() {
        return Err(PgError::not_supported("CREATE INDEX … INCLUDE"));
    }
    if let Some(using) = &ci.using {
        let method = using.to_string();
        if !method.eq_ignore_ascii_case("btree") {
            return Err(PgError::not_supported(format!(
                "index access method \"{}\"",
                method.to_lowercase()
            )));
        }
    }
    let columns = ci
        .columns
        .iter()
        .map(|c| match &c.column.expr {
            ast::Expr::Identifier(i) if c.operator_class.is_none() => Ok(ident(i)),
            _ => Err(PgError::not_supported(
                "indexes on expressions or operator classes",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CreateIndexPlan {
        name: ci.name.as_ref().map(object_name).transpose()?,
        table: object_name(&ci.table_name)?,
        columns,
        if_not_exists: ci.if_not_exists,
    })
}
