//! `x NOT IN (SELECT y …)`: a null-aware anti join.
//!
//! A left row qualifies when the subquery is empty (whatever `x` is); otherwise only when `x`
//! is not NULL, equals no `y`, and no `y` is NULL (a NULL makes the answer unknown). So the
//! output is in one of three modes, decided by two counts of the right side kept in state
//! (`'c'` → [rows, NULL rows]): *empty* (every left row), *has NULL* (nothing) and *normal*
//! (a plain anti join on the non-NULL keys, maintained per touched key). Left rows with a NULL
//! key are kept under `'n'`, for the empty mode.
//!
//! While the mode stays the same an epoch costs what a plain anti join costs. When it changes
//! (the subquery becomes empty or non-empty, its first NULL appears or its last goes) the
//! whole output flips: the old and new outputs are computed from the full state. That is the
//! size of the inputs, as it is the size of the change in the output.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::error::{DataFusionError, Result};
use freshet_common::Datum;
use freshet_state::row_codec;

use super::join::{JoinOp, Rows, SideChanges};
use super::Node;
use crate::delta::{consolidate, decode_count, encode};
use crate::epoch::{state_err, EpochCtx};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Empty,
    HasNull,
    Normal,
}

fn mode(rows: i64, nulls: i64) -> Mode {
    if rows == 0 {
        Mode::Empty
    } else if nulls > 0 {
        Mode::HasNull
    } else {
        Mode::Normal
    }
}

/// A side's full contents: (key, row encoding) → (row, count).
type Contents = BTreeMap<(Vec<u8>, Vec<u8>), (Vec<Datum>, i64)>;

impl JoinOp {
    pub(super) fn apply_not_in(
        &self,
        l: &SideChanges,
        r: &SideChanges,
        inputs: [&Node; 2],
        ctx: &mut EpochCtx<'_>,
        out: &mut Rows,
    ) -> Result<()> {
        let counts_key = [self.prefix.as_slice(), b"c"].concat();
        let (old_rows, old_nulls) = match ctx.snapshot.get(&counts_key).map_err(state_err)? {
            Some(b) => {
                let d = row_codec::decode_row(&b).map_err(state_err)?;
                match d.as_slice() {
                    [Datum::Int64(a), Datum::Int64(b)] => (*a, *b),
                    _ => return Err(DataFusionError::Internal("corrupt NOT IN counts".into())),
                }
            }
            None => (0, 0),
        };
        let d_nulls: i64 = r.null_keyed.iter().map(|(_, w)| w).sum();
        let d_rows: i64 = d_nulls + r.by_key.values().flatten().map(|(_, w)| w).sum::<i64>();
        let (new_rows, new_nulls) = (old_rows + d_rows, old_nulls + d_nulls);
        let (before, after) = (mode(old_rows, old_nulls), mode(new_rows, new_nulls));
        let old_all = if before == after {
            None
        } else {
            Some(self.not_in_output(before, ctx, None)?)
        };
        if before == after && before == Mode::Normal {
            self.apply_split(l, r, inputs, &[None, None], ctx, out)?;
        } else {
            // While the subquery stays empty every left change passes; otherwise the output
            // comes from the mode's rule below. Either way only the state changes here.
            if before == after && before == Mode::Empty {
                out.extend(l.by_key.values().flatten().chain(&l.null_keyed).cloned());
            }
            for (key, dl) in &l.by_key {
                self.store(b'l', key, dl, ctx)?;
            }
            for (key, dr) in &r.by_key {
                self.store(b'r', key, dr, ctx)?;
            }
        }
        if !l.null_keyed.is_empty() {
            self.store(b'n', &[], &l.null_keyed, ctx)?;
        }
        if d_rows != 0 || d_nulls != 0 {
            let mut buf = Vec::new();
            row_codec::encode_row(&[Datum::Int64(new_rows), Datum::Int64(new_nulls)], &mut buf);
            ctx.batch.put(&counts_key, buf);
        }
        if let Some(old_all) = old_all {
            let new_all = self.not_in_output(after, ctx, Some((l, r)))?;
            out.extend(old_all.into_iter().map(|(row, w)| (row, -w)));
            out.extend(new_all);
        }
        Ok(())
    }

    /// The whole output in `mode`, from the stored state plus (when given) this epoch's changes.
    fn not_in_output(
        &self,
        mode: Mode,
        ctx: &EpochCtx<'_>,
        changes: Option<(&SideChanges, &SideChanges)>,
    ) -> Result<Rows> {
        if mode == Mode::HasNull {
            return Ok(vec![]);
        }
        let mut left = self.contents(b'l', ctx, changes.map(|(l, _)| &l.by_key))?;
        if mode == Mode::Empty {
            let nulls: BTreeMap<Vec<u8>, Rows> = changes
                .map(|(l, _)| [(vec![], l.null_keyed.clone())].into())
                .unwrap_or_default();
            left.extend(self.contents(b'n', ctx, Some(&nulls))?);
            return Ok(left.into_values().filter(|(_, n)| *n > 0).collect());
        }
        let right: BTreeSet<Vec<u8>> = self
            .contents(b'r', ctx, changes.map(|(_, r)| &r.by_key))?
            .into_iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|((k, _), _)| k)
            .collect();
        Ok(left
            .into_iter()
            .filter(|((k, _), (_, n))| *n > 0 && !right.contains(k))
            .map(|(_, v)| v)
            .collect())
    }

    /// Every stored row of `side`, with `changes` (by key) applied.
    fn contents(
        &self,
        side: u8,
        ctx: &EpochCtx<'_>,
        changes: Option<&BTreeMap<Vec<u8>, Rows>>,
    ) -> Result<Contents> {
        let prefix = [self.prefix.as_slice(), &[side]].concat();
        let mut out = Contents::new();
        for (k, v) in ctx.snapshot.scan_prefix(&prefix).map_err(state_err)? {
            let rest = &k[prefix.len()..];
            let len = rest
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            let (key, row_bytes) = match len {
                Some(len) if rest.len() >= 4 + len => {
                    (rest[4..4 + len].to_vec(), rest[4 + len..].to_vec())
                }
                _ => return Err(DataFusionError::Internal("corrupt join state key".into())),
            };
            let row = row_codec::decode_row(&row_bytes).map_err(state_err)?;
            out.insert((key, row_bytes), (row, decode_count(&v)?));
        }
        for (key, rows) in changes.into_iter().flatten() {
            for (_, row, w) in consolidate(rows.clone()) {
                out.entry((key.clone(), encode(&row)))
                    .or_insert_with(|| (row, 0))
                    .1 += w;
            }
        }
        Ok(out)
    }
}
