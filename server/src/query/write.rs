//! Writes that do not go through a statement's staged write set: COPY outside a block and
//! `EXPLAIN ANALYZE INSERT` (a DataFusion `DataSink`), TRUNCATE; and the row checks every
//! write shares.
//!
//! Every statement holds the engine's writer lock, validates NOT NULL, lengths and primary
//! keys against the latest committed state, and commits one RocksDB write batch.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::sink::DataSink;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use freshet_catalog::TableDef;
use freshet_common::{Datum, PgError, SqlState, SqlType};
use freshet_dataflow::epoch::state_err;
use freshet_dataflow::EpochChanges;
use freshet_state::{key_codec, table_prefix, Store, WriteBatch};

use super::table::IntoDataFusion;
use crate::coord::engine::Engine;

/// The INSERT target DataFusion's plans show (`EXPLAIN INSERT`); INSERT itself runs through
/// `query/insert.rs`, so this sink never receives rows.
#[derive(Debug)]
pub struct TableSink {
    def: Arc<TableDef>,
    schema: SchemaRef,
}

impl TableSink {
    /// A sink for one INSERT into `def`.
    pub fn new(def: Arc<TableDef>, schema: SchemaRef) -> Self {
        Self { def, schema }
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
        _data: SendableRecordBatchStream,
        _ctx: &Arc<TaskContext>,
    ) -> Result<u64> {
        // INSERT runs through `query/insert.rs`; this sink exists for EXPLAIN's plans only.
        Err(PgError::not_supported("EXPLAIN ANALYZE INSERT").into_df())
    }
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
    for id in def.storage_ids() {
        Store::delete_prefix(&mut batch, &table_prefix(id));
    }
    engine.commit(&mut w, batch, changes).await?;
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

/// Checks a row against its table's NOT NULL and length limits, and brings `character(n)`
/// values to their stored form: without trailing spaces (they are padding, as PostgreSQL
/// compares them; results pad them back to `n`). As in PostgreSQL, a value too long only
/// by trailing spaces is cut to the limit rather than refused.
pub(super) fn validate_row(def: &TableDef, row: &mut [Datum]) -> Result<(), PgError> {
    for (i, col) in def.columns.iter().enumerate().take(row.len()) {
        if col.not_null && row[i].is_null() {
            return Err(PgError::new(
                SqlState::NOT_NULL_VIOLATION,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    col.name, def.name
                ),
            )
            .with_detail(format!(
                "Failing row contains ({}).",
                super::rowexpr::show_row(def, row)
            ))
            .on_table(&def.name)
            .on_column(&col.name));
        }
        if let (SqlType::Varchar(Some(n)) | SqlType::Char(n), Datum::Text(s)) = (&col.ty, &mut row[i]) {
            let n = *n as usize;
            if let Some((cut, _)) = s.char_indices().nth(n) {
                if !s[cut..].bytes().all(|b| b == b' ') {
                    return Err(PgError::new(
                        SqlState("22001"),
                        format!("value too long for type {}", col.ty.pg_name()),
                    ));
                }
                s.truncate(cut);
            }
            if matches!(col.ty, SqlType::Char(_)) {
                s.truncate(s.trim_end_matches(' ').len());
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
    .on_table(&def.name)
    .on_constraint(&format!("{}_pkey", def.name))
    .with_detail(format!(
        "Key ({})=({}) already exists.",
        cols.join(", "),
        vals.join(", ")
    ))
}

pub(super) fn display_datum(d: &Datum) -> String {
    match d {
        Datum::Text(s) => s.clone(),
        Datum::Int16(i) => i.to_string(),
        Datum::Int32(i) => i.to_string(),
        Datum::Int64(i) => i.to_string(),
        Datum::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}
