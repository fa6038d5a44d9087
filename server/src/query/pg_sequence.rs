//! Identity columns' sequences in the catalogs, as PostgreSQL shows an identity column's: a
//! `pg_class` row of relkind `S` named `<table>_<column>_seq`, its `pg_sequence` row, and an
//! internal dependency (`i`) on the column, which `pg_attribute.attidentity` marks (`a`
//! always, `d` by default; `SERIAL` is by default here). pg_dump writes them back as
//! `ADD GENERATED … AS IDENTITY (SEQUENCE NAME …)`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;
use freshet_catalog::TableDef;
use freshet_common::SqlType;

use super::catalog_rows::CatalogRows;
use super::pg_attribute::read_all;
use super::pg_index::{relation_rows, rows_with, ClassRow};
use crate::coord::engine::Engine;

/// OIDs of identity sequences: above the relations', below the indexes' (1e9 + id).
const SEQUENCE_OID_BASE: i32 = 800_000_000;

/// One identity column's sequence.
#[derive(Debug, Clone)]
pub struct IdentitySequence {
    pub oid: i32,
    pub name: String,
    pub table: Arc<TableDef>,
    /// The column's number (1-based).
    pub attnum: i16,
    /// int2, int4 or int8: the sequence's type and bounds.
    pub ty: SqlType,
}

/// The identity sequences of our tables.
pub fn identity_sequences(engine: &Engine) -> Vec<IdentitySequence> {
    let mut out = Vec::new();
    for table in engine.catalog.tables() {
        for (i, col) in table.columns.iter().enumerate() {
            if col.identity.is_none() {
                continue;
            }
            out.push(IdentitySequence {
                oid: SEQUENCE_OID_BASE + ((table.id.0 % 100_000) * 1_000) as i32 + i as i32,
                name: crate::coord::sequences::sequence_name(&table.name, &col.name),
                table: Arc::clone(&table),
                attnum: i as i16 + 1,
                ty: col.ty.clone(),
            });
        }
    }
    out
}

/// pg_class rows of the sequences (relkind `S`).
pub fn class_rows(
    schema: &SchemaRef,
    public: Option<i64>,
    sequences: &[IdentitySequence],
    owner: &dyn Fn(&TableDef) -> i32,
) -> Result<RecordBatch> {
    let rows: Vec<ClassRow<'_>> = sequences
        .iter()
        .map(|s| ClassRow {
            oid: s.oid,
            name: &s.name,
            owner: owner(&s.table),
            natts: 3,
        })
        .collect();
    relation_rows(schema, public, "S", 0, &rows)
}

/// The bounds of a sequence of `ty`.
fn max_of(ty: &SqlType) -> i64 {
    match ty {
        SqlType::Int2 => i64::from(i16::MAX),
        SqlType::Int4 => i64::from(i32::MAX),
        _ => i64::MAX,
    }
}

/// pg_sequence with a row per identity sequence (start 1, increment 1, cache 1, no cycle).
#[derive(Debug)]
pub struct PgSequence {
    pub sequence: Arc<dyn TableProvider>,
    pub engine: Arc<Engine>,
}

#[async_trait]
impl CatalogRows for PgSequence {
    fn schema(&self) -> SchemaRef {
        self.sequence.schema()
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let sequences = identity_sequences(&self.engine);
        let n = sequences.len();
        let mut given: HashMap<&str, ArrayRef> = HashMap::new();
        given.insert(
            "seqrelid",
            Arc::new(Int32Array::from_iter_values(
                sequences.iter().map(|s| s.oid),
            )),
        );
        given.insert(
            "seqtypid",
            Arc::new(Int32Array::from_iter_values(
                sequences.iter().map(|s| s.ty.oid() as i32),
            )),
        );
        given.insert("seqstart", Arc::new(Int64Array::from(vec![1i64; n])));
        given.insert("seqincrement", Arc::new(Int64Array::from(vec![1i64; n])));
        given.insert(
            "seqmax",
            Arc::new(Int64Array::from_iter_values(
                sequences.iter().map(|s| max_of(&s.ty)),
            )),
        );
        given.insert("seqmin", Arc::new(Int64Array::from(vec![1i64; n])));
        given.insert("seqcache", Arc::new(Int64Array::from(vec![1i64; n])));
        given.insert("seqcycle", Arc::new(BooleanArray::from(vec![false; n])));
        let mut out = read_all(&self.sequence, state).await?;
        out.push(rows_with(&self.schema(), n, &given)?);
        Ok(out)
    }
}
