//! The operator tree of a view and its per-epoch evaluation.
//!
//! A view's dataflow is a tree (the optimized logical plan's shape). Each epoch evaluates it
//! once, bottom-up: a node's output delta is computed from its children's deltas and, for the
//! stateful nodes, from its state as of the previous epoch.

mod aggregate;
pub mod bad_rows;
pub mod cache;
mod join;
mod join_expiry;
mod join_tables;
mod merge;
mod not_in;
mod ordered;
mod temporal_filter;
mod unnest;
mod window_close;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use freshet_common::TableId;
use freshet_sql::df_convert::rows_to_batch;

pub use aggregate::{AggKind, AggSpec, AggregateOp, Closing, ContentsLayout};
pub use join::{JoinKind, JoinOp};
pub use join_expiry::{Expiries, Expiry};
pub use join_tables::{table_sides, TableKey, TableSide};
pub use ordered::{limit_window_rows, OrderedMode, OrderedOp};
pub use unnest::UnnestOp;
pub use temporal_filter::{Edge, TemporalFilterOp};
pub use window_close::WindowCloseOp;

use crate::delta::{self, Delta};
use crate::epoch::{EpochChanges, EpochCtx};

/// One node of a view's dataflow.
#[derive(Debug)]
pub enum Node {
    /// The changes of a table or upstream view, restricted to `projection`.
    Scan {
        relation: TableId,
        name: String,
        projection: Vec<usize>,
        schema: SchemaRef,
    },
    /// Rows for which `predicate` is true.
    Filter {
        input: Box<Node>,
        predicate: Arc<dyn PhysicalExpr>,
    },
    /// Scalar expressions of each row.
    Project {
        input: Box<Node>,
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
    /// Grouped aggregation with retractions (also DISTINCT).
    Aggregate { input: Box<Node>, op: AggregateOp },
    /// Top-N and window functions over ordered partitions.
    Ordered { input: Box<Node>, op: OrderedOp },
    /// UNNEST of list (and struct) columns.
    Unnest { input: Box<Node>, op: UnnestOp },
    /// Joins of every kind.
    Join {
        left: Box<Node>,
        right: Box<Node>,
        op: JoinOp,
    },
    /// UNION ALL.
    Union {
        inputs: Vec<Node>,
        schema: SchemaRef,
    },
    /// A constant relation (VALUES, a FROM-less SELECT): emitted once, at backfill.
    Constant { batch: RecordBatch },
    /// `EMIT ON WINDOW CLOSE`, at a view's root: rows held back until their window closes.
    WindowClose { input: Box<Node>, op: WindowCloseOp },
    /// Rows that belong only while the epoch's time is in a range computed from them
    /// (`now()` in a filter).
    TemporalFilter {
        input: Box<Node>,
        op: TemporalFilterOp,
    },
}

impl Node {
    /// The output schema.
    pub fn schema(&self) -> SchemaRef {
        match self {
            Node::Scan { schema, .. }
            | Node::Project { schema, .. }
            | Node::Union { schema, .. } => Arc::clone(schema),
            Node::Filter { input, .. }
            | Node::WindowClose { input, .. }
            | Node::TemporalFilter { input, .. } => input.schema(),
            Node::Aggregate { op, .. } => op.schema(),
            Node::Ordered { op, .. } => op.schema(),
            Node::Unnest { op, .. } => Arc::clone(&op.schema),
            Node::Join { op, .. } => op.schema(),
            Node::Constant { batch } => batch.schema(),
        }
    }

    /// The smallest `k` such that the first `k` output columns are a unique key (no two
    /// rows agree on them): an aggregate's group columns; kept through filters, top-N and
    /// projections that keep those columns as plain column references.
    pub fn unique_prefix(&self) -> Option<usize> {
        match self {
            Node::Aggregate { op, .. } => Some(op.group.len()),
            Node::Filter { input, .. } => input.unique_prefix(),
            Node::Ordered { input, op } if matches!(op.mode, OrderedMode::TopN { .. }) => {
                input.unique_prefix()
            }
            Node::Project { input, exprs, .. } => {
                let k = input.unique_prefix()?;
                let position = |c: usize| {
                    exprs.iter().position(|e| {
                        e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                            .is_some_and(|col| col.index() == c)
                    })
                };
                (0..k).map(position).try_fold(0, |m, p| Some(m.max(p? + 1)))
            }
            _ => None,
        }
    }

    /// Whether the output only ever grows when every relation read for which
    /// `append_only_input` holds only grows: row-by-row operators over such relations.
    pub fn append_only(&self, append_only_input: &dyn Fn(TableId) -> bool) -> bool {
        match self {
            Node::Scan { relation, .. } => append_only_input(*relation),
            Node::Filter { input, .. }
            | Node::Project { input, .. }
            | Node::Unnest { input, .. } => input.append_only(append_only_input),
            Node::Union { inputs, .. } => inputs.iter().all(|i| i.append_only(append_only_input)),
            // Emits each row once, for good.
            Node::WindowClose { .. } => true,
            _ => false,
        }
    }

    /// Whether the output never retracts a row when no relation read for which
    /// `append_only_input` holds does: [`Node::append_only`]'s operators and inner joins
    /// (a joined row leaves only when one of its two rows does).
    pub fn never_retracts(&self, append_only_input: &dyn Fn(TableId) -> bool) -> bool {
        match self {
            Node::Join { left, right, op } if op.kind == JoinKind::Inner => {
                left.never_retracts(append_only_input) && right.never_retracts(append_only_input)
            }
            Node::Filter { input, .. }
            | Node::Project { input, .. }
            | Node::Unnest { input, .. } => input.never_retracts(append_only_input),
            Node::Union { inputs, .. } => {
                inputs.iter().all(|i| i.never_retracts(append_only_input))
            }
            // Distinct groups of rows that only arrive: a group appears once and stays.
            Node::Aggregate { input, op } if op.aggs.is_empty() => {
                input.never_retracts(append_only_input)
            }
            other => other.append_only(append_only_input),
        }
    }

    /// Tells each top-N, window and aggregate operator whether its input never retracts a
    /// row (see [`OrderedOp::with_input_never_retracting`],
    /// [`AggregateOp::with_input_never_retracting`]).
    pub fn mark_never_retracting(&mut self, append_only_input: &dyn Fn(TableId) -> bool) {
        match self {
            Node::Ordered { input, op } => {
                op.with_input_never_retracting(input.never_retracts(append_only_input));
            }
            Node::Aggregate { input, op } => {
                op.with_input_never_retracting(input.never_retracts(append_only_input));
            }
            Node::Join { left, right, op } => op.expiry.keep([
                left.never_retracts(append_only_input),
                right.never_retracts(append_only_input),
            ]),
            _ => {}
        }
        for child in self.children_mut() {
            child.mark_never_retracting(append_only_input);
        }
    }

    /// Empties every operator cache: an epoch failed to commit, so what they hold may be
    /// ahead of the store.
    pub fn forget_cached(&self) {
        match self {
            Node::Aggregate { op, .. } => op.cache.clear(),
            Node::Join { op, .. } => op.cache.clear(),
            Node::TemporalFilter { op, .. } => op.forget(),
            _ => {}
        }
        self.children().into_iter().for_each(Node::forget_cached);
    }

    /// Evicts from every operator cache of the tree that holds more than its share of the
    /// caches' budget while they together are over it (see `cache.rs`).
    pub fn trim_caches(&self) {
        match self {
            Node::Aggregate { op, .. } => op.cache.trim(),
            Node::Join { op, .. } => op.cache.trim(),
            _ => {}
        }
        self.children().into_iter().for_each(Node::trim_caches);
    }

    /// The direct inputs.
    pub fn children(&self) -> Vec<&Node> {
        match self {
            Node::Scan { .. } | Node::Constant { .. } => vec![],
            Node::Filter { input, .. }
            | Node::Ordered { input, .. }
            | Node::Unnest { input, .. }
            | Node::Project { input, .. }
            | Node::WindowClose { input, .. }
            | Node::TemporalFilter { input, .. }
            | Node::Aggregate { input, .. } => vec![input],
            Node::Join { left, right, .. } => vec![left, right],
            Node::Union { inputs, .. } => inputs.iter().collect(),
        }
    }

    /// The direct inputs, to change.
    fn children_mut(&mut self) -> Vec<&mut Node> {
        match self {
            Node::Scan { .. } | Node::Constant { .. } => vec![],
            Node::Filter { input, .. }
            | Node::Ordered { input, .. }
            | Node::Unnest { input, .. }
            | Node::Project { input, .. }
            | Node::WindowClose { input, .. }
            | Node::TemporalFilter { input, .. }
            | Node::Aggregate { input, .. } => vec![input],
            Node::Join { left, right, .. } => vec![left, right],
            Node::Union { inputs, .. } => inputs.iter_mut().collect(),
        }
    }

    /// The relations this node reads.
    pub fn relations(&self, out: &mut Vec<TableId>) {
        match self {
            Node::Scan { relation, .. } => out.push(*relation),
            Node::Filter { input, .. }
            | Node::Ordered { input, .. }
            | Node::Unnest { input, .. }
            | Node::Project { input, .. }
            | Node::WindowClose { input, .. }
            | Node::TemporalFilter { input, .. }
            | Node::Aggregate { input, .. } => input.relations(out),
            Node::Join { left, right, .. } => {
                left.relations(out);
                right.relations(out);
            }
            Node::Union { inputs, .. } => inputs.iter().for_each(|i| i.relations(out)),
            Node::Constant { .. } => {}
        }
    }

    /// Sources whose watermarks alone move some operator of the tree (a window-close gate,
    /// an aggregate closing groups).
    pub fn clock(&self, out: &mut Vec<TableId>) {
        match self {
            Node::WindowClose { op, .. } => out.extend(op.bound.sources()),
            Node::Aggregate { op, .. } => {
                out.extend(op.closing().map(|c| c.bound.sources()).unwrap_or_default())
            }
            Node::Join { op, .. } => out.extend(op.expiry_sources()),
            _ => {}
        }
        for c in self.children() {
            c.clock(out);
        }
    }

    /// When the next change scheduled by a temporal filter of the tree is due
    /// (microseconds); `None` when none is scheduled.
    pub fn next_due(&self) -> Option<i64> {
        let own = match self {
            Node::TemporalFilter { op, .. } => op.next_due(),
            _ => None,
        };
        self.children()
            .into_iter()
            .filter_map(Node::next_due)
            .chain(own)
            .min()
    }

    /// Whether a join of the tree reads a side from its table.
    pub fn reads_tables(&self) -> bool {
        matches!(self, Node::Join { op, .. } if op.reads_tables())
            || self.children().iter().any(|c| c.reads_tables())
    }

    /// The indexes its joins read table sides through.
    pub fn indexes_read(&self, out: &mut Vec<TableId>) {
        if let Node::Join { op, .. } = self {
            out.extend(op.tables.iter().flatten().filter_map(|t| t.index));
        }
        self.children().into_iter().for_each(|c| c.indexes_read(out));
    }

    /// Whether the tree holds a temporal filter.
    pub fn has_timers(&self) -> bool {
        matches!(self, Node::TemporalFilter { .. }) || self.children().iter().any(|c| c.has_timers())
    }

    /// Whether the epoch's changes can affect this node's output.
    pub(crate) fn touched(&self, changes: &EpochChanges, initial: bool) -> bool {
        match self {
            Node::Scan { relation, .. } => changes.changes(*relation),
            Node::Filter { input, .. }
            | Node::Project { input, .. }
            | Node::Unnest { input, .. }
            | Node::Ordered { input, .. } => input.touched(changes, initial),
            // A global aggregate emits its row at backfill even over empty input.
            Node::Aggregate { input, op } => {
                input.touched(changes, initial)
                    || (initial && op.is_global())
                    || op.closing_moved(changes)
            }
            Node::Join { left, right, op } => {
                left.touched(changes, initial)
                    || right.touched(changes, initial)
                    || op.expiry_moved(changes)
            }
            Node::Union { inputs, .. } => inputs.iter().any(|i| i.touched(changes, initial)),
            Node::Constant { .. } => initial,
            Node::WindowClose { input, op } => {
                initial || op.moved(changes) || input.touched(changes, initial)
            }
            Node::TemporalFilter { input, op } => {
                input.touched(changes, initial)
                    || op.next_due().is_some_and(|t| t <= changes.now())
            }
        }
    }

    /// This node's output changes for the epoch; `None` when nothing changed.
    pub fn eval(&self, changes: &EpochChanges, ctx: &mut EpochCtx<'_>) -> Result<Option<Delta>> {
        if !self.touched(changes, ctx.initial) {
            return Ok(None);
        }
        match self {
            Node::Scan {
                relation,
                projection,
                schema,
                ..
            } => {
                let mut parts = Vec::new();
                if let Some(rows) = changes.tables.get(relation).filter(|r| !r.is_empty()) {
                    // The projected columns straight from the rows (a short row's missing
                    // columns, added after it was written, are NULL); an UPDATE of columns
                    // not read changes nothing here.
                    let (values, weights) = delta::without_unread_updates(rows, projection);
                    if !values.is_empty() {
                        parts.push(Delta {
                            batch: rows_to_batch(&values, schema, projection)?,
                            weights,
                        });
                    }
                }
                for b in changes.appends.get(relation).into_iter().flatten() {
                    if b.num_rows() == 0 {
                        continue;
                    }
                    let columns = projection
                        .iter()
                        .map(|&i| Arc::clone(b.column(i)))
                        .collect();
                    let opts = datafusion::arrow::array::RecordBatchOptions::new()
                        .with_row_count(Some(b.num_rows()));
                    parts.push(Delta {
                        batch: RecordBatch::try_new_with_options(
                            Arc::clone(schema),
                            columns,
                            &opts,
                        )?,
                        weights: vec![1; b.num_rows()],
                    });
                }
                match parts.len() {
                    0 => Ok(None),
                    1 => Ok(parts.pop()),
                    _ => Ok(Some(Delta::concat(schema, parts)?)),
                }
            }
            Node::Filter { input, predicate } => {
                let Some(mut d) = input.eval(changes, ctx)? else {
                    return Ok(None);
                };
                let test = |d: &Delta| predicate.evaluate(&d.batch)?.into_array(d.len());
                let mask = match test(&d) {
                    Ok(m) => m,
                    Err(e) => {
                        d = bad_rows::without_bad_rows(&d, ctx, e, |d| test(d).map(|_| ()))?;
                        test(&d)?
                    }
                };
                let mask = mask.as_boolean_opt().ok_or_else(|| {
                    DataFusionError::Internal(format!("filter predicate is {}", mask.data_type()))
                })?;
                nonempty(d.filter(mask)?)
            }
            Node::Project {
                input,
                exprs,
                schema,
            } => {
                let Some(mut d) = input.eval(changes, ctx)? else {
                    return Ok(None);
                };
                let batch = match project_batch(&d.batch, exprs, schema) {
                    Ok(b) => b,
                    Err(e) => {
                        d = bad_rows::without_bad_rows(&d, ctx, e, |d| {
                            project_batch(&d.batch, exprs, schema).map(|_| ())
                        })?;
                        project_batch(&d.batch, exprs, schema)?
                    }
                };
                Ok(Some(Delta {
                    batch,
                    weights: d.weights,
                }))
            }
            Node::Aggregate { input, op } => {
                let d = input.eval(changes, ctx)?;
                op.apply(d, changes, ctx)
                    .and_then(|o| o.map_or(Ok(None), nonempty))
            }
            Node::Ordered { input, op } => {
                let d = input.eval(changes, ctx)?;
                op.apply(d, ctx).and_then(|o| o.map_or(Ok(None), nonempty))
            }
            Node::Unnest { input, op } => {
                let Some(d) = input.eval(changes, ctx)? else {
                    return Ok(None);
                };
                nonempty(op.apply(d)?)
            }
            Node::Join { left, right, op } => {
                let l = left.eval(changes, ctx)?;
                let r = right.eval(changes, ctx)?;
                op.apply(l, r, [left, right], changes, ctx)
                    .and_then(|o| o.map_or(Ok(None), nonempty))
            }
            Node::Union { inputs, schema } => {
                let mut parts = Vec::new();
                for i in inputs {
                    if let Some(d) = i.eval(changes, ctx)? {
                        let cols = fit_columns(d.batch.columns(), schema)?;
                        parts.push(Delta {
                            batch: RecordBatch::try_new(Arc::clone(schema), cols)?,
                            weights: d.weights,
                        });
                    }
                }
                if parts.is_empty() {
                    return Ok(None);
                }
                nonempty(Delta::concat(schema, parts)?)
            }
            Node::Constant { batch } => Ok(Some(Delta {
                batch: batch.clone(),
                weights: vec![1; batch.num_rows()],
            })),
            Node::TemporalFilter { input, op } => {
                let d = input.eval(changes, ctx)?;
                op.apply(d, changes, ctx)
            }
            Node::WindowClose { input, op } => {
                let d = input.eval(changes, ctx)?;
                let closed = op.apply(d, changes, ctx)?;
                if closed.is_empty() {
                    return Ok(None);
                }
                nonempty(Delta::from_rows(&closed, &op.schema)?)
            }
        }
    }

    /// A one-line-per-node rendering for EXPLAIN.
    pub fn explain(&self, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        let line = match self {
            Node::Scan {
                name, projection, ..
            } => format!("Scan: {name} columns={projection:?}"),
            Node::Filter { predicate, .. } => format!("Filter: {predicate}"),
            Node::Project { exprs, .. } => {
                format!(
                    "Project: {}",
                    exprs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            Node::Aggregate { op, .. } => op.describe(),
            Node::Ordered { op, .. } => op.describe(),
            Node::Unnest { op, .. } => op.describe(),
            Node::Join { op, .. } => op.describe(),
            Node::Union { inputs, .. } => format!("UnionAll: inputs={}", inputs.len()),
            Node::Constant { batch } => format!("Constant: rows={}", batch.num_rows()),
            Node::WindowClose { op, .. } => op.describe(),
            Node::TemporalFilter { op, .. } => op.describe(),
        };
        out.push_str(&pad);
        out.push_str(&line);
        out.push('\n');
        match self {
            Node::Scan { .. } | Node::Constant { .. } => {}
            Node::Filter { input, .. }
            | Node::Ordered { input, .. }
            | Node::Unnest { input, .. }
            | Node::Project { input, .. }
            | Node::WindowClose { input, .. }
            | Node::TemporalFilter { input, .. }
            | Node::Aggregate { input, .. } => input.explain(depth + 1, out),
            Node::Join { left, right, .. } => {
                left.explain(depth + 1, out);
                right.explain(depth + 1, out);
            }
            Node::Union { inputs, .. } => inputs.iter().for_each(|i| i.explain(depth + 1, out)),
        }
    }
}

fn nonempty(d: Delta) -> Result<Option<Delta>> {
    Ok(if d.is_empty() { None } else { Some(d) })
}

/// Evaluates `exprs` over `batch` into a batch of `schema`.
pub(crate) fn project_batch(
    batch: &RecordBatch,
    exprs: &[Arc<dyn PhysicalExpr>],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let mut cols = Vec::with_capacity(exprs.len());
    for e in exprs {
        cols.push(e.evaluate(batch)?.into_array(batch.num_rows())?);
    }
    let cols = fit_columns(&cols, schema)?;
    let opts =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        cols,
        &opts,
    )?)
}

/// Casts arrays to the types of `schema`'s fields where they differ.
pub(crate) fn fit_columns(cols: &[ArrayRef], schema: &SchemaRef) -> Result<Vec<ArrayRef>> {
    cols.iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                Ok(cast(c, f.data_type())?)
            }
        })
        .collect()
}
