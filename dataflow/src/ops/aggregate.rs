//! Grouped aggregation with retractions.
//!
//! State (under the operator's prefix):
//! ```text
//! 'g' <group row>                                  → [count, accumulator fields…] (row_codec)
//! 'm' <agg: u8> <len-prefixed group row> <value key> → count (i64 BE) ++ [value] (row_codec)
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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use freshet_common::{Datum, PgError, SqlState};
use freshet_sql::df_convert::array_to_datums;
use freshet_state::{key_codec, row_codec, COUNT_LEN};

use super::cache::StateCache;
use super::merge::{merged_scan, Entry};
use crate::delta::{encode, push_len_prefixed, Delta};
use crate::epoch::{state_err, EpochCtx};

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

/// The first value of a multiset after this epoch's `changed` entries (the last when
/// `reverse`; NULL when empty).
fn first_surviving(
    ctx: &EpochCtx<'_>,
    prefix: &[u8],
    changed: &BTreeMap<Vec<u8>, (Datum, i64, i64)>,
    reverse: bool,
) -> Result<Datum> {
    let mut first = Datum::Null;
    merged_scan(ctx.snapshot, prefix, changed, reverse, |_, entry| {
        match entry {
            Entry::Changed((_, _, n)) if *n <= 0 => return Ok(true),
            Entry::Changed((v, _, _)) => first = v.clone(),
            Entry::Stored(b) => first = entry_value(b)?.1,
        }
        Ok(false)
    })?;
    Ok(first)
}

/// A value with its key in the aggregate's multiset (empty when it keeps none) and its weight.
type Keyed = (Vec<u8>, Datum, i64);

/// GROUP BY with aggregates; DISTINCT is the case without aggregates.
#[derive(Debug)]
pub struct AggregateOp {
    pub prefix: Vec<u8>,
    /// The groups' accumulators, cached.
    pub cache: StateCache,
    pub group: Vec<Arc<dyn PhysicalExpr>>,
    pub aggs: Vec<AggSpec>,
    /// Per aggregate: for a MAX, the MIN over the same argument (and FILTER) whose multiset
    /// it reads from the end instead of keeping its own.
    shares: Vec<Option<usize>>,
    pub schema: SchemaRef,
}

/// The changes one epoch brings to one group.
struct GroupChange {
    datums: Vec<Datum>,
    count: i64,
    /// Per aggregate: (value, weight) of non-NULL, filter-passing inputs.
    values: Vec<Vec<Keyed>>,
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
            cache: StateCache::default(),
            group,
            aggs,
            shares,
            schema,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Without GROUP BY: exactly one output row, even over empty input.
    pub fn is_global(&self) -> bool {
        self.group.is_empty()
    }

    pub fn describe(&self) -> String {
        let aggs: Vec<String> = self.aggs.iter().map(|a| format!("{:?}", a.kind)).collect();
        format!(
            "Aggregate: group_keys={} aggregates=[{}]",
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
        let mut k = self.prefix.clone();
        k.push(b'm');
        k.push(agg as u8);
        push_len_prefixed(&mut k, group);
        k
    }

    /// The key of `value` in aggregate `agg`'s multiset; `order` are its ORDER BY values.
    fn value_key(&self, agg: usize, value: &Datum, order: &[Datum]) -> Vec<u8> {
        let mut k = Vec::new();
        let spec = &self.aggs[agg];
        match spec.kind {
            AggKind::Min => key_codec::encode_key(std::slice::from_ref(value), &mut k),
            AggKind::Max => {
                key_codec::encode_key(std::slice::from_ref(value), &mut k);
                k.iter_mut().for_each(|b| *b = !*b);
            }
            AggKind::StringAgg | AggKind::ArrayAgg | AggKind::FirstValue => {
                for (v, s) in order.iter().zip(&spec.order) {
                    key_codec::encode_sort_value(
                        v,
                        s.options.descending,
                        s.options.nulls_first,
                        &mut k,
                    );
                }
                row_codec::encode_row(std::slice::from_ref(value), &mut k);
            }
            _ => row_codec::encode_row(std::slice::from_ref(value), &mut k),
        }
        k
    }

    /// Applies one epoch's input changes; returns the output changes.
    pub fn apply(&self, input: Option<Delta>, ctx: &mut EpochCtx<'_>) -> Result<Option<Delta>> {
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut groups: HashMap<Vec<u8>, GroupChange> = HashMap::new();
        if let Some(d) = &input {
            self.collect(d, &mut order, &mut groups)?;
        }
        if ctx.initial && self.is_global() && groups.is_empty() {
            let key = encode(&[]);
            order.push(key.clone());
            groups.insert(
                key,
                GroupChange {
                    datums: vec![],
                    count: 0,
                    values: vec![Vec::new(); self.aggs.len()],
                },
            );
        }
        if order.is_empty() {
            return Ok(None);
        }
        let keys: Vec<Vec<u8>> = order.iter().map(|g| self.group_key(g)).collect();
        let old_accs = self.cache.multi_get(ctx.snapshot, &keys)?;
        // Every multiset entry this epoch touches, read in one MultiGet.
        let mut value_keys: Vec<Vec<u8>> = Vec::new();
        for gbytes in &order {
            for (i, values) in groups[gbytes].values.iter().enumerate() {
                let kind = self.aggs[i].kind;
                let blind = matches!(kind, AggKind::Min | AggKind::Max) && only_arrivals(values);
                if kind.keeps_values() && !values.is_empty() && !blind {
                    let prefix = self.multiset_prefix(i, gbytes);
                    value_keys.extend(
                        values
                            .iter()
                            .map(|(k, _, _)| [prefix.as_slice(), k].concat()),
                    );
                }
            }
        }
        value_keys.sort();
        value_keys.dedup();
        let stored = ctx.snapshot.multi_get(&value_keys).map_err(state_err)?;
        let prefetched: HashMap<Vec<u8>, Option<Vec<u8>>> =
            value_keys.into_iter().zip(stored).collect();
        let mut out: Vec<(Vec<Datum>, i64)> = Vec::new();
        for ((gbytes, key), old) in order.iter().zip(&keys).zip(old_accs) {
            let change = &groups[gbytes];
            let old_acc = match old {
                Some(b) => row_codec::decode_row(&b).map_err(state_err)?,
                None => self.empty_acc(),
            };
            let old_count = as_i64(&old_acc[0]);
            let new_count = old_count + change.count;
            if new_count < 0 {
                return Err(DataFusionError::Internal(
                    "aggregate group count went negative".into(),
                ));
            }
            if new_count > 1 && self.aggs.iter().any(|a| a.kind == AggKind::Single) {
                return Err(DataFusionError::External(Box::new(PgError::new(
                    SqlState::CARDINALITY_VIOLATION,
                    "more than one row returned by a subquery used as an expression",
                ))));
            }
            let mut new_acc = old_acc.clone();
            new_acc[0] = Datum::Int64(new_count);
            let mut old_out = change.datums.clone();
            let mut new_out = change.datums.clone();
            let mut field = 1;
            for (i, spec) in self.aggs.iter().enumerate() {
                let values = &change.values[i];
                match spec.kind {
                    AggKind::Min | AggKind::Max => {
                        let old_v = old_acc[field].clone();
                        let new_v = match self.shares[i] {
                            Some(min) => self.update_shared_max(
                                min,
                                gbytes,
                                &old_v,
                                &change.values[min],
                                &prefetched,
                                ctx,
                            )?,
                            None => {
                                let prefix = self.multiset_prefix(i, gbytes);
                                self.update_min_max(i, &prefix, &old_v, values, &prefetched, ctx)?
                            }
                        };
                        new_acc[field] = new_v.clone();
                        old_out.push(old_v);
                        new_out.push(new_v);
                        field += 1;
                    }
                    AggKind::FirstValue | AggKind::Single => {
                        let prefix = self.multiset_prefix(i, gbytes);
                        let (old_v, new_v) =
                            self.update_extreme(&prefix, values, &prefetched, ctx)?;
                        old_out.push(old_v);
                        new_out.push(new_v);
                    }
                    AggKind::StringAgg | AggKind::ArrayAgg => {
                        let prefix = self.multiset_prefix(i, gbytes);
                        let (old_v, new_v) =
                            self.update_list(i, &prefix, values, &prefetched, ctx)?;
                        old_out.push(old_v);
                        new_out.push(new_v);
                    }
                    AggKind::CountDistinct => {
                        let prefix = self.multiset_prefix(i, gbytes);
                        let old_n = as_i64(&old_acc[field]);
                        let new_n =
                            old_n + self.update_distinct(&prefix, values, &prefetched, ctx)?;
                        new_acc[field] = Datum::Int64(new_n);
                        old_out.push(Datum::Int64(old_n));
                        new_out.push(Datum::Int64(new_n));
                        field += 1;
                    }
                    AggKind::Count => {
                        let old_n = as_i64(&old_acc[field]);
                        let new_n = old_n + values.iter().map(|(_, _, w)| w).sum::<i64>();
                        new_acc[field] = Datum::Int64(new_n);
                        old_out.push(Datum::Int64(old_n));
                        new_out.push(Datum::Int64(new_n));
                        field += 1;
                    }
                    AggKind::Sum | AggKind::Avg => {
                        let (old_n, old_sum) =
                            (as_i64(&old_acc[field]), old_acc[field + 1].clone());
                        let mut n = old_n;
                        let mut sum = old_sum.clone();
                        for (_, v, w) in values {
                            n += w;
                            sum = add_weighted(&sum, v, *w)?;
                        }
                        new_acc[field] = Datum::Int64(n);
                        new_acc[field + 1] = sum.clone();
                        old_out.push(finish_sum(spec, old_n, &old_sum)?);
                        new_out.push(finish_sum(spec, n, &sum)?);
                        field += 2;
                    }
                    AggKind::BoolAnd | AggKind::BoolOr => {
                        let (old_t, old_f) = (as_i64(&old_acc[field]), as_i64(&old_acc[field + 1]));
                        let (mut t, mut f) = (old_t, old_f);
                        for (_, v, w) in values {
                            match v {
                                Datum::Bool(true) => t += w,
                                _ => f += w,
                            }
                        }
                        new_acc[field] = Datum::Int64(t);
                        new_acc[field + 1] = Datum::Int64(f);
                        old_out.push(finish_bool(spec.kind, old_t, old_f));
                        new_out.push(finish_bool(spec.kind, t, f));
                        field += 2;
                    }
                }
            }
            let old_exists = self.is_global() || old_count > 0;
            let new_exists = self.is_global() || new_count > 0;
            // A global aggregate's row appears at backfill: there is no "old" row before it.
            let old_exists = old_exists && !(ctx.initial && self.is_global());
            if old_exists && new_exists && old_out == new_out {
                // unchanged output; state may still have changed
            } else {
                if old_exists {
                    out.push((old_out, -1));
                }
                if new_exists {
                    out.push((new_out, 1));
                }
            }
            if new_count == 0 {
                self.cache.delete(ctx.batch, key.clone());
            } else {
                let mut buf = Vec::new();
                row_codec::encode_row(&new_acc, &mut buf);
                self.cache.put(ctx.batch, key.clone(), buf);
            }
        }
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

    /// Evaluates group keys and arguments of `d`, grouping its rows.
    fn collect(
        &self,
        d: &Delta,
        order: &mut Vec<Vec<u8>>,
        groups: &mut HashMap<Vec<u8>, GroupChange>,
    ) -> Result<()> {
        let n = d.len();
        let datums_of = |e: &Arc<dyn PhysicalExpr>| -> Result<Vec<Datum>> {
            array_to_datums(&e.evaluate(&d.batch)?.into_array(n)?)
        };
        let group_cols: Vec<Vec<Datum>> =
            self.group.iter().map(datums_of).collect::<Result<_>>()?;
        let mut arg_cols: Vec<Option<Vec<Datum>>> = Vec::with_capacity(self.aggs.len());
        let mut filter_cols: Vec<Option<ArrayRef>> = Vec::with_capacity(self.aggs.len());
        let mut order_cols: Vec<Vec<Vec<Datum>>> = Vec::with_capacity(self.aggs.len());
        for spec in &self.aggs {
            order_cols.push(
                spec.order
                    .iter()
                    .map(|o| datums_of(&o.expr))
                    .collect::<Result<_>>()?,
            );
            arg_cols.push(spec.arg.as_ref().map(datums_of).transpose()?);
            filter_cols.push(
                spec.filter
                    .as_ref()
                    .map(|e| e.evaluate(&d.batch)?.into_array(n))
                    .transpose()?,
            );
        }
        for row in 0..n {
            let w = d.weights[row];
            let datums: Vec<Datum> = group_cols.iter().map(|c| c[row].clone()).collect();
            let key = encode(&datums);
            let g = match groups.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    order.push(e.key().clone());
                    e.insert(GroupChange {
                        datums,
                        count: 0,
                        values: vec![Vec::new(); self.aggs.len()],
                    })
                }
            };
            g.count += w;
            for i in 0..self.aggs.len() {
                if self.shares[i].is_some() {
                    // Reads the values its MIN collects.
                    continue;
                }
                if let Some(f) = &filter_cols[i] {
                    let f = f.as_boolean_opt().ok_or_else(|| {
                        DataFusionError::Internal("aggregate FILTER is not boolean".into())
                    })?;
                    if !f.is_valid(row) || !f.value(row) {
                        continue;
                    }
                }
                let v = match &arg_cols[i] {
                    Some(c) => c[row].clone(),
                    None => Datum::Bool(true),
                };
                let kind = self.aggs[i].kind;
                if v.is_null() && kind.skips_nulls() {
                    continue;
                }
                let key = if kind.keeps_values() {
                    let order: Vec<Datum> = order_cols[i].iter().map(|c| c[row].clone()).collect();
                    self.value_key(i, &v, &order)
                } else {
                    Vec::new()
                };
                g.values[i].push((key, v, w));
            }
        }
        Ok(())
    }

    /// Applies value changes to a multiset whose result is its first value (MIN, MAX,
    /// first_value); returns (old result, new result).
    fn update_extreme(
        &self,
        prefix: &[u8],
        values: &[Keyed],
        prefetched: &Prefetched,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<(Datum, Datum)> {
        let old_first = ctx
            .snapshot
            .scan(prefix, prefix, None, 1)
            .map_err(state_err)?;
        let old_v = match old_first.first() {
            Some((_, v)) => entry_value(v)?.1,
            None => Datum::Null,
        };
        if values.is_empty() {
            return Ok((old_v.clone(), old_v));
        }
        let changed = self.apply_multiset(prefix, values, prefetched, ctx)?;
        Ok((old_v, first_surviving(ctx, prefix, &changed, false)?))
    }

    /// MIN/MAX: applies value changes to the multiset; returns the new result. When no value
    /// lost a count this epoch, the result is the smaller of the old one and the first added
    /// key: no scan. Otherwise one ordered scan, stopping at the first surviving value.
    fn update_min_max(
        &self,
        agg: usize,
        prefix: &[u8],
        old_v: &Datum,
        values: &[Keyed],
        prefetched: &Prefetched,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<Datum> {
        if values.is_empty() {
            return Ok(old_v.clone());
        }
        if only_arrivals(values) {
            // Counts only grow: merge them in unread; the result is the smaller of the old
            // one and the first arriving value.
            let mut first: Option<(&[u8], &Datum)> = None;
            for (k, v, w) in values {
                ctx.batch
                    .merge([prefix, k.as_slice()].concat(), multiset_entry(*w, v));
                if first.is_none_or(|(fk, _)| k.as_slice() < fk) {
                    first = Some((k, v));
                }
            }
            let Some((key, v)) = first else {
                return Ok(old_v.clone());
            };
            let old_first = !old_v.is_null() && self.value_key(agg, old_v, &[]).as_slice() <= key;
            return Ok(if old_first { old_v.clone() } else { v.clone() });
        }
        let changed = self.apply_multiset(prefix, values, prefetched, ctx)?;
        if changed.values().all(|(_, old, new)| new >= old) {
            let Some((key, (v, _, _))) = changed.iter().find(|(_, (_, _, n))| *n > 0) else {
                return Ok(old_v.clone());
            };
            let old_first = !old_v.is_null() && self.value_key(agg, old_v, &[]) <= *key;
            return Ok(if old_first { old_v.clone() } else { v.clone() });
        }
        first_surviving(ctx, prefix, &changed, false)
    }

    /// MAX over the multiset of the MIN `min` over the same argument (`values` are the MIN's
    /// changes): its largest key. As for MIN, only a departure can need a (backward) scan.
    fn update_shared_max(
        &self,
        min: usize,
        group: &[u8],
        old_v: &Datum,
        values: &[Keyed],
        prefetched: &Prefetched,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<Datum> {
        if values.is_empty() {
            return Ok(old_v.clone());
        }
        let old_key = (!old_v.is_null()).then(|| self.value_key(min, old_v, &[]));
        let larger = |key: &[u8], v: &Datum| match &old_key {
            Some(old) if old.as_slice() >= key => old_v.clone(),
            _ => v.clone(),
        };
        if only_arrivals(values) {
            return Ok(match values.iter().max_by(|a, b| a.0.cmp(&b.0)) {
                Some((key, v, _)) => larger(key, v),
                None => old_v.clone(),
            });
        }
        let prefix = self.multiset_prefix(min, group);
        let changed = self.multiset_changes(&prefix, values, prefetched, ctx)?;
        if changed.values().all(|(_, old, new)| new >= old) {
            return Ok(match changed.iter().rev().find(|(_, (_, _, n))| *n > 0) {
                Some((key, (v, _, _))) => larger(key, v),
                None => old_v.clone(),
            });
        }
        first_surviving(ctx, &prefix, &changed, true)
    }

    /// Applies value changes to a string_agg/array_agg multiset; returns (old result, new
    /// result), each built from the group's values in order in one merged scan.
    fn update_list(
        &self,
        agg: usize,
        prefix: &[u8],
        values: &[Keyed],
        prefetched: &Prefetched,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<(Datum, Datum)> {
        let changed = self.apply_multiset(prefix, values, prefetched, ctx)?;
        let (mut old, mut new) = (Vec::new(), Vec::new());
        merged_scan(ctx.snapshot, prefix, &changed, false, |_, entry| {
            let (v, old_n, new_n) = match entry {
                Entry::Changed((v, o, n)) => (v.clone(), *o, *n),
                Entry::Stored(b) => {
                    let (n, v) = entry_value(b)?;
                    (v, n, n)
                }
            };
            old.extend(std::iter::repeat_n(
                v.clone(),
                usize::try_from(old_n).unwrap_or(0),
            ));
            new.extend(std::iter::repeat_n(v, usize::try_from(new_n).unwrap_or(0)));
            Ok(true)
        })?;
        let spec = &self.aggs[agg];
        let finish = |items: Vec<Datum>| -> Datum {
            if items.is_empty() {
                return Datum::Null;
            }
            match spec.kind {
                AggKind::StringAgg => {
                    let parts: Vec<&str> = items
                        .iter()
                        .map(|d| match d {
                            Datum::Text(t) => t.as_str(),
                            _ => "",
                        })
                        .collect();
                    Datum::Text(parts.join(&spec.delimiter))
                }
                _ => Datum::List(items),
            }
        };
        Ok((finish(old), finish(new)))
    }

    /// Applies value changes to a COUNT(DISTINCT) multiset; returns the change in distinct values.
    fn update_distinct(
        &self,
        prefix: &[u8],
        values: &[Keyed],
        prefetched: &Prefetched,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<i64> {
        if values.is_empty() {
            return Ok(0);
        }
        let changed = self.apply_multiset(prefix, values, prefetched, ctx)?;
        Ok(changed
            .values()
            .map(|(_, old, new)| i64::from(*new > 0) - i64::from(*old > 0))
            .sum())
    }

    /// Writes the new counts of changed values; returns value key → (value, old count, new count).
    fn apply_multiset(
        &self,
        prefix: &[u8],
        values: &[Keyed],
        prefetched: &Prefetched,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<BTreeMap<Vec<u8>, (Datum, i64, i64)>> {
        let changed = self.multiset_changes(prefix, values, prefetched, ctx)?;
        for (k, (v, _, n)) in &changed {
            let full = [prefix, k.as_slice()].concat();
            if *n == 0 {
                ctx.batch.delete(full);
            } else {
                ctx.batch.put(full, multiset_entry(*n, v));
            }
        }
        Ok(changed)
    }

    /// Value key → (value, old count, new count) of the values `values` change.
    fn multiset_changes(
        &self,
        prefix: &[u8],
        values: &[Keyed],
        prefetched: &Prefetched,
        ctx: &EpochCtx<'_>,
    ) -> Result<BTreeMap<Vec<u8>, (Datum, i64, i64)>> {
        let mut deltas: BTreeMap<Vec<u8>, (Datum, i64, i64)> = BTreeMap::new();
        for (k, v, w) in values {
            deltas
                .entry(k.clone())
                .or_insert_with(|| (v.clone(), 0, 0))
                .2 += w;
        }
        let keys: Vec<Vec<u8>> = deltas.keys().map(|k| [prefix, k].concat()).collect();
        let olds: Vec<Option<Vec<u8>>> = match keys
            .iter()
            .map(|k| prefetched.get(k).cloned())
            .collect::<Option<Vec<_>>>()
        {
            Some(olds) => olds,
            None => ctx.snapshot.multi_get(&keys).map_err(state_err)?,
        };
        for ((_, (_, old_slot, dn)), old) in deltas.iter_mut().zip(olds) {
            let old_n = match old {
                Some(b) => entry_value(&b)?.0,
                None => 0,
            };
            *old_slot = old_n;
            let n = old_n + *dn;
            if n < 0 {
                return Err(DataFusionError::Internal(
                    "aggregate value count went negative".into(),
                ));
            }
            *dn = n;
        }
        Ok(deltas)
    }
}

/// A multiset entry: a counted entry (count, then the value's row encoding), so arrivals can
/// be merged in without reading it.
fn multiset_entry(n: i64, v: &Datum) -> Vec<u8> {
    let mut buf = Vec::with_capacity(24);
    buf.extend_from_slice(&n.to_be_bytes());
    row_codec::encode_row(std::slice::from_ref(v), &mut buf);
    buf
}

/// (count, value) of a stored multiset entry.
fn entry_value(b: &[u8]) -> Result<(i64, Datum)> {
    let corrupt = || DataFusionError::Internal("corrupt aggregate value entry".into());
    let (count, rest) = b.split_at_checked(COUNT_LEN).ok_or_else(corrupt)?;
    let n = i64::from_be_bytes(count.try_into().map_err(|_| corrupt())?);
    let mut row = row_codec::decode_row(rest).map_err(state_err)?;
    if row.len() != 1 {
        return Err(corrupt());
    }
    Ok((n, row.pop().unwrap_or(Datum::Null)))
}

/// Whether every change is an arrival (MIN/MAX then need no read of their multiset).
fn only_arrivals(values: &[Keyed]) -> bool {
    values.iter().all(|(_, _, w)| *w > 0)
}

fn as_i64(d: &Datum) -> i64 {
    match d {
        Datum::Int64(n) => *n,
        _ => 0,
    }
}

/// `sum + v * w`, in i128 for integers and decimals, f64 for floats.
fn add_weighted(sum: &Datum, v: &Datum, w: i64) -> Result<Datum> {
    let w128 = i128::from(w);
    let int = |d: &Datum| -> Option<i128> {
        match d {
            Datum::Int16(i) => Some(i128::from(*i)),
            Datum::Int32(i) => Some(i128::from(*i)),
            Datum::Int64(i) => Some(i128::from(*i)),
            Datum::Decimal(i) => Some(*i),
            _ => None,
        }
    };
    let float = |d: &Datum| -> Option<f64> {
        match d {
            Datum::Float32(f) => Some(f64::from(*f)),
            Datum::Float64(f) => Some(*f),
            _ => None,
        }
    };
    match (sum, v) {
        (Datum::Null, v) if int(v).is_some() => Ok(Datum::Decimal(int(v).unwrap_or(0) * w128)),
        (Datum::Null, v) if float(v).is_some() => {
            Ok(Datum::Float64(float(v).unwrap_or(0.0) * w as f64))
        }
        (Datum::Decimal(s), v) if int(v).is_some() => {
            let x = int(v).unwrap_or(0);
            s.checked_add(x.checked_mul(w128).unwrap_or(i128::MAX))
                .map(Datum::Decimal)
                .ok_or_else(overflow)
        }
        (Datum::Float64(s), v) if float(v).is_some() => {
            Ok(Datum::Float64(s + float(v).unwrap_or(0.0) * w as f64))
        }
        (s, v) => Err(DataFusionError::NotImplemented(format!(
            "incremental sum of {v:?} into {s:?}"
        ))),
    }
}

fn overflow() -> DataFusionError {
    DataFusionError::Execution("numeric value out of range in aggregate".into())
}

/// The SUM or AVG result for `n` non-NULL inputs summing to `sum`.
fn finish_sum(spec: &AggSpec, n: i64, sum: &Datum) -> Result<Datum> {
    if n == 0 || sum.is_null() {
        return Ok(Datum::Null);
    }
    let in_scale = match spec.arg_type {
        DataType::Decimal128(_, s) => i32::from(s),
        _ => 0,
    };
    Ok(match (spec.kind, &spec.out_type, sum) {
        (AggKind::Sum, DataType::Int64, Datum::Decimal(s)) => {
            Datum::Int64(i64::try_from(*s).map_err(|_| overflow())?)
        }
        (AggKind::Sum, DataType::Decimal128(..), Datum::Decimal(s)) => Datum::Decimal(*s),
        (AggKind::Sum, DataType::Float64, Datum::Float64(s)) => Datum::Float64(*s),
        (AggKind::Sum, DataType::Float64, Datum::Decimal(s)) => Datum::Float64(*s as f64),
        (AggKind::Avg, DataType::Float64, Datum::Decimal(s)) => {
            Datum::Float64(*s as f64 / 10f64.powi(in_scale) / n as f64)
        }
        (AggKind::Avg, DataType::Float64, Datum::Float64(s)) => Datum::Float64(s / n as f64),
        (AggKind::Avg, DataType::Decimal128(_, out_scale), Datum::Decimal(s)) => {
            let shift = i32::from(*out_scale) - in_scale;
            let scaled = if shift >= 0 {
                s.checked_mul(10i128.pow(shift as u32))
                    .ok_or_else(overflow)?
            } else {
                s / 10i128.pow((-shift) as u32)
            };
            let n = i128::from(n);
            // round half away from zero, like PostgreSQL's numeric
            let q = scaled / n;
            let r = scaled % n;
            Datum::Decimal(if 2 * r.abs() >= n {
                q + scaled.signum()
            } else {
                q
            })
        }
        (k, t, s) => {
            return Err(DataFusionError::NotImplemented(format!(
                "incremental {k:?} with result type {t} over {s:?}"
            )))
        }
    })
}

fn finish_bool(kind: AggKind, trues: i64, falses: i64) -> Datum {
    if trues + falses == 0 {
        return Datum::Null;
    }
    match kind {
        AggKind::BoolAnd => Datum::Bool(falses == 0),
        _ => Datum::Bool(trues > 0),
    }
}
