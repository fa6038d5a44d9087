//! SQL expressions over rows a statement writes: `RETURNING` lists and `ON CONFLICT … DO
//! UPDATE` assignments, evaluated with DataFusion over in-memory batches whose columns are
//! named by qualifier (the target's alias, `excluded`).

use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use freshet_catalog::TableDef;
use freshet_common::{Datum, PgError, SqlState};
use freshet_sql::df_convert::rows_to_full_batch;
use freshet_sql::error::map_df_error;
use freshet_sql::ReturningItem;

use crate::coord::engine::table_schema;

/// Rows of one table under a qualifier.
pub struct Qualified<'a> {
    pub qualifier: &'a str,
    pub def: &'a TableDef,
    pub rows: &'a [Vec<Datum>],
}

/// Evaluates each SQL expression in `exprs` over `rows` rows of `inputs` (side by side; none
/// for expressions of no column, such as defaults): one array per expression.
pub fn evaluate(
    state: &SessionState,
    inputs: &[Qualified<'_>],
    exprs: &[&str],
    rows: usize,
) -> Result<Vec<ArrayRef>, PgError> {
    let df = |e| map_df_error(&e);
    let mut schema = DFSchema::empty();
    let mut columns = Vec::new();
    for input in inputs {
        let table = table_schema(input.def);
        schema = schema
            .join(&DFSchema::try_from_qualified_schema(input.qualifier, &table).map_err(df)?)
            .map_err(df)?;
        let batch = rows_to_full_batch(input.rows, &Arc::new(table)).map_err(df)?;
        columns.extend(batch.columns().iter().cloned());
    }
    let batch = RecordBatch::try_new_with_options(
        Arc::new(schema.as_arrow().clone()),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(PgError::internal)?;
    let schema_ref = Arc::new(schema.clone());
    exprs
        .iter()
        .map(|sql| {
            let expr = state.create_logical_expr(sql, &schema).map_err(df)?;
            // Folds now() and friends to the statement's start, as DataFusion's optimizer
            // does for queries.
            let context = SimplifyContext::builder()
                .with_schema(Arc::clone(&schema_ref))
                .with_config_options(Arc::clone(state.config_options()))
                .with_query_execution_start_time(state.execution_props().query_execution_start_time)
                .build();
            let simplifier = ExprSimplifier::new(context);
            let expr = simplifier
                .simplify(simplifier.coerce(expr, &schema).map_err(df)?)
                .map_err(df)?;
            let physical = state
                .create_physical_expr(expr, &schema)
                .and_then(freshet_sql::arith::pg_expr)
                .map_err(df)?;
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
        rows.len(),
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

/// 23514 if a `CHECK` constraint of `def` is false for one of `rows`.
pub fn check_constraints(
    state: &SessionState,
    def: &TableDef,
    rows: &[Vec<Datum>],
) -> Result<(), PgError> {
    if def.checks.is_empty() || rows.is_empty() {
        return Ok(());
    }
    let exprs: Vec<&str> = def.checks.iter().map(|c| c.expr.as_str()).collect();
    let values = evaluate(
        state,
        &[Qualified {
            qualifier: &def.name,
            def,
            rows,
        }],
        &exprs,
        rows.len(),
    )?;
    for (check, v) in def.checks.iter().zip(&values) {
        let v =
            datafusion::arrow::compute::cast(v, &datafusion::arrow::datatypes::DataType::Boolean)
                .map_err(|e| map_df_error(&e.into()))?;
        let v = v
            .as_any()
            .downcast_ref::<datafusion::arrow::array::BooleanArray>()
            .ok_or_else(|| PgError::internal("CHECK result is not boolean"))?;
        if let Some(r) = (0..rows.len()).find(|&r| v.is_valid(r) && !v.value(r)) {
            return Err(PgError::new(
                SqlState::CHECK_VIOLATION,
                format!(
                    "new row for relation \"{}\" violates check constraint \"{}\"",
                    def.name, check.name
                ),
            )
            .on_table(&def.name)
            .on_constraint(&check.name)
            .with_detail(format!(
                "Failing row contains ({}).",
                show_row(def, &rows[r])
            )));
        }
    }
    Ok(())
}

/// A row as PostgreSQL shows it in "Failing row contains (…)": each value's text, `null`.
pub(super) fn show_row(def: &TableDef, row: &[Datum]) -> String {
    use datafusion::arrow::util::display::array_value_to_string;
    // Nullable throughout: the row may be the one breaking a NOT NULL.
    let schema = table_schema(def);
    let fields = schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true));
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(
        fields.collect::<Vec<_>>(),
        schema.metadata().clone(),
    ));
    let Ok(batch) = rows_to_full_batch(&[row.to_vec()], &schema) else {
        return format!("{row:?}");
    };
    batch
        .columns()
        .iter()
        .map(|c| {
            if c.is_null(0) {
                return "null".to_owned();
            }
            let text = array_value_to_string(c, 0).unwrap_or_default();
            match c.data_type() {
                datafusion::arrow::datatypes::DataType::Timestamp(..) => text.replacen('T', " ", 1),
                datafusion::arrow::datatypes::DataType::Boolean => {
                    if text == "true" { "t" } else { "f" }.to_owned()
                }
                _ => text,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
