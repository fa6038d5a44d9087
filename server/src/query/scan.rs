//! Scanning a table from a RocksDB snapshot, in key order, batch by batch.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Operator};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use freshet_catalog::{IndexKind, TableDef};
use freshet_common::{Datum, SqlType, TableId};
use freshet_sql::df_convert::{rows_to_batch, scalar_to_datum};
use freshet_state::{key_codec, next_key, row_codec, table_prefix, Snapshot};

use super::pending::WriteSet;

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
    /// Disjoint key ranges, in key order, of the table or an index.
    ranges: ScanRanges,
    limit: Option<usize>,
    /// A transaction block's pending writes, read over the snapshot.
    overlay: Option<Arc<WriteSet>>,
    /// Filters checked on each stored row before it is decoded.
    checks: Arc<[RowCheck]>,
}

/// The name of the hidden column a DML statement's read scan adds after a table's columns:
/// each row's store key, which is how the statement's write set names the rows it changes.
pub const KEY_COLUMN: &str = "__freshet_key";

impl TableScan {
    /// `schema` is the projected schema; `columns[i]` is the table column feeding its field i;
    /// `ranges` are disjoint and in key order.
    pub fn new(
        def: Arc<TableDef>,
        snapshot: Arc<Snapshot>,
        schema: SchemaRef,
        columns: Vec<usize>,
        ranges: ScanRanges,
        limit: Option<usize>,
    ) -> Self {
        Self {
            def,
            snapshot,
            schema,
            columns,
            ranges,
            limit,
            overlay: None,
            checks: Arc::new([]),
        }
    }

    /// Skips, undecoded, the rows that fail one of `checks`.
    pub fn with_checks(mut self, checks: Vec<RowCheck>) -> Self {
        self.checks = checks.into();
        self
    }

    /// Reads `overlay` (a transaction block's pending writes) over the snapshot.
    pub fn with_overlay(mut self, overlay: Option<Arc<WriteSet>>) -> Self {
        self.overlay = overlay;
        self
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
        // Column index `columns.len()` of the table is the hidden key column.
        let with_key = self.columns.contains(&self.def.columns.len());
        let (prefix, ranges, by_index) = match &self.ranges {
            ScanRanges::Table(r) => (table_prefix(self.def.id), r, false),
            ScanRanges::Index { id, ranges } => (table_prefix(*id), ranges, true),
        };
        let mut cursors: std::collections::VecDeque<Cursor> = ranges
            .iter()
            .map(|range| Cursor {
                by_index,
                next: Some(range.lower.clone().unwrap_or_else(|| prefix.clone())),
                prefix: prefix.clone(),
                snapshot: Arc::clone(&self.snapshot),
                upper: range.upper.clone(),
                remaining: self.limit.unwrap_or(usize::MAX),
                done: false,
                with_key,
                overlay: self.overlay.clone(),
                checks: Arc::clone(&self.checks),
            })
            .collect();
        let schema = Arc::clone(&self.schema);
        let columns = self.columns.clone();
        let iter = std::iter::from_fn(move || loop {
            let cursor = cursors.front_mut()?;
            match cursor.next_rows() {
                Ok(Some(rows)) => return Some(rows_to_batch(&rows, &schema, &columns)),
                Ok(None) => {
                    cursors.pop_front();
                }
                Err(e) => return Some(Err(e)),
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(iter),
        ))
    }
}

struct Cursor {
    /// The ranges are an index's: its entries name the rows to read.
    by_index: bool,
    prefix: Vec<u8>,
    snapshot: Arc<Snapshot>,
    next: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    remaining: usize,
    done: bool,
    /// Append each row's store key as a last `Bytes` datum.
    with_key: bool,
    overlay: Option<Arc<WriteSet>>,
    checks: Arc<[RowCheck]>,
}

impl Cursor {
    fn next_rows(&mut self) -> Result<Option<Vec<Vec<Datum>>>> {
        loop {
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
            } else if let Some((last, _)) = page.last() {
                self.next = Some(next_key(last));
            }
            let mut entries: Vec<(&[u8], &[u8])> = match &self.overlay {
                None => page.iter().map(|(k, v)| (&k[..], &v[..])).collect(),
                Some(overlay) => {
                    // Pending writes up to where the next page starts (or the range's end).
                    let upper = if self.done {
                        self.upper.as_deref()
                    } else {
                        self.next.as_deref()
                    };
                    merge_overlay(&page, overlay, &self.prefix, &lower, upper)
                }
            };
            if entries.is_empty() {
                if self.done {
                    return Ok(None);
                }
                continue;
            }
            let fetched;
            if self.by_index {
                fetched = self.rows_of(&entries)?;
                entries = fetched.iter().map(|(k, v)| (&k[..], &v[..])).collect();
                if entries.is_empty() {
                    continue;
                }
            }
            if !self.checks.is_empty() {
                let mut kept = Vec::with_capacity(entries.len());
                for e in entries {
                    if RowCheck::all_pass(&self.checks, e.1)? {
                        kept.push(e);
                    }
                }
                entries = kept;
                if entries.is_empty() {
                    continue;
                }
            }
            entries.truncate(self.remaining);
            self.remaining -= entries.len();
            let with_key = self.with_key;
            let rows = entries
                .iter()
                .map(|(k, v)| {
                    let mut row = row_codec::decode_row(v)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    if with_key {
                        row.push(Datum::Bytes(k.to_vec()));
                    }
                    Ok(row)
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(Some(rows));
        }
    }
}

impl Cursor {
    /// The rows index `entries` (entry key, row key) name, as the scan sees them: a pending
    /// write of the block over the snapshot's row.
    fn rows_of(&self, entries: &[(&[u8], &[u8])]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let pending = |key: &[u8]| self.overlay.as_ref().and_then(|o| o.get(key));
        let stored: Vec<&[u8]> = entries
            .iter()
            .map(|&(_, key)| key)
            .filter(|key| pending(key).is_none())
            .collect();
        let mut rows = self
            .snapshot
            .multi_get(&stored)
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .into_iter();
        let mut out = Vec::with_capacity(entries.len());
        for &(_, key) in entries {
            let row = match pending(key) {
                Some(p) => p.row.clone(),
                None => rows.next().flatten(),
            };
            if let Some(row) = row {
                out.push((key.to_vec(), row));
            }
        }
        Ok(out)
    }
}

/// The snapshot's `page` with the pending writes in `[lower, upper)` under `prefix` laid
/// over it: a pending row replaces or adds its key, a pending deletion hides it.
fn merge_overlay<'a>(
    page: &'a [(Box<[u8]>, Box<[u8]>)],
    overlay: &'a WriteSet,
    prefix: &[u8],
    lower: &[u8],
    upper: Option<&[u8]>,
) -> Vec<(&'a [u8], &'a [u8])> {
    let pending = overlay
        .range::<[u8], _>((std::ops::Bound::Included(lower), std::ops::Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix) && upper.is_none_or(|u| k.as_slice() < u));
    let mut out = Vec::with_capacity(page.len());
    let mut stored = page.iter().peekable();
    for (key, p) in pending {
        while let Some((k, v)) = stored.next_if(|(k, _)| &k[..] < key.as_slice()) {
            out.push((&k[..], &v[..]));
        }
        stored.next_if(|(k, _)| &k[..] == key.as_slice());
        if let Some(row) = &p.row {
            out.push((key.as_slice(), row.as_slice()));
        }
    }
    out.extend(stored.map(|(k, v)| (&k[..], &v[..])));
    out
}

/// A filter `column op literal` a scan checks on each stored row by decoding that column
/// alone, before decoding the row: a row that fails it is never decoded. DataFusion still
/// applies every filter, so a check only has to keep every row the filter keeps.
#[derive(Debug, Clone)]
pub struct RowCheck {
    column: usize,
    op: Operator,
    value: Datum,
}

impl RowCheck {
    /// The check `f` makes on the rows of `def`, if it is a comparison of one of its columns
    /// (of a type whose stored values compare as DataFusion compares them) with a literal of
    /// the column's type.
    pub fn of(def: &TableDef, schema: &SchemaRef, f: &Expr) -> Option<RowCheck> {
        let Expr::BinaryExpr(b) = f else { return None };
        let (column, op, lit) = match (b.left.as_ref(), b.right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) => (c, b.op, v),
            (Expr::Literal(v, _), Expr::Column(c)) => (c, b.op.swap()?, v),
            _ => return None,
        };
        if !matches!(
            op,
            Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
        ) {
            return None;
        }
        let index = schema.index_of(&column.name).ok()?;
        let ty = &def.columns.get(index)?.ty;
        let comparable = matches!(
            ty,
            SqlType::Bool
                | SqlType::Int2
                | SqlType::Int4
                | SqlType::Int8
                | SqlType::Numeric { .. }
                | SqlType::Text
                | SqlType::Varchar(_)
                | SqlType::Date
                | SqlType::Time
                | SqlType::Timestamp
                | SqlType::TimestampTz
        );
        if !comparable || lit.is_null() || &lit.data_type() != schema.field(index).data_type() {
            return None;
        }
        Some(RowCheck {
            column: index,
            op,
            value: scalar_to_datum(lit).ok()?,
        })
    }

    /// Whether the encoded `row` passes every one of `checks` (a NULL passes none).
    fn all_pass(checks: &[RowCheck], row: &[u8]) -> Result<bool> {
        for c in checks {
            let v = row_codec::decode_column(row, c.column)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            if v.is_null() {
                return Ok(false);
            }
            let ord = key_codec::compare(&v, &c.value);
            let pass = match c.op {
                Operator::Eq => ord.is_eq(),
                Operator::NotEq => ord.is_ne(),
                Operator::Lt => ord.is_lt(),
                Operator::LtEq => ord.is_le(),
                Operator::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            };
            if !pass {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Where a table scan reads: ranges of the table's own keys, or ranges of an index's
/// entries and then the rows they name.
#[derive(Debug, Clone)]
pub enum ScanRanges {
    Table(Vec<KeyRange>),
    Index { id: TableId, ranges: Vec<KeyRange> },
}

impl Default for ScanRanges {
    /// The whole table.
    fn default() -> Self {
        ScanRanges::Table(vec![KeyRange::default()])
    }
}

/// How `filters` narrow the scan of `def`, if they do: by the leading column of its primary
/// key or of one of its indexes. Equalities (`=`, `IN`, `OR` chains) are preferred to
/// ranges, and the primary key to an index.
pub fn scan_ranges(def: &TableDef, schema: &SchemaRef, filters: &[Expr]) -> Option<ScanRanges> {
    let mut candidates: Vec<(Option<TableId>, usize)> = Vec::new();
    if let Some(&first) = def.primary_key.first() {
        candidates.push((None, first));
    }
    for ix in def.all_indexes() {
        if ix.kind != IndexKind::Primary {
            candidates.push((Some(ix.id), ix.columns[0]));
        }
    }
    let ranges = |(index, column): (Option<TableId>, usize), equal: bool| {
        let prefix = table_prefix(index.unwrap_or(def.id));
        let name = &def.columns[column].name;
        let dt = schema.field(column).data_type();
        let ranges = if equal {
            point_ranges(&prefix, name, dt, filters)?
        } else {
            vec![column_range(&prefix, name, dt, filters)?]
        };
        Some(match index {
            None => ScanRanges::Table(ranges),
            Some(id) => ScanRanges::Index { id, ranges },
        })
    };
    [true, false]
        .into_iter()
        .find_map(|equal| candidates.iter().find_map(|&c| ranges(c, equal)))
}

/// One range per value `filters` allow column `name` (leading the keys under `prefix`) by
/// an equality, `IN` list or `OR` chain of equalities: disjoint, in key order.
fn point_ranges(
    prefix: &[u8],
    name: &str,
    dt: &datafusion::arrow::datatypes::DataType,
    filters: &[Expr],
) -> Option<Vec<KeyRange>> {
    let values = filters.iter().find_map(|f| equal_values(f, name, dt))?;
    let mut keys: Vec<Vec<u8>> = values
        .iter()
        .map(|v| encode_bound(prefix, v))
        .collect::<Option<_>>()?;
    keys.sort_unstable();
    keys.dedup();
    Some(
        keys.into_iter()
            .map(|k| KeyRange {
                upper: successor(&k),
                lower: Some(k),
            })
            .collect(),
    )
}

/// The literals `col IN (…)` or `col = a OR col = b …` allows for column `name` of type `dt`
/// (at most [`MAX_KEY_VALUES`]).
fn equal_values(
    f: &Expr,
    name: &str,
    dt: &datafusion::arrow::datatypes::DataType,
) -> Option<Vec<ScalarValue>> {
    let literal = |e: &Expr| match e {
        Expr::Literal(v, _) if !v.is_null() && &v.data_type() == dt => Some(v.clone()),
        _ => None,
    };
    let is_col = |e: &Expr| matches!(e, Expr::Column(c) if c.name == name);
    let values = match f {
        Expr::InList(l) if !l.negated && is_col(&l.expr) => {
            l.list.iter().map(literal).collect::<Option<Vec<_>>>()?
        }
        Expr::BinaryExpr(b) if b.op == Operator::Or => {
            let mut out = equal_values(&b.left, name, dt)?;
            out.extend(equal_values(&b.right, name, dt)?);
            out
        }
        Expr::BinaryExpr(b) if b.op == Operator::Eq => match (b.left.as_ref(), b.right.as_ref()) {
            (c, v) if is_col(c) => vec![literal(v)?],
            (v, c) if is_col(c) => vec![literal(v)?],
            _ => return None,
        },
        _ => return None,
    };
    (values.len() <= MAX_KEY_VALUES).then_some(values)
}

/// The most values of an `IN` list or `OR` chain read as point ranges.
const MAX_KEY_VALUES: usize = 10_000;

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

pub(super) fn successor(k: &[u8]) -> Option<Vec<u8>> {
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
