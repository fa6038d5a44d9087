//! Joins that forget rows no later row can match: interval joins (`a.ts BETWEEN b.ts AND
//! b.ts + INTERVAL '10 seconds'`) and joins on a window (`a.window_start = b.window_start`)
//! over sources with watermarks. A condition of the join that every match needs, `x >= y + c`
//! with `x` a time column of one side and `y` one of the other side bounded below by a
//! watermark (see `crate::event_time`), means that a row whose `x - c` is below `y`'s bound
//! can match no later row of the other side. Its own later matches are all it could still
//! make when its side never retracts (a source): such rows are deleted once the bound passes
//! them, and rows that arrive already past it are not stored at all.
//!
//! State (under the join's prefix), besides its rows:
//! ```text
//! 'e' <side> <time + shift: memcomparable> <epoch: u64 BE> <n: u32 BE>
//!                      → the state keys of rows one epoch stored, each u32 BE length-prefixed,
//!                        whose latest time + shift is the key's      (the expiry index)
//! 'E' <side>           → the bound last applied (i64 BE)
//! ```
//! An index entry gathers the rows of an epoch whose times lie within [`SPAN`] of each other
//! (up to [`ENTRY_BYTES`] of keys): a row costs its own write and its deletion, and the index a
//! write and a deletion per entry, not per row. Its rows go when the bound passes the latest
//! of them, at most [`SPAN`] after the earliest could have gone. (An entry with an empty value
//! holds one row, whose state key follows the time in the entry's key.)
//! Both sort before the rows ('l', 'r'): a seek for a group with no row left must not walk
//! into the index's deletions. A side's own expired rows leave deletions between its groups,
//! so its groups are read with a scan bounded to the group (`JoinOp::apply_split`).

use std::sync::atomic::{AtomicU32, Ordering};

use datafusion::error::{DataFusionError, Result};
use freshet_common::{Datum, TableId};
use freshet_state::key_codec;

use super::join::JoinOp;
use crate::bound::Bound;
use crate::delta::{push_len_prefixed, split_len_prefixed};
use crate::epoch::{EpochChanges, EpochCtx};

/// When one side's rows can no longer match.
#[derive(Debug, Clone)]
pub struct Expiry {
    /// The side's column holding the row's time.
    pub column: usize,
    /// The row is past matching once `time + shift` is below `bound`.
    pub shift: i64,
    /// The bound of the other side's column the condition compares with.
    pub bound: Bound,
}

/// The expiries of a join's sides (left, right), each in force only while that side never
/// retracts ([`Expiries::keep`]).
#[derive(Debug, Default)]
pub struct Expiries {
    pub sides: [Option<Expiry>; 2],
    active: [bool; 2],
    /// Tells apart the index entries written under one snapshot.
    entries: AtomicU32,
}

impl Expiries {
    pub fn new(sides: [Option<Expiry>; 2]) -> Self {
        Expiries {
            sides,
            active: [false; 2],
            entries: AtomicU32::new(0),
        }
    }

    /// Puts each side's expiry in force when that side's input never retracts.
    pub fn keep(&mut self, never_retracts: [bool; 2]) {
        self.active = [0, 1].map(|i| never_retracts[i] && self.sides[i].is_some());
    }

    /// The expiries in force, by side index (0 left, 1 right).
    pub fn active(&self) -> impl Iterator<Item = (usize, &Expiry)> {
        self.sides
            .iter()
            .enumerate()
            .filter(|(i, _)| self.active[*i])
            .filter_map(|(i, e)| Some((i, e.as_ref()?)))
    }
}

/// Per side with an expiry in force: the side's time column, shift, and the bound after the
/// epoch (`None` while a source has no watermark yet, and during a backfill, whose inputs
/// arrive one after the other: a row past the bound may still meet older rows of the other
/// side in a later step).
pub(super) type Horizon = [Option<(usize, i64, Option<i64>)>; 2];

/// The side byte of state keys for side index `i`.
pub(super) fn side_byte(i: usize) -> u8 {
    if i == 0 {
        b'l'
    } else {
        b'r'
    }
}

impl JoinOp {
    /// The bound each side's expiry has after this epoch (none while a source has no
    /// watermark yet).
    pub(super) fn horizon(&self, changes: &EpochChanges, ctx: &EpochCtx<'_>) -> Result<Horizon> {
        let mut h: Horizon = [None, None];
        for (i, e) in self.expiry.active() {
            let bound = match ctx.backfill {
                true => None,
                false => e.bound.now(changes, ctx.snapshot)?,
            };
            h[i] = Some((e.column, e.shift, bound));
        }
        Ok(h)
    }

    /// Whether the epoch moves some side's expiry bound.
    pub fn expiry_moved(&self, changes: &EpochChanges) -> bool {
        self.expiry.active().any(|(_, e)| e.bound.moved(changes))
    }

    /// The sources whose watermarks move the expiry bounds.
    pub fn expiry_sources(&self) -> Vec<TableId> {
        self.expiry
            .active()
            .flat_map(|(_, e)| e.bound.sources())
            .collect()
    }

    /// A row arriving on side `i`: `None` when it is already past matching (it is not
    /// stored); else the time to index it at, if the side has an index.
    pub(super) fn arrival(&self, h: &Horizon, i: usize, row: &[Datum]) -> Option<Option<i64>> {
        let Some((column, shift, bound)) = h[i] else {
            return Some(None);
        };
        let Some(Datum::Timestamp(t)) = row.get(column) else {
            return Some(None);
        };
        let t = t.saturating_add(shift);
        if bound.is_some_and(|b| t < b) {
            return None;
        }
        Some(Some(t))
    }

    /// Writes the index entries of the rows side `i` stored this epoch: (time, state key).
    pub(super) fn index(&self, i: usize, mut rows: Vec<(i64, Vec<u8>)>, ctx: &mut EpochCtx<'_>) {
        rows.sort_unstable_by_key(|(t, _)| *t);
        let epoch = ctx.snapshot.sequence();
        let mut rest = rows.as_slice();
        while let Some(((first, _), _)) = rest.split_first() {
            let mut value = Vec::with_capacity(ENTRY_BYTES.min(rest.len() * (4 + rest[0].1.len())));
            let mut n = 0;
            for (t, full) in rest {
                if t.saturating_sub(*first) > SPAN || value.len() >= ENTRY_BYTES {
                    break;
                }
                push_len_prefixed(&mut value, full);
                n += 1;
            }
            let latest = rest[n - 1].0;
            let mut k = self.index_from(i, latest);
            k.extend_from_slice(&epoch.to_be_bytes());
            let entry = self.expiry.entries.fetch_add(1, Ordering::Relaxed);
            k.extend_from_slice(&entry.to_be_bytes());
            ctx.batch.put(k, value);
            rest = &rest[n..];
        }
    }

    /// Deletes the rows of each side that the bound passed since the last epoch that moved
    /// it, with their index entries.
    pub(super) fn expire(&self, h: &Horizon, ctx: &mut EpochCtx<'_>) -> Result<()> {
        for (i, side) in h.iter().enumerate() {
            let Some((_, _, Some(bound))) = *side else {
                continue;
            };
            let last_key = self.last_key(i);
            let last = ctx.stored_i64(&last_key)?;
            if last.is_some_and(|l| l >= bound) {
                continue;
            }
            let mut prefix = self.prefix.clone();
            prefix.extend([b'e', side_byte(i)]);
            let upper = self.index_from(i, bound);
            let lower = last.map_or_else(|| prefix.clone(), |l| self.index_from(i, l));
            let start = prefix.len() + TIME_LEN;
            ctx.take_range(&prefix, lower, &upper, |ctx, k, v| {
                let mut delete_row = |full: &[u8]| {
                    ctx.batch.delete(full);
                    if !ctx.preview {
                        if let Some(p) = self.group_prefix(full) {
                            self.cache.remove(p);
                        }
                    }
                };
                if v.is_empty() {
                    delete_row(&k[start..]);
                    return Ok(());
                }
                let mut rest = v;
                while !rest.is_empty() {
                    let Some((full, after)) = split_len_prefixed(rest) else {
                        return Err(DataFusionError::Internal(
                            "corrupt join expiry index entry".into(),
                        ));
                    };
                    delete_row(full);
                    rest = after;
                }
                Ok(())
            })?;
            ctx.batch.put(last_key, bound.to_be_bytes());
        }
        Ok(())
    }

    /// The first index key of side `i` at time `t` or later.
    fn index_from(&self, i: usize, t: i64) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend([b'e', side_byte(i)]);
        key_codec::encode_key(&[Datum::Timestamp(t)], &mut k);
        k
    }

    fn last_key(&self, i: usize) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend([b'E', side_byte(i)]);
        k
    }

    /// The side-and-key prefix of a row's state key (what the cache holds rows under).
    fn group_prefix<'k>(&self, full: &'k [u8]) -> Option<&'k [u8]> {
        let at = self.prefix.len() + 1;
        let (key, _) = split_len_prefixed(full.get(at..)?)?;
        full.get(..at + 4 + key.len())
    }
}

/// Bytes of a memcomparable timestamp.
const TIME_LEN: usize = 9;

/// The widest spread of times one index entry gathers (µs): how much later than its own
/// time a row may be deleted.
const SPAN: i64 = 100_000;

/// An index entry is closed once it holds this many bytes of keys.
const ENTRY_BYTES: usize = 64 << 10;
