//! An aggregate at a view's root keeping its accumulators inside the view's contents.
//!
//! A view whose rows are an aggregate's output — directly, or through a projection of plain
//! columns that keeps the group columns first — is keyed by its group columns. Instead of
//! writing each changed group twice (its accumulator under the operator's key, its row under
//! the view's), the accumulator rides in the group's contents entry, after the row:
//! ```text
//! view prefix ++ group key → count (always 1) ++ row (row_codec) ++ accumulator (row_codec)
//! ```
//! Readers of the view decode the row and never look past it. The choice is made when the view
//! is created and recorded in its catalog entry, so views created before keep their layout.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use freshet_common::Datum;
use freshet_sql::df_convert::batch_to_rows;
use freshet_state::{key_codec, row_codec};

use super::{AccHome, AggregateOp, Touched};
use crate::contents_log::{ContentsLog, LogEntry};
use crate::delta::{encode_count, Delta};
use crate::encode::{encode_rows_keyed_by, encode_value_direct_into, VALUE_SLOT};
use crate::epoch::{state_err, EpochChanges, EpochCtx};

/// How a view's contents hold its root aggregate's groups.
#[derive(Debug)]
pub struct ContentsLayout {
    /// The view's contents prefix.
    pub prefix: Vec<u8>,
    /// View column `i` is the aggregate's output column `columns[i]`.
    pub columns: Vec<usize>,
    /// The view's first `key_columns` columns, all group columns, key its contents.
    pub key_columns: usize,
    /// The view's output schema.
    pub schema: SchemaRef,
    /// Where epochs write changed groups, when not straight to their entries.
    pub log: Option<ContentsLog>,
}

impl ContentsLayout {
    /// The contents key of the group whose output group columns are `group`.
    pub(super) fn key(&self, group: &[Datum]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 16 * self.key_columns);
        k.extend_from_slice(&self.prefix);
        for &c in &self.columns[..self.key_columns] {
            key_codec::encode_key(std::slice::from_ref(&group[c]), &mut k);
        }
        k
    }

    /// The view's row of an aggregate output row.
    fn row(&self, out: &[Datum]) -> Vec<Datum> {
        self.columns.iter().map(|&c| out[c].clone()).collect()
    }
}

/// Completes the contents value starting at `values[start..]` (an encoded row): its count
/// (always 1), then the accumulator.
fn finish_value(values: &mut Vec<u8>, start: usize, acc: &[Datum]) {
    values[start..start + VALUE_SLOT].copy_from_slice(&encode_count(1));
    row_codec::encode_row(acc, values);
}

/// The accumulator's encoding in a contents entry.
pub(super) fn acc_of(stored: &[u8]) -> Result<&[u8]> {
    let missing =
        || DataFusionError::Internal("a view contents entry holds no aggregate state".into());
    let row = stored.get(VALUE_SLOT..).ok_or_else(missing)?;
    let acc = &row[row_codec::row_len(row).map_err(state_err)?..];
    if acc.is_empty() {
        return Err(missing());
    }
    Ok(acc)
}

impl AggregateOp {
    /// [`AggregateOp::apply`] for an aggregate whose accumulators live in the view contents
    /// `layout` describes: writes the contents (one entry per changed group, or, with a
    /// contents log and after the backfill, one log entry for them all); returns the view's
    /// changes when `output`, for views that read this one.
    pub fn apply_to_contents(
        &self,
        input: Option<Delta>,
        changes: &EpochChanges,
        ctx: &mut EpochCtx<'_>,
        layout: &ContentsLayout,
        output: bool,
    ) -> Result<Vec<(Vec<Datum>, i64)>> {
        let log = layout.log.as_ref().filter(|_| !ctx.backfill && !ctx.preview);
        if log.is_some() {
            // Groups whose entries lag behind the log live only here until the next fold.
            self.cache.hold();
        }
        let Touched {
            keys,
            found,
            mut settled,
            created,
        } = self.settle(input, ctx, &AccHome::Contents(layout), output)?;
        // Each new row's contents value (count, row, accumulator), back to back in `values`.
        // The bytes readers expect are those of the row through Arrow, as every view's rows
        // are encoded; straight from the datums when their types are plain (the same bytes).
        let mut values: Vec<u8> = Vec::with_capacity(settled.len() * 64);
        let mut ends: Vec<usize> = Vec::with_capacity(settled.len());
        let mut direct = true;
        for s in &settled {
            let Some(r) = s.new.as_deref() else { continue };
            let start = values.len();
            let cols = layout.columns.iter().map(|&c| &r[c]);
            if !encode_value_direct_into(&layout.schema, cols, &mut values) {
                direct = false;
                break;
            }
            finish_value(&mut values, start, &s.acc);
            ends.push(values.len());
        }
        if !direct {
            values.clear();
            ends.clear();
            let rows: Vec<(Vec<Datum>, i64)> = settled
                .iter()
                .filter_map(|s| s.new.as_deref().map(|r| (layout.row(r), 1)))
                .collect();
            let d = Delta::from_rows(&rows, &layout.schema)?;
            let encoded = encode_rows_keyed_by(&d.batch, &layout.prefix, layout.key_columns)?;
            let new_keys = keys.iter().zip(&settled).filter(|(_, s)| s.new.is_some());
            let accs = settled
                .iter()
                .filter_map(|s| s.new.as_ref().map(|_| &s.acc));
            for (((key, _), (row_key, value)), acc) in new_keys
                .zip(encoded.keys.into_iter().zip(encoded.values))
                .zip(accs)
            {
                if row_key != *key {
                    return Err(DataFusionError::Internal(
                        "a view row's key differs from its group's key".into(),
                    ));
                }
                let start = values.len();
                values.extend_from_slice(&value);
                finish_value(&mut values, start, acc);
                ends.push(values.len());
            }
        }
        let mut accs = Vec::with_capacity(keys.len());
        let mut entry = LogEntry::with_capacity(if log.is_some() {
            let key_bytes: usize = keys.iter().map(|k| k.len() - layout.prefix.len()).sum();
            values.len() + key_bytes + keys.len() * 8 + self.staged_bytes() + 8
        } else {
            0
        });
        let mut ends = ends.into_iter();
        let mut from = 0;
        for (key, s) in keys.iter().zip(&mut settled) {
            let value = match s.new {
                None => None,
                Some(_) => {
                    let to = ends.next().ok_or_else(|| {
                        DataFusionError::Internal("a view row was not encoded".into())
                    })?;
                    let value = &values[from..to];
                    from = to;
                    Some(value)
                }
            };
            match (log, value) {
                (Some(_), value) => entry.push(&key[layout.prefix.len()..], value),
                (None, Some(value)) => ctx.batch.put(key, value),
                (None, None) => ctx.batch.delete(key),
            }
            accs.push(value.map(|_| std::mem::take(&mut s.acc)));
        }
        if let Some(log) = log {
            self.take_staged(|staged| entry.extend_staged(staged));
            log.append(ctx.snapshot, ctx.batch, entry);
        }
        if !ctx.preview {
            self.cache.set_accs(&found, &keys, accs);
        }
        self.close(&created, false, changes, ctx)?;
        if !output {
            return Ok(vec![]);
        }
        let mut out = Vec::new();
        for s in settled.iter().filter(|s| s.old != s.new) {
            out.extend(s.old.as_deref().map(|r| (layout.row(r), -1)));
            out.extend(s.new.as_deref().map(|r| (layout.row(r), 1)));
        }
        if out.is_empty() {
            return Ok(out);
        }
        // Through Arrow, so readers get the values as the view's columns type them.
        let d = Delta::from_rows(&out, &layout.schema)?;
        Ok(batch_to_rows(&d.batch)?
            .into_iter()
            .zip(d.weights)
            .collect())
    }
}
