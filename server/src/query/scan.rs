//! Scanning a table from a RocksDB snapshot, in key order, batch by batch.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Operator};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use freshet_catalog::TableDef;
use freshet_common::Datum;
use freshet_sql::df_convert::{rows_to_batch, scalar_to_datum};
use freshet_state::{key_codec, next_key, row_codec, table_prefix, Snapshot};

/// Rows per batch read from the store.
const BATCH_ROWS: usize = 4096;

/// A key range within a table: `lower` inclusive, `upper` exclusive, both full store keys.
#[derive(Debug, Clone, Default)]
pub struct KeyRange {
    pub lower: Option<Vec<u8>>,
    pub upper: Option<Vec<u8>>,
}

/// The scan of one table (one partition).
#[derive(Debug)]
pub struct TableScan {
    def: Arc<TableDef>,
    snapshot: Arc<Snapshot>,
    schema: SchemaRef,
    columns: Vec<usize>,
    range: KeyRange,
    limit: Option<usize>,
}

impl TableScan {
    /// `schema` is the projected schema; `columns[i]` is the table column feeding its field i.
    pub fn new(
        def: Arc<TableDef>,
        snapshot: Arc<Snapshot>,
        schema: SchemaRef,
        columns: Vec<usize>,
        range: KeyRange,
        limit: Option<usize>,
    ) -> Self {
        Self {
            def,
            snapshot,
            schema,
            columns,
            range,
            limit,
        }
    }

    /// The projected schema.
    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }
}

impl PartitionStream for TableScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut cursor = Cursor {
            prefix: table_prefix(self.def.id),
            snapshot: Arc::clone(&self.snapshot),
            next: None,
            upper: self.range.upper.clone(),
            remaining: self.limit.unwrap_or(usize::MAX),
            done: false,
        };
        cursor.next = Some(
            self.range
                .lower
                .clone()
                .unwrap_or_else(|| cursor.prefix.clone()),
        );
        let schema = Arc::clone(&self.schema);
        let columns = self.columns.clone();
        let iter = std::iter::from_fn(move || {
            let rows = match cursor.next_rows() {
                Ok(Some(rows)) => rows,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            Some(rows_to_batch(&rows, &schema, &columns))
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(iter),
        ))
    }
}

struct Cursor {
    prefix: Vec<u8>,
    snapshot: Arc<Snapshot>,
    next: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    remaining: usize,
    done: bool,
}

impl Cursor {
    fn next_rows(&mut self) -> Result<Option<Vec<Vec<Datum>>>> {
        if self.done || self.remaining == 0 {
            return Ok(None);
        }
        let lower = self.next.take().unwrap_or_else(|| self.prefix.clone());
        let limit = BATCH_ROWS.min(self.remaining);
        let page = self
            .snapshot
            .scan(&self.prefix, &lower, self.upper.as_deref(), limit)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if page.len() < limit {
            self.done = true;
        }
        let Some((last, _)) = page.last() else {
            return Ok(None);
        };
        self.next = Some(next_key(last));
        self.remaining -= page.len();
        let rows = page
            .iter()
            .map(|(_, v)| {
                row_codec::decode_row(v).map_err(|e| DataFusionError::External(Box::new(e)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(rows))
    }
}

/// Reads the rows of a table in `range` (all without one) from `snapshot` as full-schema
/// batches (for UPDATE and DELETE), with each row's store key.
pub fn read_all(
    def: &TableDef,
    snapshot: Arc<Snapshot>,
    schema: &SchemaRef,
    range: Option<KeyRange>,
) -> Result<Vec<(Vec<Vec<u8>>, RecordBatch)>> {
    let prefix = table_prefix(def.id);
    let range = range.unwrap_or_default();
    let mut cursor = Cursor {
        prefix: prefix.clone(),
        snapshot,
        next: range.lower,
        upper: range.upper,
        remaining: usize::MAX,
        done: false,
    };
    let columns: Vec<usize> = (0..def.columns.len()).collect();
    let mut out = Vec::new();
    loop {
        let lower = cursor.next.take().unwrap_or_else(|| prefix.clone());
        let page = cursor
            .snapshot
            .scan(&prefix, &lower, cursor.upper.as_deref(), BATCH_ROWS)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let Some((last, _)) = page.last() else { break };
        cursor.next = Some(next_key(last));
        let mut keys = Vec::with_capacity(page.len());
        let mut rows = Vec::with_capacity(page.len());
        for (k, v) in &page {
            keys.push(k.to_vec());
            rows.push(
                row_codec::decode_row(v).map_err(|e| DataFusionError::External(Box::new(e)))?,
            );
        }
        out.push((keys, rows_to_batch(&rows, schema, &columns)?));
        if page.len() < BATCH_ROWS {
            break;
        }
    }
    Ok(out)
}

/// The key range implied by `filters` on the first primary-key column, if any narrows it.
///
/// Only `column op literal` with the literal already of the column's type is used, so the
/// range never excludes a row the filter would keep.
pub fn key_range(def: &TableDef, schema: &SchemaRef, filters: &[Expr]) -> Option<KeyRange> {
    let &first = def.primary_key.first()?;
    column_range(
        &table_prefix(def.id),
        &def.columns[first].name,
        schema.field(first).data_type(),
        filters,
    )
}

/// The range of keys under `prefix` (memcomparable, led by column `col_name` of type `dt`)
/// that `filters` allow, if any narrows it.
pub fn column_range(
    prefix: &[u8],
    col_name: &str,
    dt: &datafusion::arrow::datatypes::DataType,
    filters: &[Expr],
) -> Option<KeyRange> {
    let mut range = KeyRange::default();
    let mut narrowed = false;
    for f in filters {
        let Expr::BinaryExpr(b) = f else { continue };
        let (op, lit) = match (b.left.as_ref(), b.right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) if c.name == col_name => (b.op, v),
            (Expr::Literal(v, _), Expr::Column(c)) if c.name == col_name => match b.op.swap() {
                Some(op) => (op, v),
                None => continue,
            },
            _ => continue,
        };
        if lit.is_null() || &lit.data_type() != dt {
            continue;
        }
        let Some(enc) = encode_bound(prefix, lit) else {
            continue;
        };
        let succ = successor(&enc);
        let (lo, hi) = match op {
            Operator::Eq => (Some(enc), succ),
            Operator::Gt => (succ, None),
            Operator::GtEq => (Some(enc), None),
            Operator::Lt => (None, Some(enc)),
            Operator::LtEq => (None, succ),
            _ => continue,
        };
        if let Some(lo) = lo {
            if range.lower.as_ref().is_none_or(|cur| &lo > cur) {
                range.lower = Some(lo);
            }
        }
        if let Some(hi) = hi {
            if range.upper.as_ref().is_none_or(|cur| &hi < cur) {
                range.upper = Some(hi);
            }
        }
        narrowed = true;
    }
    narrowed.then_some(range)
}

fn encode_bound(prefix: &[u8], lit: &ScalarValue) -> Option<Vec<u8>> {
    let datum = scalar_to_datum(lit).ok()?;
    let mut k = prefix.to_vec();
    key_codec::encode_key(&[datum], &mut k);
    Some(k)
}

fn successor(k: &[u8]) -> Option<Vec<u8>> {
    let mut s = k.to_vec();
    while let Some(last) = s.last_mut() {
        if *last < 0xFF {
            *last += 1;
            return Some(s);
        }
        s.pop();
    }
    None
}
