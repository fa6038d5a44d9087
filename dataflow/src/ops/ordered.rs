//! Operators over ordered partitions: top-N (`ORDER BY … LIMIT n OFFSET m`) and window
//! functions (`… OVER (PARTITION BY … ORDER BY …)`).
//!
//! State (under the operator's prefix):
//! ```text
//! 'i' <len-prefixed partition> <sort key> <row>  → count (i64 BE) ++ row (row_codec)
//! 'o' <len-prefixed partition> <row>             → count: the output last emitted
//! ```
//! The sort key is memcomparable in the ORDER BY's directions ([`key_codec::encode_sort_value`]);
//! the row's encoding after it breaks ties, so the order is total and deterministic.
//!
//! Each epoch, every touched partition's new output is computed from its rows in order (the
//! stored rows merged with this epoch's changes, read in one ordered scan) and compared with the
//! stored output; the difference is the delta. Top-N reads only the first `offset + n` rows of
//! a partition; window functions read the whole touched partition (only touched partitions
//! are recomputed).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::WindowExpr;
use freshet_common::Datum;
use freshet_sql::df_convert::{batch_to_rows, datum_at, rows_to_full_batch};
use freshet_state::{key_codec, row_codec};

use super::merge::{merged_scan, Entry};
use super::Node;
use crate::delta::{consolidate, decode_count, encode, encode_count, push_len_prefixed, Delta};
use crate::epoch::{state_err, EpochCtx};

type Rows = Vec<(Vec<Datum>, i64)>;

/// What an [`OrderedOp`] computes from each partition's ordered rows.
#[derive(Debug)]
pub enum OrderedMode {
    /// Rows `skip .. skip + fetch` of the (single) partition.
    TopN { skip: usize, fetch: Option<usize> },
    /// The input columns followed by one column per window function. With `rows`, only the
    /// first `rows` rows of each partition are output: a filter above keeps only
    /// `row_number() <= rows` (every function is `row_number()`, whose value for a row
    /// depends only on the rows before it), so the rest would be filtered out anyway.
    Window {
        exprs: Vec<Arc<dyn WindowExpr>>,
        rows: Option<usize>,
        /// Every function is `row_number()`.
        row_numbers: bool,
    },
}

impl OrderedMode {
    /// How many leading rows of a partition the output depends on; `None` for all.
    fn leading_rows(&self) -> Option<usize> {
        match *self {
            OrderedMode::TopN {
                skip,
                fetch: Some(f),
            } => Some(skip.saturating_add(f)),
            OrderedMode::Window { rows, .. } => rows,
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct OrderedOp {
    pub prefix: Vec<u8>,
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    pub order_by: Vec<PhysicalSortExpr>,
    pub mode: OrderedMode,
    /// The input's schema (window functions evaluate over batches of it).
    pub input_schema: SchemaRef,
    pub schema: SchemaRef,
    /// The input never retracts a row, so a row past the leading rows the output depends on
    /// can never move up into them: it is deleted from the state, which keeps that many rows
    /// per partition (see [`OrderedOp::with_input_never_retracting`]).
    pub prune: bool,
}

/// One input row's change in one partition.
struct Change {
    row: Vec<Datum>,
    weight: i64,
}

impl OrderedOp {
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    pub fn describe(&self) -> String {
        let order: Vec<String> = self.order_by.iter().map(ToString::to_string).collect();
        match &self.mode {
            OrderedMode::TopN { skip, fetch } => {
                format!(
                    "TopN: order=[{}] offset={skip} limit={}",
                    order.join(", "),
                    fetch.map_or("ALL".into(), |f| f.to_string())
                )
            }
            OrderedMode::Window { exprs, rows, .. } => format!(
                "Window: partition_keys={} order=[{}] functions=[{}]{}",
                self.partition_by.len(),
                order.join(", "),
                exprs
                    .iter()
                    .map(|e| e.name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
                rows.map_or(String::new(), |r| format!(" rows={r}"))
            ),
        }
    }

    /// Marks the input as never retracting a row: with a limit on the rows it outputs per
    /// partition, the state keeps only those rows.
    pub fn with_input_never_retracting(&mut self, never: bool) {
        self.prune = never && self.mode.leading_rows().is_some();
    }

    fn key(&self, space: u8, partition: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(space);
        push_len_prefixed(&mut k, partition);
        k
    }

    pub fn apply(&self, input: Option<Delta>, ctx: &mut EpochCtx<'_>) -> Result<Option<Delta>> {
        let Some(d) = input else { return Ok(None) };
        let parts = match self.split(&d) {
            Ok(p) => p,
            Err(e) => {
                // Rows whose partition or sort keys cannot be evaluated stay out of this view.
                let good = super::bad_rows::without_bad_rows(&d, ctx, e, |one| {
                    self.split(one).map(|_| ())
                })?;
                self.split(&good)?
            }
        };
        let mut out: Rows = Vec::new();
        for (partition, changes) in parts {
            let in_prefix = self.key(b'i', &partition);
            let new_out = if self.prune {
                self.arrivals(&in_prefix, changes, ctx)?
            } else {
                let changed = self.store_inputs(&in_prefix, changes, ctx)?;
                self.compute(&in_prefix, &changed, ctx)?
            };
            let out_prefix = self.key(b'o', &partition);
            let mut old_out: Rows = Vec::new();
            for (k, v) in ctx.snapshot.scan_prefix(&out_prefix).map_err(state_err)? {
                old_out.push((
                    row_codec::decode_row(&k[out_prefix.len()..]).map_err(state_err)?,
                    decode_count(&v)?,
                ));
            }
            // Replace the stored output with the new one; emit the difference.
            let new_out = consolidate(new_out);
            let mut diff: Rows = old_out.iter().map(|(r, w)| (r.clone(), -w)).collect();
            for (_, row, w) in &new_out {
                diff.push((row.clone(), *w));
            }
            for (row, _) in &old_out {
                ctx.batch
                    .delete([out_prefix.as_slice(), &encode(row)].concat());
            }
            for (bytes, _, w) in &new_out {
                ctx.batch
                    .put([out_prefix.as_slice(), bytes].concat(), encode_count(*w));
            }
            out.extend(consolidate(diff).into_iter().map(|(_, row, w)| (row, w)));
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(Delta::from_rows(&out, &self.schema)?))
    }

    /// The delta's rows by partition, each keyed by its position key (sort key ++ row).
    fn split(&self, d: &Delta) -> Result<BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Change>>> {
        let n = d.len();
        let part_cols: Vec<ArrayRef> = self
            .partition_by
            .iter()
            .map(|e| e.evaluate(&d.batch)?.into_array(n))
            .collect::<Result<_>>()?;
        let sort_cols: Vec<ArrayRef> = self
            .order_by
            .iter()
            .map(|e| e.expr.evaluate(&d.batch)?.into_array(n))
            .collect::<Result<_>>()?;
        let mut parts: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Change>> = BTreeMap::new();
        for (i, (row, w)) in d.to_rows()?.into_iter().enumerate() {
            let part: Vec<Datum> = part_cols
                .iter()
                .map(|c| datum_at(c, i))
                .collect::<Result<_>>()?;
            let mut pos = Vec::new();
            for (c, s) in sort_cols.iter().zip(&self.order_by) {
                key_codec::encode_sort_value(
                    &datum_at(c, i)?,
                    s.options.descending,
                    s.options.nulls_first,
                    &mut pos,
                );
            }
            row_codec::encode_row(&row, &mut pos);
            parts
                .entry(encode(&part))
                .or_default()
                .entry(pos)
                .or_insert(Change { row, weight: 0 })
                .weight += w;
        }
        Ok(parts)
    }

    /// Writes the new counts of the changed input rows; returns position → (row, new count).
    fn store_inputs(
        &self,
        prefix: &[u8],
        changes: BTreeMap<Vec<u8>, Change>,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<BTreeMap<Vec<u8>, (Vec<Datum>, i64)>> {
        let keys: Vec<Vec<u8>> = changes.keys().map(|p| [prefix, p].concat()).collect();
        let olds = ctx.snapshot.multi_get(&keys).map_err(state_err)?;
        let mut out = BTreeMap::new();
        for ((key, (pos, change)), old) in keys.into_iter().zip(changes).zip(olds) {
            let old_n = match old {
                Some(v) => decode_count(v.get(..8).unwrap_or_default())?,
                None => 0,
            };
            let n = old_n + change.weight;
            if n < 0 {
                return Err(DataFusionError::Internal(
                    "ordered operator row count went negative".into(),
                ));
            }
            if n == 0 {
                ctx.batch.delete(&key);
            } else if n != old_n {
                let mut v = encode_count(n).to_vec();
                row_codec::encode_row(&change.row, &mut v);
                ctx.batch.put(&key, v);
            }
            out.insert(pos, (change.row, n));
        }
        Ok(out)
    }

    /// The partition's new output from its rows in order: the stored rows (as of the previous
    /// epoch) merged with `changed` (position → new count).
    fn compute(
        &self,
        prefix: &[u8],
        changed: &BTreeMap<Vec<u8>, (Vec<Datum>, i64)>,
        ctx: &EpochCtx<'_>,
    ) -> Result<Rows> {
        let limit = self.mode.leading_rows();
        let mut rows: Rows = Vec::new();
        let mut taken: usize = 0;
        merged_scan(ctx.snapshot, prefix, changed, false, |_, entry| {
            if limit.is_some_and(|l| taken >= l) {
                return Ok(false);
            }
            let (row, n) = match entry {
                Entry::Changed((row, n)) | Entry::ChangedStored((row, n), _) => (row.clone(), *n),
                Entry::Stored(v) => {
                    let n = decode_count(v.get(..8).unwrap_or_default())?;
                    (row_codec::decode_row(&v[8..]).map_err(state_err)?, n)
                }
            };
            if n > 0 {
                taken = taken.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
                rows.push((row, n));
            }
            Ok(true)
        })?;
        self.output(rows)
    }

    /// The partition's output from its leading rows in order.
    fn output(&self, rows: Rows) -> Result<Rows> {
        match &self.mode {
            OrderedMode::TopN { skip, fetch } => Ok(slice(rows, *skip, *fetch)),
            OrderedMode::Window { exprs, .. } => self.windows(rows, exprs),
        }
    }

    /// [`OrderedOp::compute`] for an input that never retracts (`prune`): the epoch's rows
    /// only arrive, so nothing is read ahead of the one ordered scan. Arrivals that end among
    /// the leading rows are written with their count (a stored equal row's added); stored
    /// rows pushed past them are deleted, and arrivals past them never written. The partition
    /// held at most the leading rows before, so the scan visits at most that many plus the
    /// epoch's arrivals.
    fn arrivals(
        &self,
        prefix: &[u8],
        changes: BTreeMap<Vec<u8>, Change>,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<Rows> {
        let limit = self.mode.leading_rows().unwrap_or(usize::MAX);
        let mut changed = BTreeMap::new();
        for (pos, c) in changes {
            if c.weight < 0 {
                return Err(DataFusionError::Internal(
                    "a top-N over an input that never retracts got a retraction".into(),
                ));
            }
            if c.weight > 0 {
                changed.insert(pos, (c.row, c.weight));
            }
        }
        let mut rows: Rows = Vec::new();
        let mut taken: usize = 0;
        let batch = &mut *ctx.batch;
        merged_scan(ctx.snapshot, prefix, &changed, false, |pos, entry| {
            if taken >= limit {
                if !matches!(entry, Entry::Changed(_)) {
                    batch.delete([prefix, pos].concat());
                }
                return Ok(true);
            }
            let (row, n) = match entry {
                Entry::Stored(v) => {
                    let n = decode_count(v.get(..8).unwrap_or_default())?;
                    (row_codec::decode_row(&v[8..]).map_err(state_err)?, n)
                }
                Entry::Changed((row, w)) | Entry::ChangedStored((row, w), _) => {
                    let stored = match entry {
                        Entry::ChangedStored(_, v) => decode_count(v.get(..8).unwrap_or_default())?,
                        _ => 0,
                    };
                    let n = stored + *w;
                    let mut v = encode_count(n).to_vec();
                    row_codec::encode_row(row, &mut v);
                    batch.put([prefix, pos].concat(), v);
                    (row.clone(), n)
                }
            };
            taken = taken.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
            rows.push((row, n));
            Ok(true)
        })?;
        self.output(rows)
    }

    /// Evaluates the window functions over one partition's rows (in order).
    fn windows(&self, rows: Rows, exprs: &[Arc<dyn WindowExpr>]) -> Result<Rows> {
        let mut expanded: Vec<Vec<Datum>> = Vec::new();
        for (row, n) in rows {
            for _ in 0..n {
                expanded.push(row.clone());
            }
        }
        if expanded.is_empty() {
            return Ok(vec![]);
        }
        let batch = rows_to_full_batch(&expanded, &self.input_schema)?;
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        for e in exprs {
            cols.push(e.evaluate(&batch)?);
        }
        let cols = super::fit_columns(&cols, &self.schema)?;
        let out = datafusion::arrow::array::RecordBatch::try_new(Arc::clone(&self.schema), cols)?;
        Ok(batch_to_rows(&out)?.into_iter().map(|r| (r, 1)).collect())
    }
}

/// Rows `skip .. skip + fetch` of `rows` counted with multiplicity.
fn slice(rows: Rows, skip: usize, fetch: Option<usize>) -> Rows {
    let mut out = Vec::new();
    let mut pos: usize = 0;
    let end = fetch.map_or(usize::MAX, |f| skip.saturating_add(f));
    for (row, n) in rows {
        let n = usize::try_from(n).unwrap_or(0);
        let (start, stop) = (pos, pos.saturating_add(n));
        pos = stop;
        let lo = start.max(skip);
        let hi = stop.min(end);
        if hi > lo {
            out.push((row, (hi - lo) as i64));
        }
        if pos >= end {
            break;
        }
    }
    out
}

/// With `predicate` filtering `input`: when it keeps only `row_number() <= k` (or `< k`, or
/// `= k`) of a window of row numbers only — through projections and other filters — that
/// window outputs only the first `k` rows of each partition.
pub fn limit_window_rows(input: &mut Node, predicate: &Arc<dyn PhysicalExpr>) {
    for (column, k) in row_bounds(predicate) {
        let mut node = &mut *input;
        let mut column = column;
        loop {
            match node {
                Node::Filter { input, .. } => node = input.as_mut(),
                Node::Project { input, exprs, .. } => {
                    let Some(c) = exprs
                        .get(column)
                        .and_then(|e| e.downcast_ref::<Column>())
                        .map(Column::index)
                    else {
                        break;
                    };
                    column = c;
                    node = input.as_mut();
                }
                Node::Ordered { op, .. } => {
                    let width = op.input_schema.fields().len();
                    if let OrderedMode::Window {
                        rows,
                        row_numbers: true,
                        ..
                    } = &mut op.mode
                    {
                        if column >= width {
                            *rows = Some(rows.map_or(k, |r| r.min(k)));
                        }
                    }
                    break;
                }
                _ => break,
            }
        }
    }
}

/// The conjuncts of `predicate` that bound a column from above by a constant: (column, the
/// largest value it can take), for integers of at least 1.
fn row_bounds(predicate: &Arc<dyn PhysicalExpr>) -> Vec<(usize, usize)> {
    let Some(b) = predicate.downcast_ref::<BinaryExpr>() else {
        return vec![];
    };
    if *b.op() == Operator::And {
        let mut out = row_bounds(b.left());
        out.extend(row_bounds(b.right()));
        return out;
    }
    let (col, op, lit) = match (
        b.left().downcast_ref::<Column>(),
        b.right().downcast_ref::<Literal>(),
        b.left().downcast_ref::<Literal>(),
        b.right().downcast_ref::<Column>(),
    ) {
        (Some(c), Some(l), _, _) => (c, *b.op(), l),
        (_, _, Some(l), Some(c)) => match b.op().swap() {
            Some(op) => (c, op, l),
            None => return vec![],
        },
        _ => return vec![],
    };
    let value = match lit.value() {
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).unwrap_or(i64::MAX),
        ScalarValue::Int32(Some(v)) => i64::from(*v),
        _ => return vec![],
    };
    let max = match op {
        Operator::LtEq | Operator::Eq => value,
        Operator::Lt => value - 1,
        _ => return vec![],
    };
    match usize::try_from(max) {
        Ok(k) if k >= 1 => vec![(col.index(), k)],
        _ => vec![],
    }
}
