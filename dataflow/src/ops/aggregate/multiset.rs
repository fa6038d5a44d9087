//! The value multisets of MIN/MAX, COUNT(DISTINCT), string_agg/array_agg and first_value:
//! applying an epoch's value changes and reading a group's result from them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::error::{DataFusionError, Result};
use freshet_common::Datum;
use freshet_state::key_codec::{self, KeyKind};
use freshet_state::{row_codec, COUNT_LEN};
use smallvec::SmallVec;

use super::{AggKind, AggregateOp, Keyed, Prefetched};
use crate::contents_log::{needs_fold, push_staged, STAGED_EPOCH_BYTES, STAGED_ID_TAIL};
use crate::epoch::{state_err, EpochCtx};
use crate::ops::merge::{merged_scan, Entry};

/// Bytes of an occurrence id: the epoch's snapshot sequence number (u64 BE), then a counter
/// (u32 BE).
const OCCURRENCE_LEN: usize = 12;

// A staged occurrence's record leaves the sequence number out (contents_log.rs).
const _: () = assert!(OCCURRENCE_LEN == 8 + STAGED_ID_TAIL);

/// The first value of a multiset after this epoch's `changed` entries (the last when
/// `reverse`; NULL when empty). `occurrences`: how to read its entries when they are
/// occurrences rather than counted entries.
fn first_surviving(
    ctx: &EpochCtx<'_>,
    prefix: &[u8],
    changed: &BTreeMap<Vec<u8>, (Datum, i64, i64)>,
    reverse: bool,
    occurrences: Option<&Occurrences>,
) -> Result<Datum> {
    let mut first = Datum::Null;
    merged_scan(ctx.snapshot, prefix, changed, reverse, |suffix, entry| {
        match (entry, occurrences) {
            (Entry::Changed((_, _, n)) | Entry::ChangedStored((_, _, n), _), _) if *n <= 0 => {
                return Ok(true)
            }
            (Entry::Changed((v, _, _)) | Entry::ChangedStored((v, _, _), _), _) => {
                first = v.clone()
            }
            (Entry::Stored(b), Some(o)) => first = o.value(suffix, b)?,
            (Entry::Stored(b), None) => first = entry_value(b)?.1,
        }
        Ok(false)
    })?;
    Ok(first)
}

impl AggregateOp {
    /// Applies value changes to a multiset whose result is its first value (MIN, MAX,
    /// first_value); returns (old result, new result).
    pub(super) fn update_extreme(
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
        Ok((old_v, first_surviving(ctx, prefix, &changed, false, None)?))
    }

    /// MIN/MAX over multiset `agg` (keyed as its values encode): applies `values` when
    /// `write` (a MAX reading its MIN's multiset leaves that to the MIN); returns the new
    /// result, the multiset's first key — its last when `reverse`. When no value lost a count
    /// this epoch, that is the old result or the extreme arrival: no scan. Otherwise one
    /// ordered scan, stopping at the first surviving value.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_min_max(
        &self,
        agg: usize,
        group: &[u8],
        old_v: &Datum,
        values: &[Keyed],
        prefetched: &Prefetched,
        ctx: &mut EpochCtx<'_>,
        write: bool,
        reverse: bool,
        stage: bool,
    ) -> Result<Datum> {
        if values.is_empty() {
            return Ok(old_v.clone());
        }
        // The old result unless `v` comes before it in scan order. Keys of a MIN's values
        // compare as the values do (`key_codec::compare`), a MAX's the other way round.
        let max_keys = self.aggs[agg].kind == AggKind::Max;
        let pick = |v: &Datum| {
            if old_v.is_null() {
                return v.clone();
            }
            let old_to_new = key_codec::compare(old_v, v);
            let old_to_new = if max_keys {
                old_to_new.reverse()
            } else {
                old_to_new
            };
            if (reverse && old_to_new.is_ge()) || (!reverse && old_to_new.is_le()) {
                old_v.clone()
            } else {
                v.clone()
            }
        };
        let first_of = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        if only_arrivals(values) {
            // Counts only grow: merged in unread (a shared MAX writes and builds nothing).
            let prefix = if write {
                self.multiset_prefix(agg, group)
            } else {
                Vec::new()
            };
            let mut first: Option<(&[u8], &Datum)> = None;
            let o = self.occurrences_of(agg);
            let mut staged = (write && self.occurrences && stage).then(|| self.staged_buffer());
            for (k, v, w) in values {
                if let Some(buf) = staged
                    .as_deref_mut()
                    .filter(|b| b.len() < STAGED_EPOCH_BYTES)
                {
                    // Written by the next fold, in key order with the other epochs'.
                    let suffix = &prefix[self.prefix.len()..];
                    for _ in 0..*w {
                        // The epoch's sequence number, the id's head, is the log entry's.
                        let tail = self.next_occurrence.fetch_add(1, Ordering::Relaxed);
                        let tail = tail.to_be_bytes();
                        push_staged(buf, &[suffix, k.as_slice()], &tail, |b| o.payload(v, b));
                    }
                } else if write && self.occurrences {
                    for _ in 0..*w {
                        let id = self.occurrence_id(ctx);
                        ctx.batch
                            .put_with(&[&prefix, k.as_slice(), &id], |buf| o.payload(v, buf));
                    }
                } else if write {
                    ctx.batch.merge_with(&[&prefix, k.as_slice()], |buf| {
                        push_multiset_entry(buf, *w, v);
                    });
                }
                if first.is_none_or(|(fk, _)| first_of(k, fk)) {
                    first = Some((k.as_slice(), v));
                }
            }
            return Ok(first.map_or_else(|| old_v.clone(), |(_, v)| pick(v)));
        }
        if !self.min_max_multisets() {
            return Err(DataFusionError::Internal(
                "a MIN/MAX over an input that never retracts got a retraction".into(),
            ));
        }
        // Reads the multiset: its staged occurrences must be in the state first (a
        // preview's snapshot has them folded).
        if !ctx.preview {
            self.retracted.store(true, Ordering::SeqCst);
            if self.staged_in_log.load(Ordering::SeqCst) {
                return Err(needs_fold());
            }
        }
        let prefix = self.multiset_prefix(agg, group);
        let changed = if self.occurrences {
            self.occurrence_changes(agg, &prefix, values, ctx, write)?
        } else if write {
            self.apply_multiset(&prefix, values, prefetched, ctx)?
        } else {
            self.multiset_changes(&prefix, values, prefetched, ctx)?
        };
        if changed.values().all(|(_, old, new)| new >= old) {
            let mut grown = changed.iter().filter(|(_, (_, _, n))| *n > 0);
            let first = if reverse {
                grown.next_back()
            } else {
                grown.next()
            };
            return Ok(first.map_or_else(|| old_v.clone(), |(_, (v, _, _))| pick(v)));
        }
        let occurrences = self.occurrences.then(|| self.occurrences_of(agg));
        first_surviving(ctx, &prefix, &changed, reverse, occurrences.as_ref())
    }

    /// How aggregate `agg` (a MIN or MAX keeping its multiset) writes and reads occurrences.
    fn occurrences_of(&self, agg: usize) -> Occurrences {
        let spec = &self.aggs[agg];
        Occurrences {
            kind: match &spec.arg_type {
                DataType::Boolean => Some(KeyKind::Bool),
                DataType::Int16 => Some(KeyKind::Int16),
                DataType::Int32 => Some(KeyKind::Int32),
                DataType::Int64 => Some(KeyKind::Int64),
                DataType::Float32 => Some(KeyKind::Float32),
                DataType::Float64 => Some(KeyKind::Float64),
                DataType::Date32 => Some(KeyKind::Date),
                DataType::Time64(TimeUnit::Microsecond) => Some(KeyKind::Time),
                DataType::Timestamp(TimeUnit::Microsecond, _) => Some(KeyKind::Timestamp),
                DataType::Utf8 => Some(KeyKind::Text),
                _ => None,
            },
            complemented: spec.kind == AggKind::Max,
        }
    }

    /// A new occurrence id, unique among this operator's entries: no two epochs that write
    /// read the same snapshot (each commit moves the sequence number on), and within one
    /// the counter differs.
    fn occurrence_id(&self, ctx: &EpochCtx<'_>) -> [u8; OCCURRENCE_LEN] {
        let mut id = [0; OCCURRENCE_LEN];
        id[..8].copy_from_slice(&ctx.snapshot.sequence().to_be_bytes());
        let n = self.next_occurrence.fetch_add(1, Ordering::Relaxed);
        id[8..].copy_from_slice(&n.to_be_bytes());
        id
    }

    /// MIN/MAX with occurrences: the occurrence entries `values` add (new ids) and remove
    /// (the value's first stored occurrences), written when `write` (a MAX reading its MIN's
    /// multiset computes the same changes without writing them: the same scans of the same
    /// snapshot pick the same entries to remove; its arrivals' ids are never written).
    /// Returns key suffix (value key ++ occurrence id) → (value, old count, new count), the
    /// counts 0 or 1.
    fn occurrence_changes(
        &self,
        agg: usize,
        prefix: &[u8],
        values: &[Keyed],
        ctx: &mut EpochCtx<'_>,
        write: bool,
    ) -> Result<BTreeMap<Vec<u8>, (Datum, i64, i64)>> {
        let mut net: BTreeMap<&[u8], (&Datum, i64)> = BTreeMap::new();
        for (k, v, w) in values {
            net.entry(k.as_slice()).or_insert((v, 0)).1 += w;
        }
        let o = self.occurrences_of(agg);
        let mut changed = BTreeMap::new();
        for (k, (v, n)) in net {
            if n > 0 {
                for _ in 0..n {
                    let id = self.occurrence_id(ctx);
                    let suffix = [k, id.as_slice()].concat();
                    if write {
                        ctx.batch
                            .put_with(&[prefix, &suffix], |buf| o.payload(v, buf));
                    }
                    changed.insert(suffix, (v.clone(), 0, 1));
                }
            } else if n < 0 {
                let gone = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
                let value_prefix = [prefix, k].concat();
                let stored = ctx
                    .snapshot
                    .scan(&value_prefix, &value_prefix, None, gone)
                    .map_err(state_err)?;
                if stored.len() < gone {
                    return Err(DataFusionError::Internal(
                        "aggregate value count went negative".into(),
                    ));
                }
                for (key, _) in stored {
                    changed.insert(key[prefix.len()..].to_vec(), (v.clone(), 1, 0));
                    if write {
                        ctx.batch.delete(key);
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Applies value changes to a string_agg/array_agg multiset; returns (old result, new
    /// result), each built from the group's values in order in one merged scan.
    pub(super) fn update_list(
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
                Entry::Changed((v, o, n)) | Entry::ChangedStored((v, o, n), _) => {
                    (v.clone(), *o, *n)
                }
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
    pub(super) fn update_distinct(
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
                .entry(k.to_vec())
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
    push_multiset_entry(&mut buf, n, v);
    buf
}

/// Appends [`multiset_entry`] to `buf`.
fn push_multiset_entry(buf: &mut Vec<u8>, n: i64, v: &Datum) {
    buf.extend_from_slice(&n.to_be_bytes());
    row_codec::encode_row(std::slice::from_ref(v), buf);
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

/// How a MIN or MAX multiset's occurrence entries hold their value: an entry's value is empty
/// when its key says it all (values of a kind `key_codec::decode_value` reads back exactly),
/// otherwise the value's row encoding.
pub(super) struct Occurrences {
    /// The kind of the values, when keys can be decoded.
    kind: Option<KeyKind>,
    /// The value keys are complemented (a MAX's own multiset).
    complemented: bool,
}

impl Occurrences {
    /// Appends what an occurrence entry of `v` stores: nothing when its key decodes to `v`
    /// (a value of another kind than the argument's type promised keeps its encoding).
    fn payload(&self, v: &Datum, buf: &mut Vec<u8>) {
        if self.kind.is_none() || KeyKind::of(v) != self.kind {
            row_codec::encode_row(std::slice::from_ref(v), buf);
        }
    }

    /// The value of the occurrence entry with key suffix `suffix` (value key ++ occurrence
    /// id) storing `stored`.
    fn value(&self, suffix: &[u8], stored: &[u8]) -> Result<Datum> {
        let corrupt = || DataFusionError::Internal("corrupt aggregate occurrence entry".into());
        if let (Some(kind), true) = (self.kind, stored.is_empty()) {
            let key = suffix
                .get(..suffix.len().saturating_sub(OCCURRENCE_LEN))
                .filter(|k| !k.is_empty())
                .ok_or_else(corrupt)?;
            return if self.complemented {
                let key: SmallVec<[u8; 16]> = key.iter().map(|b| !b).collect();
                key_codec::decode_value(kind, &key)
            } else {
                key_codec::decode_value(kind, key)
            }
            .map_err(state_err);
        }
        let mut row = row_codec::decode_row(stored).map_err(state_err)?;
        match (row.pop(), row.is_empty()) {
            (Some(v), true) => Ok(v),
            _ => Err(corrupt()),
        }
    }
}

/// Whether every change is an arrival (MIN/MAX then need no read of their multiset).
pub(super) fn only_arrivals(values: &[Keyed]) -> bool {
    values.iter().all(|(_, _, w)| *w > 0)
}
