//! Grouped aggregation with retractions.
//!
//! State (under the operator's prefix):
//! ```text
//! 'g' <group row>                                  → [count, accumulator fields…] (row_codec)
//!     (at a view's root, new views keep this accumulator in the group's contents entry
//!     instead: see contents.rs)
//! 'm' <agg: u8> <len-prefixed group row> <value key> → count (i64 BE) ++ [value] (row_codec)
//! 'm' <agg: u8> <len-prefixed group row> <value key> <occurrence: 12 bytes> → nothing, or
//!     [value] (row_codec) when the key does not decode back to it (MIN/MAX of views created
//!     with occurrences: one entry per occurrence of a value; multiset.rs `Occurrences`)
//! ```
//! MIN keys are the memcomparable value encoding, MAX keys its bitwise complement, so the
//! current extreme is always the first key of the group's range: deleting it costs one short
//! scan, never a recompute of the group. A MAX whose argument (and FILTER) a MIN of the same
//! operator shares keeps no multiset: it reads the MIN's backwards (its last key), so each
//! value is written once for both. COUNT(DISTINCT) keys are the value's row encoding.
//! Ordered aggregates key each value by its `ORDER BY` key (memcomparable, in the requested
//! directions) followed by the value's row encoding: `first_value` (also `last_value`, with the
//! order reversed, and so `DISTINCT ON`) reads the first key; `string_agg` and `array_agg` read
//! the touched group's values in order.
//!
//! With occurrences (`with_occurrences`, what new views get), MIN/MAX keep one entry per
//! occurrence of a value instead of a counted entry per distinct value: an arrival is a put
//! under a new occurrence id (the epoch's snapshot sequence number, then a counter), a
//! retraction deletes one of the value's entries found by a short scan. Puts cost flushes
//! and compactions less than merge operands do (benchmarks.md, 2026-11-25).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::HashMap;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use freshet_common::{Datum, PgError, SqlState};
use freshet_sql::df_convert::array_to_datums;
use freshet_state::{key_codec, row_codec};
use hashbrown::{DefaultHashBuilder, HashTable};
use smallvec::SmallVec;

mod closing;
mod contents;
mod finish;
mod multiset;
mod settle;

pub use closing::Closing;
pub use contents::ContentsLayout;

use finish::{add_weighted, as_i64, finish_bool, finish_sum};
use multiset::only_arrivals;

use super::cache::{AccCache, Found};
use crate::delta::{encode, push_len_prefixed, Delta};
use crate::epoch::{state_err, EpochChanges, EpochCtx};

/// The aggregate functions maintained incrementally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
    BoolAnd,
    BoolOr,
    StringAgg,
    ArrayAgg,
    FirstValue,
    /// A scalar subquery's value: its one row's value, NULL without rows, an error with more.
    Single,
}

impl AggKind {
    /// Whether NULL inputs are ignored (they are for every aggregate but these).
    fn skips_nulls(self) -> bool {
        !matches!(
            self,
            AggKind::ArrayAgg | AggKind::FirstValue | AggKind::Single
        )
    }

    /// Whether the aggregate keeps a multiset of its inputs under 'm' keys.
    fn keeps_values(self) -> bool {
        !matches!(
            self,
            AggKind::Count | AggKind::Sum | AggKind::Avg | AggKind::BoolAnd | AggKind::BoolOr
        )
    }
}

/// One aggregate of an [`AggregateOp`].
#[derive(Debug)]
pub struct AggSpec {
    pub kind: AggKind,
    /// The argument; `None` for `count(*)`.
    pub arg: Option<Arc<dyn PhysicalExpr>>,
    /// `FILTER (WHERE …)`.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Arrow type of the argument.
    pub arg_type: DataType,
    /// Arrow type of the result.
    pub out_type: DataType,
    /// `ORDER BY` of an ordered aggregate (string_agg, array_agg, first_value).
    pub order: Vec<PhysicalSortExpr>,
    /// string_agg's delimiter.
    pub delimiter: String,
}

/// Multiset entries read ahead for an epoch: full key → stored value.
type Prefetched = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// A value's key in its aggregate's multiset: most fit inline.
type ValueKey = SmallVec<[u8; 16]>;

/// A value with its key in the aggregate's multiset (empty when it keeps none) and its weight.
type Keyed = (ValueKey, Datum, i64);

/// GROUP BY with aggregates; DISTINCT is the case without aggregates.
#[derive(Debug)]
pub struct AggregateOp {
    pub prefix: Vec<u8>,
    /// The groups' accumulators, cached decoded.
    pub cache: AccCache,
    pub group: Vec<Arc<dyn PhysicalExpr>>,
    pub aggs: Vec<AggSpec>,
    /// Per aggregate: for a MAX, the MIN over the same argument (and FILTER) whose multiset
    /// it reads from the end instead of keeping its own.
    shares: Vec<Option<usize>>,
    pub schema: SchemaRef,
    /// MIN/MAX keep one entry per occurrence of a value (see the module documentation).
    occurrences: bool,
    /// Numbers occurrences within an epoch (never reset: unique within any one snapshot).
    next_occurrence: AtomicU32,
    /// This epoch's staged MIN/MAX arrivals, as contents log records (contents_log.rs,
    /// "Staged occurrences"), for [`AggregateOp::take_staged`].
    staged: Mutex<Vec<u8>>,
    /// Arrivals are staged (at a logged view's root): off after a fold window in which a
    /// MIN/MAX value was retracted, on again after one without.
    staging: AtomicBool,
    /// A MIN/MAX value was retracted since the last fold.
    retracted: AtomicBool,
    /// A contents log may hold this operator's staged occurrences (until the next fold).
    staged_in_log: AtomicBool,
    /// The group column whose bound closes groups (see closing.rs).
    closing: Option<Closing>,
    /// The input never retracts a row: MIN/MAX follow arrivals in the accumulator alone and
    /// keep no multiset (see [`AggregateOp::with_input_never_retracting`]).
    input_never_retracts: bool,
}

/// Where the groups' accumulators are stored.
enum AccHome<'a> {
    /// Under the operator's own `'g'` keys.
    Own,
    /// In the view's contents entries, after each group's row.
    Contents(&'a ContentsLayout),
}

impl AccHome<'_> {
    /// The accumulator's row encoding within a stored value.
    fn acc<'b>(&self, stored: &'b [u8]) -> Result<&'b [u8]> {
        match self {
            AccHome::Own => Ok(stored),
            AccHome::Contents(_) => contents::acc_of(stored),
        }
    }
}

/// One touched group's outcome of an epoch.
struct Settled {
    /// The output row before the epoch, if the group had one.
    old: Option<Vec<Datum>>,
    /// The output row after the epoch, if the group has one.
    new: Option<Vec<Datum>>,
    /// The accumulator after the epoch (its count first).
    acc: Vec<Datum>,
}

/// The groups an epoch touched.
#[derive(Default)]
struct Touched {
    /// Their state keys (where the accumulators are kept).
    keys: Vec<Vec<u8>>,
    /// Where the accumulator cache holds them.
    found: Found,
    /// Their outcomes.
    settled: Vec<Settled>,
    /// The groups the epoch created (row encoding, closing value), for an aggregate with a
    /// closing column.
    created: Vec<(Vec<u8>, Datum)>,
}

/// The changes one epoch brings to one group.
struct GroupChange {
    /// The group's row encoding (its identity within the operator).
    key: Vec<u8>,
    datums: Vec<Datum>,
    count: i64,
}

/// An epoch's input changes by group: built without an allocation per row or per group and
/// aggregate (most epochs of a large view bring one row to each group they touch).
struct Collected {
    /// The touched groups, in first-touched order.
    groups: Vec<GroupChange>,
    /// Per aggregate: (value, weight) of non-NULL, filter-passing inputs, group after group
    /// (empty for a MAX reading its MIN's).
    values: Vec<Vec<Keyed>>,
    /// Per aggregate: where each group's values start in `values`, and a last end.
    bounds: Vec<Vec<u32>>,
}

impl Collected {
    /// Aggregate `agg`'s values of group `g`.
    fn values(&self, g: usize, agg: usize) -> &[Keyed] {
        let b = &self.bounds[agg];
        &self.values[agg][b[g] as usize..b[g + 1] as usize]
    }
}

impl AggregateOp {
    pub fn new(
        prefix: Vec<u8>,
        group: Vec<Arc<dyn PhysicalExpr>>,
        aggs: Vec<AggSpec>,
        schema: SchemaRef,
    ) -> Self {
        let same =
            |a: &Option<Arc<dyn PhysicalExpr>>, b: &Option<Arc<dyn PhysicalExpr>>| match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => a == b,
                _ => false,
            };
        let shares = aggs
            .iter()
            .map(|max| {
                if max.kind != AggKind::Max {
                    return None;
                }
                aggs.iter().position(|min| {
                    min.kind == AggKind::Min
                        && min.arg.is_some()
                        && same(&min.arg, &max.arg)
                        && same(&min.filter, &max.filter)
                        && min.arg_type == max.arg_type
                })
            })
            .collect();
        AggregateOp {
            prefix,
            cache: AccCache::default(),
            group,
            aggs,
            shares,
            schema,
            occurrences: false,
            next_occurrence: AtomicU32::new(0),
            staged: Mutex::new(Vec::new()),
            staging: AtomicBool::new(true),
            retracted: AtomicBool::new(false),
            staged_in_log: AtomicBool::new(false),
            closing: None,
            input_never_retracts: false,
        }
    }

    /// Marks the input as never retracting a row: a MIN or MAX then only ever moves one way,
    /// so the accumulator's value and each epoch's arrivals decide it, and no multiset of
    /// values (one write per row) is kept for retractions that cannot come.
    pub fn with_input_never_retracting(&mut self, never: bool) {
        self.input_never_retracts = never;
    }

    /// Whether MIN/MAX keep their values' multisets.
    fn min_max_multisets(&self) -> bool {
        !self.input_never_retracts
    }

    /// With `on`, MIN/MAX keep one entry per occurrence of a value (see the module
    /// documentation). Decided when a view is created and recorded in its catalog entry.
    pub fn with_occurrences(mut self, on: bool) -> Self {
        self.occurrences = on;
        self
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Hands this epoch's staged occurrence records (empty when none) to `append`, for the
    /// view's log entry: the log then holds staged occurrences until the next fold. The
    /// buffer is kept for the next epoch (a fresh one would fault its pages in again).
    pub(crate) fn take_staged(&self, append: impl FnOnce(&[u8])) {
        let mut staged = self.staged_buffer();
        if !staged.is_empty() {
            self.staged_in_log.store(true, Ordering::SeqCst);
        }
        append(&staged);
        staged.clear();
    }

    /// Bytes of this epoch's staged occurrence records so far.
    pub(crate) fn staged_bytes(&self) -> usize {
        self.staged_buffer().len()
    }

    /// The contents log holding this operator's staged occurrences was folded: they are in
    /// its state now. Staging goes on unless a value was retracted since the last fold.
    pub(crate) fn folded(&self) {
        self.staged_in_log.store(false, Ordering::SeqCst);
        let retracted = self.retracted.swap(false, Ordering::SeqCst);
        self.staging.store(!retracted, Ordering::SeqCst);
    }

    fn staged_buffer(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.staged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Without GROUP BY: exactly one output row, even over empty input.
    pub fn is_global(&self) -> bool {
        self.group.is_empty()
    }

    pub fn describe(&self) -> String {
        let aggs: Vec<String> = self.aggs.iter().map(|a| format!("{:?}", a.kind)).collect();
        let closing = match &self.closing {
            Some(c) => format!(" closes group column {} below {}", c.column, c.bound),
            None => String::new(),
        };
        let arrivals = if self.input_never_retracts && self.aggs.iter().any(|a| {
            matches!(a.kind, AggKind::Min | AggKind::Max)
        }) {
            " min/max from arrivals"
        } else {
            ""
        };
        format!(
            "Aggregate: group_keys={} aggregates=[{}]{closing}{arrivals}",
            self.group.len(),
            aggs.join(", ")
        )
    }

    fn group_key(&self, group: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'g');
        k.extend_from_slice(group);
        k
    }

    fn multiset_prefix(&self, agg: usize, group: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 6 + group.len());
        k.extend_from_slice(&self.prefix);
        k.push(b'm');
        k.push(agg as u8);
        push_len_prefixed(&mut k, group);
        k
    }

    /// Appends to `k` the key of `value` in aggregate `agg`'s multiset; `order` are its
    /// ORDER BY values.
    fn value_key(&self, agg: usize, value: &Datum, order: &[Datum], k: &mut Vec<u8>) {
        let spec = &self.aggs[agg];
        match spec.kind {
            AggKind::Min => key_codec::encode_key(std::slice::from_ref(value), k),
            AggKind::Max => {
                let from = k.len();
                key_codec::encode_key(std::slice::from_ref(value), k);
                k[from..].iter_mut().for_each(|b| *b = !*b);
            }
            AggKind::StringAgg | AggKind::ArrayAgg | AggKind::FirstValue => {
                for (v, s) in order.iter().zip(&spec.order) {
                    key_codec::encode_sort_value(v, s.options.descending, s.options.nulls_first, k);
                }
                row_codec::encode_row(std::slice::from_ref(value), k);
            }
            _ => row_codec::encode_row(std::slice::from_ref(value), k),
        }
    }

    /// Applies one epoch's input changes; returns the output changes.
    pub fn apply(
        &self,
        input: Option<Delta>,
        changes: &EpochChanges,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<Option<Delta>> {
        let Touched {
            keys,
            found,
            settled,
            created,
        } = self.settle(input, ctx, &AccHome::Own, true)?;
        let mut out: Vec<(Vec<Datum>, i64)> = Vec::new();
        let mut accs = Vec::with_capacity(keys.len());
        for (key, s) in keys.iter().zip(settled) {
            if as_i64(&s.acc[0]) == 0 {
                ctx.batch.delete(key);
                accs.push(None);
            } else {
                let mut buf = Vec::new();
                row_codec::encode_row(&s.acc, &mut buf);
                ctx.batch.put(key, &buf);
                accs.push(Some(s.acc));
            }
            if s.old != s.new {
                out.extend(s.old.map(|r| (r, -1)));
                out.extend(s.new.map(|r| (r, 1)));
            }
        }
        if !ctx.preview {
            self.cache.set_accs(&found, &keys, accs);
        }
        self.close(&created, true, changes, ctx)?;
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(Delta::from_rows(&out, &self.schema)?))
    }

    fn empty_acc(&self) -> Vec<Datum> {
        let mut acc = vec![Datum::Int64(0)];
        for spec in &self.aggs {
            match spec.kind {
                // MIN/MAX keep their current result, so most epochs need no scan.
                AggKind::Min | AggKind::Max => acc.push(Datum::Null),
                AggKind::StringAgg | AggKind::ArrayAgg | AggKind::FirstValue | AggKind::Single => {}
                AggKind::Count | AggKind::CountDistinct => acc.push(Datum::Int64(0)),
                AggKind::Sum | AggKind::Avg => acc.extend([Datum::Int64(0), Datum::Null]),
                AggKind::BoolAnd | AggKind::BoolOr => {
                    acc.extend([Datum::Int64(0), Datum::Int64(0)])
                }
            }
        }
        acc
    }

    /// No changes.
    fn collect_nothing(&self) -> Collected {
        Collected {
            groups: Vec::new(),
            values: vec![Vec::new(); self.aggs.len()],
            bounds: vec![vec![0]; self.aggs.len()],
        }
    }

    /// Evaluates group keys and arguments of `d`, grouping its rows (groups in first-seen
    /// order, each group's rows in input order).
    fn collect(&self, d: &Delta) -> Result<Collected> {
        let n = d.len();
        let datums_of = |e: &Arc<dyn PhysicalExpr>| -> Result<Vec<Datum>> {
            array_to_datums(&e.evaluate(&d.batch)?.into_array(n)?)
        };
        let group_cols: Vec<Vec<Datum>> =
            self.group.iter().map(datums_of).collect::<Result<_>>()?;
        // Each row's group, the groups made on first sight.
        let mut groups: Vec<GroupChange> = Vec::new();
        let mut index: HashTable<u32> = HashTable::new();
        let hasher = DefaultHashBuilder::default();
        let mut row_group: Vec<u32> = Vec::with_capacity(n);
        let mut key = Vec::new();
        for row in 0..n {
            key.clear();
            row_codec::encode_row_header(group_cols.len(), &mut key);
            for c in &group_cols {
                row_codec::encode_value(&c[row], &mut key);
            }
            let hash = hasher.hash_one(key.as_slice());
            let g = match index.find(hash, |&g| groups[g as usize].key == key) {
                Some(&g) => g as usize,
                None => {
                    let g = groups.len();
                    index.insert_unique(hash, g as u32, |&g| {
                        hasher.hash_one(groups[g as usize].key.as_slice())
                    });
                    groups.push(GroupChange {
                        key: key.clone(),
                        datums: group_cols.iter().map(|c| c[row].clone()).collect(),
                        count: 0,
                    });
                    g
                }
            };
            groups[g].count += d.weights[row];
            row_group.push(g as u32);
        }
        // The rows in group order (a counting sort, stable).
        let mut start = vec![0u32; groups.len() + 1];
        for &g in &row_group {
            start[g as usize + 1] += 1;
        }
        for g in 0..groups.len() {
            start[g + 1] += start[g];
        }
        let mut next = start.clone();
        let mut order = vec![0u32; n];
        for (row, &g) in row_group.iter().enumerate() {
            order[next[g as usize] as usize] = row as u32;
            next[g as usize] += 1;
        }
        let mut values = Vec::with_capacity(self.aggs.len());
        let mut bounds = Vec::with_capacity(self.aggs.len());
        let mut scratch = Vec::new();
        for (i, spec) in self.aggs.iter().enumerate() {
            let mut vals: Vec<Keyed> = Vec::new();
            let mut ends: Vec<u32> = Vec::with_capacity(groups.len() + 1);
            ends.push(0);
            if self.shares[i].is_some() {
                // Reads the values its MIN collects.
                ends.resize(groups.len() + 1, 0);
                values.push(vals);
                bounds.push(ends);
                continue;
            }
            let order_cols: Vec<Vec<Datum>> = spec
                .order
                .iter()
                .map(|o| datums_of(&o.expr))
                .collect::<Result<_>>()?;
            let arg = spec.arg.as_ref().map(datums_of).transpose()?;
            let filter = spec
                .filter
                .as_ref()
                .map(|e| e.evaluate(&d.batch)?.into_array(n))
                .transpose()?;
            let filter = filter
                .as_ref()
                .map(|f| {
                    f.as_boolean_opt().ok_or_else(|| {
                        DataFusionError::Internal("aggregate FILTER is not boolean".into())
                    })
                })
                .transpose()?;
            vals.reserve(n);
            for g in 0..groups.len() {
                for &row in &order[start[g] as usize..start[g + 1] as usize] {
                    let row = row as usize;
                    if let Some(f) = filter {
                        if !f.is_valid(row) || !f.value(row) {
                            continue;
                        }
                    }
                    let v = match &arg {
                        Some(c) => c[row].clone(),
                        None => Datum::Bool(true),
                    };
                    if v.is_null() && spec.kind.skips_nulls() {
                        continue;
                    }
                    let key = if spec.kind.keeps_values() {
                        let order: Vec<Datum> = order_cols.iter().map(|c| c[row].clone()).collect();
                        scratch.clear();
                        self.value_key(i, &v, &order, &mut scratch);
                        ValueKey::from_slice(&scratch)
                    } else {
                        ValueKey::new()
                    };
                    vals.push((key, v, d.weights[row]));
                }
                ends.push(vals.len() as u32);
            }
            values.push(vals);
            bounds.push(ends);
        }
        Ok(Collected {
            groups,
            values,
            bounds,
        })
    }
}
