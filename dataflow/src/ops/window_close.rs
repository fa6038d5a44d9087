//! `EMIT ON WINDOW CLOSE`: a view's rows held back until their window closes, then emitted
//! once and never changed — an append-only relation, what sinks and subscribers of windowed
//! results want.
//!
//! The operator sits at the view's root. A row is pending while its value in the closing
//! column (a column bounded below by a source's watermark: `window_end`, `window_start`, the
//! event time itself; see `crate::event_time`) is at or above that column's bound; once the
//! bound passes it, no later change can touch the row, so it is emitted with its count and
//! its state deleted (operators below delete their own: see `aggregate/closing.rs`). NULL in
//! the closing column never closes.
//!
//! State (under the operator's prefix):
//! ```text
//! 'p' <closing value: memcomparable> <row: row_codec> → count (i64 BE) ++ row (row_codec)
//! 'l'                                                 → the bound of the last close (i64 BE)
//! ```
//! Pending rows are ordered by closing value, so a close reads exactly the rows it emits:
//! from the last close's bound to the new one.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use freshet_common::Datum;
use freshet_sql::df_convert::batch_to_rows;
use freshet_state::{key_codec, row_codec};

use crate::delta::Delta;
use crate::epoch::{state_err, EpochChanges, EpochCtx};
use crate::bound::Bound;


/// The window-close gate of a view declared `EMIT ON WINDOW CLOSE`.
#[derive(Debug)]
pub struct WindowCloseOp {
    pub prefix: Vec<u8>,
    /// The output column whose bound closes rows.
    pub column: usize,
    pub bound: Bound,
    pub schema: SchemaRef,
}

/// A pending row's change in this epoch: the row and its weight.
type Change = (Vec<Datum>, i64);

impl WindowCloseOp {
    pub fn describe(&self) -> String {
        format!(
            "EmitOnWindowClose: column={} closes below {}",
            self.column, self.bound
        )
    }

    /// Whether the epoch moves the bound (a source it depends on carries a watermark).
    pub fn moved(&self, changes: &EpochChanges) -> bool {
        self.bound.moved(changes)
    }

    fn pending_key(&self, closing: &Datum, row: &[Datum]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'p');
        key_codec::encode_key(std::slice::from_ref(closing), &mut k);
        row_codec::encode_row(row, &mut k);
        k
    }

    /// The first key of the pending rows whose closing value is `t` or more.
    fn pending_from(&self, t: i64) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'p');
        key_codec::encode_key(&[Datum::Timestamp(t)], &mut k);
        k
    }

    fn last_key(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'l');
        k
    }

    /// Applies one epoch: `input`'s changes to pending rows, then emits (and forgets) every
    /// pending row the bound has passed. Returns the emitted rows with their counts.
    pub fn apply(
        &self,
        input: Option<Delta>,
        changes: &EpochChanges,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<Vec<Change>> {
        let bound = self.bound.now(changes, ctx.snapshot)?;
        // This epoch's changes by pending key.
        let mut changed: BTreeMap<Vec<u8>, Change> = BTreeMap::new();
        if let Some(d) = input {
            for (row, w) in batch_to_rows(&d.batch)?.into_iter().zip(d.weights) {
                let closing = row.get(self.column).cloned().unwrap_or(Datum::Null);
                let key = self.pending_key(&closing, &row);
                changed.entry(key).or_insert_with(|| (row, 0)).1 += w;
            }
        }
        let upper = bound.map(|b| self.pending_from(b));
        let closes = |k: &[u8]| upper.as_deref().is_some_and(|u| k < u);
        let mut out: Vec<Change> = Vec::new();
        // Changes to rows that stay pending, and to rows that close now.
        for (key, (row, w)) in &changed {
            let stored = match ctx.snapshot.get(key).map_err(state_err)? {
                Some(v) => count_of(&v)?,
                None => 0,
            };
            let n = stored + w;
            if closes(key) {
                if stored != 0 {
                    ctx.batch.delete(key);
                }
                if n > 0 {
                    out.push((row.clone(), n));
                }
            } else if n == 0 {
                ctx.batch.delete(key);
            } else {
                let mut v = n.to_be_bytes().to_vec();
                row_codec::encode_row(row, &mut v);
                ctx.batch.put(key, v);
            }
        }
        let (Some(bound), Some(upper)) = (bound, upper) else {
            return Ok(out);
        };
        // Stored rows the bound passed since the last close.
        let last = ctx.stored_i64(&self.last_key())?;
        if last.is_some_and(|l| l >= bound) {
            return Ok(out);
        }
        let mut prefix = self.prefix.clone();
        prefix.push(b'p');
        let lower = last.map_or_else(|| prefix.clone(), |l| self.pending_from(l));
        ctx.take_range(&prefix, lower, &upper, |_, k, v| {
            if changed.contains_key(k) {
                return Ok(()); // emitted above, with this epoch's change
            }
            let n = count_of(v)?;
            if n > 0 {
                let row = row_codec::decode_row(&v[8..]).map_err(state_err)?;
                out.push((row, n));
            }
            Ok(())
        })?;
        ctx.batch.put(self.last_key(), bound.to_be_bytes());
        Ok(out)
    }
}

fn count_of(v: &[u8]) -> Result<i64> {
    v.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| {
            DataFusionError::Internal("corrupt pending row of a window-close gate".into())
        })
}
