//! SQL expressions over rows a statement writes: `RETURNING` lists and `ON CONFLICT … DO
//! UPDATE` assignments, evaluated with DataFusion over in-memory batches whose columns are
//! named by qualifier (the target's alias, `excluded`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use freshet_catalog::TableDef;
use freshet_common::{Datum, PgError};
use freshet_sql::df_convert::rows_to_full_batch;
use freshet_sql::error::map_df_error;
use freshet_sql::ReturningItem;

use super::table::table_schema;

/// Rows of one table under a qualifier.
pub struct Qualified<'a> {
    pub qualifier: &'a str,
    pub def: &'a TableDef,
    pub rows: &'a [Vec<Datum>],
}

/// Evaluates each SQL expression in `exprs` over `inputs` (all with the same number of rows,
/// side by side): one array per expression.
pub fn evaluate(
    state: &SessionState,
    inputs: &[Qualified<'_>],
    exprs: &[&str],
) -> Result<Vec<ArrayRef>, PgError> {
    let df = |e| map_df_error(&e);
    let mut schema = DFSchema::empty();
    let mut columns = Vec::new();
    let mut rows = 0;
    for input in inputs {
        let table = table_schema(input.def);
        schema = schema
            .join(&DFSchema::try_from_qualified_schema(input.qualifier, &table).map_err(df)?)
            .map_err(df)?;
        let batch = rows_to_full_batch(input.rows, &Arc::new(table)).map_err(df)?;
        rows = batch.num_rows();
        columns.extend(batch.columns().iter().cloned());
    }
    let batch = RecordBatch::try_new_with_options(
        Arc::new(schema.as_arrow().clone()),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(PgError::internal)?;
    exprs
        .iter()
        .map(|sql| {
            let expr = state.create_logical_expr(sql, &schema).map_err(df)?;
            let physical = state.create_physical_expr(expr, &schema).map_err(df)?;
            physical
                .evaluate(&batch)
                .and_then(|v| v.into_array(rows))
                .map_err(df)
        })
        .collect()
}

/// The `RETURNING` result over `rows` of `def` (called `alias` in the list).
pub fn returning(
    state: &SessionState,
    def: &TableDef,
    alias: &str,
    items: &[ReturningItem],
    rows: &[Vec<Datum>],
) -> Result<(SchemaRef, RecordBatch), PgError> {
    let mut sql = Vec::new();
    let mut names = Vec::new();
    for item in items {
        match item {
            ReturningItem::Wildcard => {
                for c in &def.columns {
                    sql.push(format!(
                        "{}.\"{}\"",
                        quote(alias),
                        c.name.replace('"', "\"\"")
                    ));
                    names.push(c.name.clone());
                }
            }
            ReturningItem::Expr { sql: s, name } => {
                sql.push(s.clone());
                names.push(name.clone());
            }
        }
    }
    let exprs: Vec<&str> = sql.iter().map(String::as_str).collect();
    let arrays = evaluate(
        state,
        &[Qualified {
            qualifier: alias,
            def,
            rows,
        }],
        &exprs,
    )?;
    let schema = Arc::new(Schema::new(
        arrays
            .iter()
            .zip(&names)
            .map(|(a, n)| Field::new(n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new_with_options(
        Arc::clone(&schema),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
    .map_err(PgError::internal)?;
    Ok((schema, batch))
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
