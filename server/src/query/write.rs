//! Writes that do not go through a statement's staged write set: COPY outside a block and
//! `EXPLAIN ANALYZE INSERT` (a DataFusion `DataSink`), TRUNCATE; and the row checks every
//! write shares.
//!
//! Every statement holds the engine's writer lock, validates NOT NULL, lengths and primary
//! keys against the latest committed state, and commits one RocksDB write batch.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::sink::DataSink;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use freshet_catalog::TableDef;
use freshet_common::{Datum, PgError, SqlState, SqlType};
use freshet_dataflow::epoch::state_err;
use freshet_dataflow::EpochChanges;
use freshet_sql::df_convert::datum_at;
use freshet_state::{key_codec, row_codec, table_prefix, table_row_key, Store, WriteBatch};
use futures::StreamExt;

use super::pending::{stage_insert, StatementWrites};
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
        ctx: &Arc<TaskContext>,
    ) -> Result<u64> {
        let mut rows = Vec::new();
        while let Some(batch) = data.next().await {
            rows.extend(batch_rows(&batch?, &self.schema)?);
        }
        match ctx.session_config().get_extension::<StatementWrites>() {
            // Inside a transaction block: staged until COMMIT.
            Some(writes) => stage_insert(&self.engine, &writes, &self.def, rows).await,
            None => insert_rows(&self.engine, &self.def, rows).await,
        }
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

pub(super) fn validate_row(def: &TableDef, row: &[Datum]) -> Result<(), PgError> {
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

pub(super) fn row_key(def: &TableDef, row: &[Datum]) -> Vec<u8> {
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

pub(super) fn unique_violation(def: &TableDef, row: &[Datum]) -> PgError {
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
