//! A temporal filter (`WHERE ts > now() - INTERVAL '1 hour'`): each row belongs to the
//! output while the epoch's time is in `[from, until)`, both computed from the row (see
//! `crate::lower::temporal`). A row arriving inside its range passes at once; its later arrival
//! (`from` still ahead) and departure (`until`) are scheduled in state under their times,
//! and the epoch whose time reaches them emits them and deletes them. A row that can never
//! belong again leaves nothing behind, so state holds only what the future will change.
//!
//! Epoch time is the wall clock when the epoch starts (`EpochChanges::now`), never going
//! back: an epoch earlier than the last one this operator saw takes the last one's time.
//! The operator remembers in memory when its next scheduled change is due, so epochs of
//! passing time reach the view only when it has one (`Dataflows::next_due`).
//!
//! State (under the operator's prefix):
//! ```text
//! 'e' <time: memcomparable> <row: row_codec> → count (i64 BE, merged)
//! 'l'                                        → the time of the last epoch (i64 BE)
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMicrosecondType};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use freshet_common::Datum;
use freshet_state::{key_codec, row_codec};

use crate::delta::{encode_count, Delta};
use crate::encode::{encode_rows_keyed_by, VALUE_SLOT};
use crate::epoch::{state_err, EpochChanges, EpochCtx};

/// Not yet known when the next change is due (after a start, or an epoch that did not
/// commit): the next epoch looks.
const UNKNOWN: i64 = i64::MIN;
/// Nothing scheduled.
const NEVER: i64 = i64::MAX;

/// One end of a row's range: the value of `expr` (a timestamp), one microsecond later when
/// `after`.
#[derive(Debug)]
pub struct Edge {
    pub expr: Arc<dyn PhysicalExpr>,
    pub after: bool,
}

#[derive(Debug)]
pub struct TemporalFilterOp {
    pub prefix: Vec<u8>,
    /// The row belongs from the latest of these on.
    pub from: Vec<Edge>,
    /// The row belongs until the earliest of these (exclusive).
    pub until: Vec<Edge>,
    pub schema: SchemaRef,
    /// When the next scheduled change is due ([`UNKNOWN`], [`NEVER`]).
    next: AtomicI64,
}

impl TemporalFilterOp {
    pub fn new(prefix: Vec<u8>, from: Vec<Edge>, until: Vec<Edge>, schema: SchemaRef) -> Self {
        Self {
            prefix,
            from,
            until,
            schema,
            next: AtomicI64::new(UNKNOWN),
        }
    }

    pub fn describe(&self) -> String {
        let edges = |edges: &[Edge], op: &str, strict: &str| {
            edges
                .iter()
                .map(|e| format!("now() {} {}", if e.after { strict } else { op }, e.expr))
                .collect::<Vec<_>>()
        };
        let mut all = edges(&self.from, ">=", ">");
        all.extend(edges(&self.until, "<", "<="));
        format!("TemporalFilter: {}", all.join(" AND "))
    }

    /// When the next scheduled change is due (microseconds); `None` when nothing is
    /// scheduled. Unknown after a start or a failed epoch: due at once.
    pub fn next_due(&self) -> Option<i64> {
        match self.next.load(Ordering::Relaxed) {
            NEVER => None,
            t => Some(t),
        }
    }

    /// What an epoch that did not commit may have changed is forgotten.
    pub fn forget(&self) {
        self.next.store(UNKNOWN, Ordering::Relaxed);
    }

    /// Applies one epoch: the input's rows pass, wait or are scheduled to leave, then every
    /// scheduled change whose time has come is emitted.
    pub fn apply(
        &self,
        input: Option<Delta>,
        changes: &EpochChanges,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<Option<Delta>> {
        let last = ctx.stored_i64(&self.last_key())?;
        let now = changes.now().max(last.unwrap_or(i64::MIN));
        let mut parts: Vec<Delta> = Vec::new();
        let mut soonest = NEVER;
        if let Some(d) = input {
            let (passing, first) = self.admit(d, now, ctx)?;
            parts.extend(passing);
            soonest = first;
        }
        let fired = self.fire(last, now, ctx)?;
        if !fired.is_empty() {
            parts.push(Delta::from_rows(&fired, &self.schema)?);
        }
        if !ctx.preview {
            // The earliest change left: stored before this epoch, or scheduled by it.
            let stored = ctx
                .snapshot
                .scan(
                    &self.events_prefix(),
                    &self.event_from(now.saturating_add(1)),
                    None,
                    1,
                )
                .map_err(state_err)?;
            if let Some((k, _)) = stored.first() {
                soonest = soonest.min(self.time_of(k)?);
            }
            self.next.store(soonest, Ordering::Relaxed);
        }
        if last != Some(now) {
            ctx.batch.put(self.last_key(), now.to_be_bytes());
        }
        match parts.len() {
            0 => Ok(None),
            1 => Ok(parts.pop()),
            _ => Delta::concat(&self.schema, parts).map(Some),
        }
    }

    /// The input rows in their range now, and the scheduling of the others' arrivals and
    /// departures; also the earliest time scheduled.
    fn admit(&self, d: Delta, now: i64, ctx: &mut EpochCtx<'_>) -> Result<(Option<Delta>, i64)> {
        let from = self.edge_times(&self.from, &d.batch, i64::max)?;
        let until = self.edge_times(&self.until, &d.batch, i64::min)?;
        let range = |i: usize| -> Option<(i64, i64)> {
            let lo = match &from {
                Some(v) => v[i]?,
                None => i64::MIN,
            };
            let hi = match &until {
                Some(v) => v[i]?,
                None => i64::MAX,
            };
            (lo < hi).then_some((lo, hi))
        };
        let ranges: Vec<Option<(i64, i64)>> = (0..d.len()).map(range).collect();
        let inside: Vec<bool> = ranges
            .iter()
            .map(|r| r.is_some_and(|(lo, hi)| lo <= now && now < hi))
            .collect();
        // A change ahead: an arrival still to come, or a departure at a finite time.
        let ahead = |r: &Option<(i64, i64)>| {
            r.is_some_and(|(lo, hi)| lo > now || (hi > now && hi != i64::MAX))
        };
        let mut soonest = NEVER;
        if ranges.iter().any(ahead) {
            let rows = encode_rows_keyed_by(&d.batch, &[], 0)?.values;
            // Equal rows at one time add up before they are written.
            let mut events: HashMap<Vec<u8>, i64> = HashMap::new();
            for (i, r) in ranges.iter().enumerate() {
                let Some((lo, hi)) = *r else { continue };
                if !ahead(r) {
                    continue;
                }
                let (row, w) = (&rows[i][VALUE_SLOT..], d.weights[i]);
                if lo > now {
                    *events.entry(self.event_key(lo, row)).or_default() += w;
                    soonest = soonest.min(lo);
                }
                if hi != i64::MAX {
                    *events.entry(self.event_key(hi, row)).or_default() -= w;
                    soonest = soonest.min(hi);
                }
            }
            for (key, n) in events {
                if n != 0 {
                    ctx.batch.merge(&key, encode_count(n));
                }
            }
        }
        let passing = d.filter(&BooleanArray::from(inside))?;
        Ok(((!passing.is_empty()).then_some(passing), soonest))
    }

    /// Emits and deletes the scheduled changes due by `now` (those up to `last` are gone).
    fn fire(
        &self,
        last: Option<i64>,
        now: i64,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<Vec<(Vec<Datum>, i64)>> {
        let prefix = self.events_prefix();
        let upper = self.event_from(now.saturating_add(1));
        let lower = match last {
            Some(l) => self.event_from(l.saturating_add(1)),
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        let row_at = prefix.len() + TIME_LEN;
        ctx.take_range(&prefix, lower, &upper, |_, k, v| {
            let n = count_of(v)?;
            if n != 0 {
                let row = row_codec::decode_row(&k[row_at..]).map_err(state_err)?;
                out.push((row, n));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Per row, the combination (`max` for `from`, `min` for `until`) of the edges' times;
    /// `None` for a row where one is NULL (its comparison is never true). `None` overall
    /// without edges.
    fn edge_times(
        &self,
        edges: &[Edge],
        batch: &RecordBatch,
        combine: fn(i64, i64) -> i64,
    ) -> Result<Option<Vec<Option<i64>>>> {
        let mut out: Option<Vec<Option<i64>>> = None;
        for e in edges {
            let values = e.expr.evaluate(batch)?.into_array(batch.num_rows())?;
            let micros = cast(&values, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let micros = micros.as_primitive::<TimestampMicrosecondType>();
            let times = (0..micros.len()).map(|i| {
                micros
                    .is_valid(i)
                    .then(|| micros.value(i).saturating_add(i64::from(e.after)))
            });
            out = Some(match out {
                None => times.collect(),
                Some(acc) => acc
                    .into_iter()
                    .zip(times)
                    .map(|(a, t)| Some(combine(a?, t?)))
                    .collect(),
            });
        }
        Ok(out)
    }

    fn events_prefix(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'e');
        k
    }

    /// The first key of the changes scheduled at `t` or later.
    fn event_from(&self, t: i64) -> Vec<u8> {
        let mut k = self.events_prefix();
        key_codec::encode_key(&[Datum::Timestamp(t)], &mut k);
        k
    }

    /// The key of a change at `t` to the row encoded as `row` (`row_codec`).
    fn event_key(&self, t: i64, row: &[u8]) -> Vec<u8> {
        let mut k = self.event_from(t);
        k.extend_from_slice(row);
        k
    }

    fn time_of(&self, key: &[u8]) -> Result<i64> {
        let start = self.prefix.len() + 1;
        let encoded = key.get(start..start + TIME_LEN).ok_or_else(corrupt)?;
        match key_codec::decode_value(key_codec::KeyKind::Timestamp, encoded).map_err(state_err)? {
            Datum::Timestamp(t) => Ok(t),
            _ => Err(corrupt()),
        }
    }

    fn last_key(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'l');
        k
    }
}

/// Bytes of a memcomparable timestamp.
const TIME_LEN: usize = 9;

fn corrupt() -> DataFusionError {
    DataFusionError::Internal("corrupt scheduled change of a temporal filter".into())
}

fn count_of(v: &[u8]) -> Result<i64> {
    v.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_be_bytes)
        .ok_or_else(corrupt)
}
