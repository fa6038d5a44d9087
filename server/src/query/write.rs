//! The table write path: INSERT (a DataFusion `DataSink`), UPDATE, DELETE and TRUNCATE.
//!
//! Every statement takes the engine's writer lock, validates NOT NULL, lengths and primary
//! keys against the latest committed state, and commits one RocksDB write batch.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::memory::MemorySourceConfig;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::datasource::sink::DataSink;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, WriteOp};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use freshet_catalog::TableDef;
use freshet_common::{Datum, PgError, SqlState, SqlType};
use freshet_dataflow::epoch::state_err;
use freshet_dataflow::EpochChanges;
use freshet_sql::df_convert::datum_at;
use freshet_state::{key_codec, row_codec, table_prefix, table_row_key, Store, WriteBatch};
use futures::StreamExt;

use super::scan::{key_range, read_all};
use super::table::IntoDataFusion;
use crate::engine::Engine;

/// INSERT target: collects the statement's rows, then validates and commits them at once.
#[derive(Debug)]
pub struct TableSink {
    engine: Arc<Engine>,
    def: Arc<TableDef>,
    schema: SchemaRef,
}

impl TableSink {
    /// A sink for one INSERT into `def`.
    pub fn new(engine: Arc<Engine>, def: Arc<TableDef>, schema: SchemaRef) -> Self {
        Self {
            engine,
            def,
            schema,
        }
    }
}

impl DisplayAs for TableSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableSink: table={}", self.def.name)
    }
}

#[async_trait]
impl DataSink for TableSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _ctx: &Arc<TaskContext>,
    ) -> Result<u64> {
        let mut rows = Vec::new();
        while let Some(batch) = data.next().await {
            rows.extend(batch_rows(&batch?, &self.schema)?);
        }
        insert_rows(&self.engine, &self.def, rows).await
    }
}

/// Inserts `rows` (full rows in table column order) as one statement: validated, checked for
/// duplicate keys and committed with their views' changes in one epoch.
pub async fn insert_rows(engine: &Engine, def: &TableDef, rows: Vec<Vec<Datum>>) -> Result<u64> {
    for row in &rows {
        validate_row(def, row).map_err(PgError::into_df)?;
    }
    let n = rows.len() as u64;
    let mut w = engine.begin_write().await;
    let store = &engine.store;
    let mut batch = WriteBatch::default();
    let mut buf = Vec::new();
    if def.has_primary_key() {
        let mut seen = HashSet::with_capacity(rows.len());
        let keys: Vec<Vec<u8>> = rows.iter().map(|row| row_key(def, row)).collect();
        let existing = store.snapshot().multi_get(&keys).map_err(state_err)?;
        for ((row, key), old) in rows.iter().zip(keys).zip(existing) {
            if old.is_some() || !seen.insert(key.clone()) {
                return Err(unique_violation(def, row).into_df());
            }
            put_row(&mut batch, &mut buf, key, row);
        }
    } else {
        let first = w.allocate_row_ids(store, def.id, n).map_err(state_err)?;
        for (i, row) in rows.iter().enumerate() {
            let key = table_row_key(def.id, &key_codec::encode_row_id(first + i as u64));
            put_row(&mut batch, &mut buf, key, row);
        }
    }
    let mut changes = EpochChanges::default();
    if engine.has_dependents(def.id) {
        changes.add(def.id, rows, 1);
    }
    engine.commit(&mut w, batch, changes)?;
    Ok(n)
}

/// Deletes the rows matching every filter. Returns how many.
pub async fn delete_rows(
    engine: &Engine,
    def: &TableDef,
    schema: &SchemaRef,
    state: &dyn Session,
    filters: &[Expr],
) -> Result<u64> {
    let mut w = engine.begin_write().await;
    let mut batch = WriteBatch::default();
    let mut changes = EpochChanges::default();
    let track = engine.has_dependents(def.id);
    let mut n = 0u64;
    for (keys, rows) in read_all(
        def,
        Arc::new(engine.store.snapshot()),
        schema,
        key_range(def, schema, filters),
    )? {
        let mask = filter_mask(filters, &rows, schema, state)?;
        let old_rows = if track {
            Some(batch_rows(&rows, schema)?)
        } else {
            None
        };
        for (i, key) in keys.iter().enumerate() {
            if mask.as_ref().is_none_or(|m| m.is_valid(i) && m.value(i)) {
                batch.delete(key);
                if let Some(old) = &old_rows {
                    changes.add(def.id, [old[i].clone()], -1);
                }
                n += 1;
            }
        }
    }
    engine.commit(&mut w, batch, changes)?;
    Ok(n)
}

/// Applies `assignments` to the rows matching every filter. Returns how many.
pub async fn update_rows(
    engine: &Engine,
    def: &TableDef,
    schema: &SchemaRef,
    state: &dyn Session,
    assignments: &[(String, Expr)],
    filters: &[Expr],
) -> Result<u64> {
    let df_schema = DFSchema::try_from(Arc::clone(schema))?;
    let mut exprs = Vec::with_capacity(assignments.len());
    for (name, expr) in assignments {
        let idx = def.column_index(name).ok_or_else(|| {
            PgError::new(
                SqlState::UNDEFINED_COLUMN,
                format!(
                    "column \"{name}\" of relation \"{}\" does not exist",
                    def.name
                ),
            )
            .into_df()
        })?;
        exprs.push((
            idx,
            create_physical_expr(
                expr,
                &df_schema,
                state.execution_props(),
                &PhysicalPlanningContext::default(),
            )?,
        ));
    }
    let mut w = engine.begin_write().await;
    let store = &engine.store;
    let mut changes = EpochChanges::default();
    let track = engine.has_dependents(def.id);
    let mut deleted = HashSet::new();
    let mut updated: Vec<(Vec<u8>, Vec<Datum>)> = Vec::new();
    for (keys, rows) in read_all(
        def,
        Arc::new(store.snapshot()),
        schema,
        key_range(def, schema, filters),
    )? {
        let mask = filter_mask(filters, &rows, schema, state)?;
        let mut new_cols: Vec<ArrayRef> = rows.columns().to_vec();
        for (idx, e) in &exprs {
            let arr = e.evaluate(&rows)?.into_array(rows.num_rows())?;
            new_cols[*idx] = cast(&arr, schema.field(*idx).data_type())?;
        }
        let new_batch = RecordBatch::try_new(Arc::clone(schema), new_cols)?;
        let new_rows = batch_rows(&new_batch, schema)?;
        let old_rows = if track {
            Some(batch_rows(&rows, schema)?)
        } else {
            None
        };
        for (i, (key, row)) in keys.into_iter().zip(new_rows).enumerate() {
            if mask.as_ref().is_none_or(|m| m.is_valid(i) && m.value(i)) {
                validate_row(def, &row).map_err(PgError::into_df)?;
                if let Some(old) = &old_rows {
                    changes.add(def.id, [old[i].clone()], -1);
                    changes.add(def.id, [row.clone()], 1);
                }
                let new_key = if def.has_primary_key() {
                    row_key(def, &row)
                } else {
                    key.clone()
                };
                deleted.insert(key);
                updated.push((new_key, row));
            }
        }
    }
    let mut batch = WriteBatch::default();
    for key in &deleted {
        batch.delete(key);
    }
    let mut seen = HashSet::with_capacity(updated.len());
    let mut buf = Vec::new();
    for (key, row) in &updated {
        if def.has_primary_key()
            && (!seen.insert(key.clone())
                || (!deleted.contains(key) && store.get(key).map_err(state_err)?.is_some()))
        {
            return Err(unique_violation(def, row).into_df());
        }
        put_row(&mut batch, &mut buf, key.clone(), row);
    }
    engine.commit(&mut w, batch, changes)?;
    Ok(updated.len() as u64)
}

/// Removes every row. Returns how many there were.
pub async fn truncate(engine: &Engine, def: &TableDef) -> Result<u64> {
    let mut w = engine.begin_write().await;
    let mut changes = EpochChanges::default();
    let n = if engine.has_dependents(def.id) {
        let rows = freshet_dataflow::read_table_rows(&engine.store.snapshot(), def.id)?;
        let n = rows.len();
        changes
            .tables
            .insert(def.id, rows.into_iter().map(|(r, _)| (r, -1)).collect());
        n
    } else {
        count_rows(def, engine)?
    };
    let mut batch = WriteBatch::default();
    Store::delete_prefix(&mut batch, &table_prefix(def.id));
    engine.commit(&mut w, batch, changes)?;
    w.forget(def.id);
    Ok(n as u64)
}

fn count_rows(def: &TableDef, engine: &Engine) -> Result<usize> {
    let mut n = 0;
    engine
        .store
        .snapshot()
        .for_each_page(&table_prefix(def.id), 8192, |page| {
            n += page.len();
            Ok(())
        })
        .map_err(state_err)?;
    Ok(n)
}

/// A one-row `count` plan, what DataFusion expects back from DML hooks.
pub fn count_exec(n: u64) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(UInt64Array::from(vec![n]))],
    )?;
    Ok(MemorySourceConfig::try_new_exec(
        &[vec![batch]],
        schema,
        None,
    )?)
}

fn filter_mask(
    filters: &[Expr],
    batch: &RecordBatch,
    schema: &SchemaRef,
    state: &dyn Session,
) -> Result<Option<BooleanArray>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let df_schema = DFSchema::try_from(Arc::clone(schema))?;
    let mut combined: Option<BooleanArray> = None;
    for f in filters {
        let e = create_physical_expr(
            f,
            &df_schema,
            state.execution_props(),
            &PhysicalPlanningContext::default(),
        )?;
        let arr = e.evaluate(batch)?.into_array(batch.num_rows())?;
        let mask = arr
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| {
                PgError::new(
                    SqlState::DATATYPE_MISMATCH,
                    "argument of WHERE must be type boolean",
                )
                .into_df()
            })?
            .clone();
        combined = Some(match combined {
            None => mask,
            Some(prev) => datafusion::arrow::compute::and(&prev, &mask)?,
        });
    }
    Ok(combined)
}

/// The rows of `batch`, each column first cast to the table's type.
fn batch_rows(batch: &RecordBatch, schema: &SchemaRef) -> Result<Vec<Vec<Datum>>> {
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (arr, field) in batch.columns().iter().zip(schema.fields()) {
        cols.push(if arr.data_type() == field.data_type() {
            Arc::clone(arr)
        } else {
            cast(arr, field.data_type())?
        });
    }
    (0..batch.num_rows())
        .map(|r| {
            cols.iter()
                .map(|c| datum_at(c, r))
                .collect::<Result<Vec<_>>>()
        })
        .collect()
}

fn validate_row(def: &TableDef, row: &[Datum]) -> Result<(), PgError> {
    for (col, v) in def.columns.iter().zip(row) {
        if col.not_null && v.is_null() {
            return Err(PgError::new(
                SqlState::NOT_NULL_VIOLATION,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    col.name, def.name
                ),
            ));
        }
        if let (SqlType::Varchar(Some(n)) | SqlType::Char(n), Datum::Text(s)) = (&col.ty, v) {
            let n = *n as usize;
            if s.chars().count() > n {
                return Err(PgError::new(
                    SqlState("22001"),
                    format!("value too long for type {}", col.ty.pg_name()),
                ));
            }
        }
    }
    Ok(())
}

fn row_key(def: &TableDef, row: &[Datum]) -> Vec<u8> {
    let pk: Vec<Datum> = def.primary_key.iter().map(|&i| row[i].clone()).collect();
    let mut key = table_prefix(def.id);
    key_codec::encode_key(&pk, &mut key);
    key
}

fn put_row(batch: &mut WriteBatch, buf: &mut Vec<u8>, key: Vec<u8>, row: &[Datum]) {
    buf.clear();
    row_codec::encode_row(row, buf);
    batch.put(key, &buf[..]);
}

fn unique_violation(def: &TableDef, row: &[Datum]) -> PgError {
    let cols: Vec<&str> = def
        .primary_key
        .iter()
        .map(|&i| def.columns[i].name.as_str())
        .collect();
    let vals: Vec<String> = def
        .primary_key
        .iter()
        .map(|&i| display_datum(&row[i]))
        .collect();
    PgError::new(
        SqlState::UNIQUE_VIOLATION,
        format!(
            "duplicate key value violates unique constraint \"{}_pkey\"",
            def.name
        ),
    )
    .with_detail(format!(
        "Key ({})=({}) already exists.",
        cols.join(", "),
        vals.join(", ")
    ))
}

fn display_datum(d: &Datum) -> String {
    match d {
        Datum::Text(s) => s.clone(),
        Datum::Int16(i) => i.to_string(),
        Datum::Int32(i) => i.to_string(),
        Datum::Int64(i) => i.to_string(),
        Datum::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Refuses a DELETE or UPDATE whose rows depend on more than the target table's own row: a
/// subquery (`WHERE id IN (SELECT …)`, `EXISTS`, `SET v = (SELECT …)`) or another table
/// (`UPDATE … FROM`). DataFusion hands a table only the predicates on its own columns
/// (`TableProvider::delete_from`/`update`) and drops the rest — after decorrelation an
/// `IN (SELECT …)` is a join, not a filter — so such a statement would change every row.
pub fn check_dml_input(dml: &DmlStatement) -> Result<(), PgError> {
    let verb = match dml.op {
        WriteOp::Delete => "DELETE",
        WriteOp::Update => "UPDATE",
        _ => return Ok(()),
    };
    let mut construct: Option<&str> = None;
    let _ = dml.input.apply(|node| {
        let subquery = node.expressions().iter().any(|e| {
            e.exists(|e| {
                Ok(matches!(
                    e,
                    Expr::Exists(_)
                        | Expr::InSubquery(_)
                        | Expr::ScalarSubquery(_)
                        | Expr::OuterReferenceColumn(..)
                ))
            })
            .unwrap_or(true)
        });
        construct = match node {
            _ if subquery => Some("a subquery"),
            LogicalPlan::Subquery(_) => Some("a subquery"),
            LogicalPlan::Join(_) => Some("another table (FROM or a join)"),
            LogicalPlan::TableScan(scan) if !scan.table_name.resolved_eq(&dml.table_name) => {
                Some("another table (FROM or a join)")
            }
            _ => None,
        };
        Ok(if construct.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    match construct {
        Some(c) => Err(PgError::not_supported(format!("{verb} with {c}"))),
        None => Ok(()),
    }
}
