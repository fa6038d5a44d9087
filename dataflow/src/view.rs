//! Materialized views: a dataflow plus its durable contents (the registry that runs every
//! view's dataflow for each epoch is `dataflows.rs`).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use freshet_common::{Datum, TableId};
use freshet_state::{aggregate_view_prefix, row_codec, table_prefix, view_prefix, Snapshot};

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::common::hash_map::Entry;
use datafusion::common::HashMap;
use freshet_sql::df_convert::batch_to_rows;

use crate::contents_log::ContentsLog;
use crate::delta::Delta;
use crate::delta::{decode_count, encode_count};
use crate::encode::{encode_rows, encode_rows_keyed_by, EncodedRows, VALUE_SLOT};
use crate::epoch::{state_err, EpochChanges, EpochCtx};
use crate::ops::{AggregateOp, ContentsLayout, Node};
use datafusion::physical_expr::expressions::Column;

/// A view's running dataflow.
#[derive(Debug)]
pub struct MaterializedView {
    pub id: TableId,
    pub name: String,
    /// The output columns.
    pub schema: SchemaRef,
    pub root: Node,
    /// Tables and views it reads (deduplicated).
    pub inputs: Vec<TableId>,
    /// Sources whose watermarks alone move the view (an `EMIT ON WINDOW CLOSE` gate closes
    /// windows when they advance, whether or not a row arrives).
    pub clock: Vec<TableId>,
    /// It holds a temporal filter: epochs of passing time reach it when one is due.
    timed: bool,
    /// The first this many columns are a unique key (an aggregate's groups): contents are
    /// keyed by them and written blind, without reading what is stored.
    unique_prefix: Option<usize>,
    /// Rows only ever arrive (filters and projections of sources): every arriving row gets a
    /// key of its own (see [`MaterializedView::with_append_only`]).
    append_only: bool,
    /// The root aggregate keeps its accumulators in the contents entries
    /// (see [`MaterializedView::with_aggregate_in_contents`]).
    aggregate_contents: Option<ContentsLayout>,
    /// Its aggregates keep MIN/MAX values as one entry per occurrence (recorded in the
    /// catalog; see [`MaterializedView::with_occurrences`]).
    occurrences: bool,
}

impl MaterializedView {
    pub fn new(id: TableId, name: String, schema: SchemaRef, root: Node) -> Self {
        let mut inputs = Vec::new();
        root.relations(&mut inputs);
        inputs.sort();
        inputs.dedup();
        let unique_prefix = root.unique_prefix();
        let timed = root.has_timers();
        let mut clock = Vec::new();
        root.clock(&mut clock);
        clock.sort();
        clock.dedup();
        Self {
            id,
            name,
            schema,
            root,
            inputs,
            clock,
            timed,
            unique_prefix,
            append_only: false,
            aggregate_contents: None,
            occurrences: false,
        }
    }

    /// With `on`, and when the view's rows are its root aggregate's output (directly or
    /// through a projection of plain columns keeping the group columns first), the aggregate
    /// keeps each group's accumulator inside the group's contents entry: one write per changed
    /// group instead of two. Decided at creation and recorded in the catalog: a view's layout
    /// never changes.
    /// Whether `changes` reach the view: one of its inputs changed, its clock moved, or a
    /// change its temporal filters scheduled is due.
    pub fn reached_by(&self, changes: &EpochChanges, changed: &HashSet<TableId>) -> bool {
        self.inputs.iter().any(|i| changed.contains(i))
            || self
                .clock
                .iter()
                .any(|s| changes.watermarks.contains_key(s))
            || self.next_due().is_some_and(|t| t <= changes.now())
    }

    /// When the next change its temporal filters scheduled is due (microseconds).
    pub fn next_due(&self) -> Option<i64> {
        if !self.timed {
            return None;
        }
        self.root.next_due()
    }

    pub fn with_aggregate_in_contents(mut self, on: bool) -> Self {
        if !on || self.append_only {
            return self;
        }
        let (Some(key_columns), Some((_, op))) = (self.unique_prefix, self.root_aggregate()) else {
            return self;
        };
        let columns = match &self.root {
            Node::Project { exprs, .. } => {
                let columns = exprs
                    .iter()
                    .map(|e| e.downcast_ref::<Column>().map(Column::index))
                    .collect::<Option<Vec<_>>>();
                match columns {
                    Some(c) => c,
                    None => return self,
                }
            }
            _ => (0..op.schema().fields().len()).collect(),
        };
        if columns[..key_columns].iter().any(|&c| c >= op.group.len()) {
            return self;
        }
        self.aggregate_contents = Some(ContentsLayout {
            prefix: aggregate_view_prefix(self.id),
            columns,
            key_columns,
            schema: Arc::clone(&self.schema),
            log: None,
        });
        self
    }

    /// When the root aggregate keeps its accumulators in the contents, and `logged`:
    /// epochs after the backfill log their changed groups in one entry and a fold writes
    /// them to their entries, once the logs pass their budget ([`Dataflows::wants_fold`])
    /// or before a reader needs them (see `contents_log.rs`). Not recorded anywhere: the log
    /// is empty after a fold, and the first fold after a restart empties whatever log is
    /// there.
    pub fn with_contents_log(mut self, logged: bool) -> Self {
        if let Some(layout) = &mut self.aggregate_contents {
            layout.log = logged.then(|| ContentsLog::new(self.id));
        }
        self
    }

    /// Whether epochs log the view's changed groups (see [`MaterializedView::with_contents_log`]).
    pub fn has_contents_log(&self) -> bool {
        self.contents_log().is_some()
    }

    /// The contents log, with the aggregate whose cache holds the groups it lags on.
    pub(crate) fn contents_log(&self) -> Option<(&ContentsLog, &ContentsLayout, &AggregateOp)> {
        let layout = self.aggregate_contents.as_ref()?;
        let log = layout.log.as_ref()?;
        let (_, op) = self.root_aggregate()?;
        Some((log, layout, op))
    }

    /// The prefix of the view's contents entries.
    pub fn contents_prefix(&self) -> Vec<u8> {
        match &self.aggregate_contents {
            Some(layout) => layout.prefix.clone(),
            None => view_prefix(self.id),
        }
    }

    /// Records that the dataflow was lowered with
    /// [`Lowering::with_occurrences`](crate::lower::Lowering::with_occurrences)`(on)`, for
    /// the view's catalog entry.
    pub fn with_occurrences(mut self, on: bool) -> Self {
        self.occurrences = on;
        self
    }

    /// Whether the view's aggregates keep MIN/MAX values as one entry per occurrence.
    pub fn occurrences(&self) -> bool {
        self.occurrences
    }

    /// Whether a join of the view reads a side from its table (see `ops/join_tables.rs`).
    pub fn reads_tables(&self) -> bool {
        self.root.reads_tables()
    }

    /// The indexes its joins read table sides through (sorted, each once).
    pub fn indexes_read(&self) -> Vec<TableId> {
        let mut out = Vec::new();
        self.root.indexes_read(&mut out);
        out.sort();
        out.dedup();
        out
    }

    /// A fingerprint of the lowered dataflow (FNV-1a over its description): stored with the
    /// view and compared when the view is planned again at start, so that a change in how
    /// freshet plans its SQL (a new version, a DataFusion upgrade) cannot attach stored state
    /// to operators it was not written by. Names DataFusion numbers per session
    /// (`__common_expr_7`) are counted without their number: planning the same views in
    /// another order names them differently.
    pub fn fingerprint(&self) -> u64 {
        fnv1a(&unnumbered(&self.explain()))
    }

    /// Whether `stored` is this dataflow's fingerprint (or the one views created before
    /// [`MaterializedView::fingerprint`] left generated names out of it got).
    pub fn matches_fingerprint(&self, stored: u64) -> bool {
        stored == self.fingerprint() || stored == fnv1a(&self.explain())
    }

    /// Whether the view only ever gains rows (see [`MaterializedView::with_append_only`]).
    pub fn is_append_only(&self) -> bool {
        self.append_only
    }

    /// Whether the root aggregate keeps its accumulators in the contents entries.
    pub fn aggregate_in_contents(&self) -> bool {
        self.aggregate_contents.is_some()
    }

    /// The root aggregate (possibly under a projection) and its input.
    fn root_aggregate(&self) -> Option<(&Node, &AggregateOp)> {
        let node = match &self.root {
            Node::Project { input, .. } => input,
            root => root,
        };
        match node {
            Node::Aggregate { input, op } => Some((input, op)),
            _ => None,
        }
    }

    /// Marks the view append-only when every relation it reads is append-only
    /// (`append_only_input`) and no operator of it can retract a row. An arriving row is then
    /// stored under a key of its own — its first column's key encoding, then the epoch's
    /// snapshot sequence number and the row's place in the epoch — so each row is one blind
    /// write with no read of a stored multiplicity, and keys stay short; equal rows are
    /// separate entries. Contents stay ordered by the first column, so a filter on it still
    /// reads a key range.
    /// Top-N and window operators over inputs that never retract keep only the rows their
    /// output depends on.
    pub fn with_append_only(mut self, append_only_input: &dyn Fn(TableId) -> bool) -> Self {
        self.append_only = self.root.append_only(append_only_input);
        self.root.mark_never_retracting(append_only_input);
        // Joins over inputs that never retract may now expire rows on a watermark.
        let mut clock = Vec::new();
        self.root.clock(&mut clock);
        clock.sort();
        clock.dedup();
        self.clock = clock;
        self
    }

    /// Runs one epoch through the dataflow and applies the result to the view's contents.
    /// With `output`, returns the view's own changes (consolidated), for views that read this
    /// one; without, an empty vector.
    pub fn process(
        &self,
        changes: &EpochChanges,
        ctx: &mut EpochCtx<'_>,
        output: bool,
    ) -> Result<Vec<(Vec<Datum>, i64)>> {
        if let Some(layout) = &self.aggregate_contents {
            return self.process_aggregate(layout, changes, ctx, output);
        }
        let Some(delta) = self.root.eval(changes, ctx)? else {
            return Ok(vec![]);
        };
        if self.append_only {
            return self.append(delta, ctx, output);
        }
        if let Some(k) = self.unique_prefix {
            return self.upsert(delta, k, ctx, output);
        }
        // Rows are identified by their contents key (an injective encoding of the row).
        let EncodedRows { keys, mut values } = encode_rows(&delta.batch, &view_prefix(self.id))?;
        let rows = consolidate_rows(keys.iter().map(Vec::as_slice), &delta.weights);
        // Arrivals add to the stored count blindly (a merge); only departures read it, to
        // know whether the row is gone.
        let mut departing: Vec<(usize, i64)> = Vec::new();
        for &(i, w) in &rows {
            if w > 0 {
                values[i][..VALUE_SLOT].copy_from_slice(&encode_count(w));
                ctx.batch.merge(&keys[i], &values[i]);
            } else {
                departing.push((i, w));
            }
        }
        let wanted: Vec<&[u8]> = departing.iter().map(|&(i, _)| keys[i].as_slice()).collect();
        let olds = ctx.snapshot.multi_get(&wanted).map_err(state_err)?;
        for (&(i, w), old) in departing.iter().zip(olds) {
            let n = old
                .map(|b| decode_count(b.get(..8).unwrap_or_default()))
                .transpose()?
                .unwrap_or(0)
                + w;
            if n < 0 {
                return Err(DataFusionError::Internal(format!(
                    "view \"{}\" would hold a row a negative number of times",
                    self.name
                )));
            }
            if n == 0 {
                ctx.batch.delete(&keys[i]);
            } else {
                values[i][..VALUE_SLOT].copy_from_slice(&encode_count(n));
                ctx.batch.put(&keys[i], &values[i]);
            }
        }
        if !output {
            return Ok(vec![]);
        }
        picked_rows(&delta, &rows)
    }

    /// The epoch of a view whose root aggregate writes its contents.
    fn process_aggregate(
        &self,
        layout: &ContentsLayout,
        changes: &EpochChanges,
        ctx: &mut EpochCtx<'_>,
        output: bool,
    ) -> Result<Vec<(Vec<Datum>, i64)>> {
        if !self.root.touched(changes, ctx.initial) {
            return Ok(vec![]);
        }
        let (input, op) = self.root_aggregate().ok_or_else(|| {
            DataFusionError::Internal(format!("view \"{}\" has no root aggregate", self.name))
        })?;
        let d = input.eval(changes, ctx)?;
        op.apply_to_contents(d, changes, ctx, layout, output)
    }

    /// The epoch of a view whose first `key_columns` columns are a unique key: contents are
    /// keyed by them, so a changed row (the old version leaving, the new one arriving under
    /// the same key) is one blind put, and a row that only leaves is one delete.
    fn upsert(
        &self,
        delta: Delta,
        key_columns: usize,
        ctx: &mut EpochCtx<'_>,
        output: bool,
    ) -> Result<Vec<(Vec<Datum>, i64)>> {
        let EncodedRows { keys, mut values } =
            encode_rows_keyed_by(&delta.batch, &view_prefix(self.id), key_columns)?;
        // Consolidate equal rows (by their row encoding), then settle each key: the row
        // arriving under it is put; a key whose row only leaves is deleted.
        let rows = consolidate_rows(values.iter().map(|v| &v[VALUE_SLOT..]), &delta.weights);
        // Per key: the arriving row, if any.
        let mut settled: HashMap<&[u8], Option<usize>> = HashMap::with_capacity(rows.len());
        for &(i, w) in &rows {
            if w.abs() != 1 {
                return Err(DataFusionError::Internal(format!(
                    "view \"{}\": a row of a uniquely keyed view changed {w} times",
                    self.name
                )));
            }
            let slot = settled.entry(keys[i].as_slice()).or_insert(None);
            if w > 0 {
                if slot.is_some() {
                    return Err(DataFusionError::Internal(format!(
                        "view \"{}\": two rows arrived under one key",
                        self.name
                    )));
                }
                *slot = Some(i);
            }
        }
        for (key, arriving) in settled {
            match arriving {
                Some(i) => {
                    values[i][..VALUE_SLOT].copy_from_slice(&encode_count(1));
                    ctx.batch.put(key, &values[i]);
                }
                None => ctx.batch.delete(key),
            }
        }
        if !output {
            return Ok(vec![]);
        }
        picked_rows(&delta, &rows)
    }

    /// An append-only view's epoch: every row is written under a new key.
    fn append(
        &self,
        delta: Delta,
        ctx: &mut EpochCtx<'_>,
        output: bool,
    ) -> Result<Vec<(Vec<Datum>, i64)>> {
        let EncodedRows {
            mut keys,
            mut values,
        } = encode_rows_keyed_by(&delta.batch, &view_prefix(self.id), 1)?;
        let epoch = ctx.snapshot.sequence().to_be_bytes();
        let bytes: usize = keys.iter().zip(&values).map(|(k, v)| k.len() + v.len()).sum();
        ctx.batch.reserve(bytes + keys.len() * (epoch.len() + 4), keys.len());
        for (i, ((key, value), &w)) in keys
            .iter_mut()
            .zip(&mut values)
            .zip(&delta.weights)
            .enumerate()
        {
            if w <= 0 {
                return Err(DataFusionError::Internal(format!(
                    "append-only view \"{}\" got a retraction",
                    self.name
                )));
            }
            key.extend_from_slice(&epoch);
            key.extend_from_slice(&(i as u32).to_be_bytes());
            value[..VALUE_SLOT].copy_from_slice(&encode_count(w));
            ctx.batch.put(&*key, &*value);
        }
        if !output {
            return Ok(vec![]);
        }
        Ok(batch_to_rows(&delta.batch)?
            .into_iter()
            .zip(delta.weights)
            .collect())
    }

    /// The dataflow, one operator per line.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        if self.append_only {
            s.push_str("Contents: append-only (one entry per arriving row)\n");
        }
        if let Some(layout) = &self.aggregate_contents {
            s.push_str("Contents: one entry per group, holding the aggregate's state\n");
            if layout.log.is_some() {
                s.push_str("Contents log: one entry per epoch, folded into the groups' entries\n");
            }
        }
        self.root.explain(0, &mut s);
        s
    }
}

/// Sums the weights of rows with equal `ids` (an injective encoding of each row of a delta):
/// (first row index, total weight) per distinct row, cancelled-out rows dropped.
fn consolidate_rows<'a>(ids: impl Iterator<Item = &'a [u8]>, weights: &[i64]) -> Vec<(usize, i64)> {
    let mut index: HashMap<&[u8], usize> = HashMap::with_capacity(weights.len());
    let mut rows: Vec<(usize, i64)> = Vec::with_capacity(weights.len());
    for (i, (id, w)) in ids.zip(weights).enumerate() {
        match index.entry(id) {
            Entry::Occupied(e) => rows[*e.get()].1 += w,
            Entry::Vacant(e) => {
                e.insert(rows.len());
                rows.push((i, *w));
            }
        }
    }
    rows.retain(|(_, w)| *w != 0);
    rows
}

/// The rows `rows` picks from `delta` (by index), with their consolidated weights.
fn picked_rows(delta: &Delta, rows: &[(usize, i64)]) -> Result<Vec<(Vec<Datum>, i64)>> {
    let picked = UInt32Array::from_iter_values(rows.iter().map(|&(i, _)| i as u32));
    let batch = take_record_batch(&delta.batch, &picked)?;
    Ok(batch_to_rows(&batch)?
        .into_iter()
        .zip(rows.iter().map(|&(_, w)| w))
        .collect())
}

/// A table's rows, each once.
pub fn read_table_rows(snapshot: &Snapshot, table: TableId) -> Result<Vec<(Vec<Datum>, i64)>> {
    let mut rows = Vec::new();
    snapshot
        .for_each_page(&table_prefix(table), 4096, |page| {
            for (_, v) in page {
                rows.push((row_codec::decode_row(&v)?, 1));
            }
            Ok(())
        })
        .map_err(state_err)?;
    Ok(rows)
}

/// The key of `row` in a view's contents: memcomparable, so the contents are ordered by the
/// view's columns and a filter on its first column reads a key range. The value is the
/// multiplicity (i64 BE) followed by the row's row_codec encoding.
pub fn contents_key(prefix: &[u8], row: &[Datum]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    freshet_state::key_codec::encode_key(row, &mut k);
    k
}

/// Decodes one contents entry's value: (multiplicity, row).
pub fn decode_contents(v: &[u8]) -> Result<(i64, Vec<Datum>)> {
    let n = decode_count(v.get(..8).unwrap_or_default())?;
    let row = row_codec::decode_row(&v[8..]).map_err(state_err)?;
    Ok((n, row))
}

/// A view's distinct rows with their multiplicities.
pub fn read_view_rows(
    snapshot: &Snapshot,
    view: &MaterializedView,
) -> Result<Vec<(Vec<Datum>, i64)>> {
    let prefix = view.contents_prefix();
    let mut rows = Vec::new();
    for (_, v) in snapshot.scan_prefix(&prefix).map_err(state_err)? {
        let (n, row) = decode_contents(&v)?;
        rows.push((row, n));
    }
    Ok(rows)
}

fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `text` with the digits after each `__common_expr_` left out.
fn unnumbered(text: &str) -> String {
    const GENERATED: &str = "__common_expr_";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(GENERATED) {
        out.push_str(&rest[..i + GENERATED.len()]);
        rest = rest[i + GENERATED.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod fingerprint_tests {
    #[test]
    fn generated_names_do_not_count() {
        assert_eq!(
            super::unnumbered("Project: __common_expr_17@0, __common_expr_1@1 + x_2"),
            "Project: __common_expr_@0, __common_expr_@1 + x_2"
        );
    }
}
