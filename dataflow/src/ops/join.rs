//! Equi-joins (inner, left, right, full outer, semi, anti) with residual predicates; a cross
//! join is the case without keys.
//!
//! State (under the operator's prefix): `<side: 'l'|'r'> <len-prefixed key> <row>` → i64
//! multiplicity, for every row whose join key has no NULL (those never match and pass straight
//! through the outer sides).
//!
//! Inner joins apply the delta rule ΔL⋈R + L⋈ΔR + ΔL⋈ΔR against the previous epoch's state.
//! Outer, semi and anti joins recompute the output of each touched key from its old and new
//! rows (a key's output depends on whether any match exists), which costs the size of that
//! key's group, never the size of the inputs. Where each left row's output depends on the
//! right rows only (left, semi, anti joins), a key whose right rows did not change needs only
//! them: its changed left rows against them are the change (a right join likewise).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use freshet_common::Datum;
use freshet_sql::df_convert::{array_to_datums, rows_to_full_batch};
use freshet_state::row_codec;

use super::cache::{Cache, Weigh};
use super::join_expiry::{side_byte, Expiries, Horizon};
use super::join_tables::TableSide;
use super::Node;
use crate::delta::{consolidate, decode_count, encode, encode_count, push_len_prefixed, Delta};
use crate::epoch::{state_err, EpochChanges, EpochCtx};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    LeftSemi,
    LeftAnti,
    /// `NOT IN (subquery)`: an anti join where a NULL on either side makes the row's
    /// membership unknown (see `not_in.rs`).
    NullAwareAnti,
}

#[derive(Debug)]
pub struct JoinOp {
    pub prefix: Vec<u8>,
    /// Stored rows of one side and key, by their state prefix, as last read or written.
    pub cache: Cache<Arc<Rows>>,
    pub kind: JoinKind,
    /// Keys compare with IS NOT DISTINCT FROM (EXCEPT, INTERSECT): NULL matches NULL.
    pub null_equal: bool,
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Residual predicate over `joined` (left columns then right columns).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub left_width: usize,
    pub right_width: usize,
    /// Left columns then right columns, all nullable.
    pub joined: SchemaRef,
    /// The output: `joined`, or the left columns for semi/anti joins.
    pub schema: SchemaRef,
    /// When each side's rows can no longer match (see `join_expiry.rs`).
    pub expiry: Expiries,
    /// The sides (left, right) read from their tables, which keep no state of their own
    /// (see `join_tables.rs`).
    pub tables: [Option<TableSide>; 2],
}

pub(super) type Rows = Vec<(Vec<Datum>, i64)>;

impl Weigh for Arc<Rows> {
    fn weigh(&self) -> usize {
        self.iter()
            .map(|(row, _)| 32 + super::cache::row_bytes(row))
            .sum()
    }
}

/// One side's changes, split by key.
pub(super) struct SideChanges {
    pub(super) by_key: BTreeMap<Vec<u8>, Rows>,
    pub(super) null_keyed: Rows,
}

impl JoinOp {
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// One line for EXPLAIN; part of the view's fingerprint, so it names what the stored
    /// state depends on (the expiry index is optional state and is left out).
    pub fn describe(&self) -> String {
        let mut s = format!(
            "Join: kind={:?} keys={} residual={}",
            self.kind,
            self.left_keys.len(),
            self.filter
                .as_ref()
                .map_or("none".to_owned(), |f| f.to_string())
        );
        for (name, side) in ["left", "right"].iter().zip(&self.tables) {
            match side {
                Some(TableSide {
                    relation,
                    index: Some(index),
                    ..
                }) => s.push_str(&format!(
                    " {name}=table {} by index {}",
                    relation.0, index.0
                )),
                Some(t) => s.push_str(&format!(" {name}=table {} by its key", t.relation.0)),
                None => {}
            }
        }
        s
    }

    pub(super) fn side_prefix(&self, side: u8, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(side);
        push_len_prefixed(&mut k, key);
        k
    }

    /// The output changes for the inputs' changes `left` and `right`; `inputs` are the
    /// join's input nodes (a side read from its table evaluates its rows through them).
    pub fn apply(
        &self,
        left: Option<Delta>,
        right: Option<Delta>,
        inputs: [&Node; 2],
        changes: &EpochChanges,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<Option<Delta>> {
        // In a backfill a side read from its table is already whole in the snapshot.
        let (left, right) = match self.backfill_skips().filter(|_| ctx.backfill) {
            Some(0) => (None, right),
            Some(_) => (left, None),
            None => (left, right),
        };
        let l = self.split_or_isolate(left, &self.left_keys, ctx)?;
        let r = self.split_or_isolate(right, &self.right_keys, ctx)?;
        let mut out: Rows = Vec::new();
        if self.kind == JoinKind::NullAwareAnti {
            self.apply_not_in(&l, &r, inputs, ctx, &mut out)?;
        } else {
            let horizon = self.horizon(changes, ctx)?;
            self.apply_split(&l, &r, inputs, &horizon, ctx, &mut out)?;
            self.expire(&horizon, ctx)?;
        }
        let out: Rows = consolidate(out)
            .into_iter()
            .map(|(_, row, w)| (row, w))
            .collect();
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(Delta::from_rows(&out, &self.schema)?))
    }

    /// The output changes for changes split by key, added to `out`; writes the new state.
    pub(super) fn apply_split(
        &self,
        l: &SideChanges,
        r: &SideChanges,
        inputs: [&Node; 2],
        horizon: &Horizon,
        ctx: &mut EpochCtx<'_>,
        out: &mut Rows,
    ) -> Result<()> {
        // NULL keys match nothing: such rows only appear padded on an outer side.
        for (row, w) in &l.null_keyed {
            match self.kind {
                JoinKind::Left | JoinKind::Full => out.push((self.pad_left(row), *w)),
                JoinKind::LeftAnti => out.push((row.clone(), *w)),
                // NOT IN: a NULL never qualifies while the subquery has rows.
                _ => {}
            }
        }
        for (row, w) in &r.null_keyed {
            if matches!(self.kind, JoinKind::Right | JoinKind::Full) {
                out.push((self.pad_right(row), *w));
            }
        }
        let mut keys: Vec<&Vec<u8>> = l.by_key.keys().chain(r.by_key.keys()).collect();
        keys.sort();
        keys.dedup();
        // The stored rows every touched key needs, read with one iterator.
        let inner = self.kind == JoinKind::Inner;
        // (side, key, the side's state prefix for the key), each prefix built once.
        let mut wanted: Vec<(u8, &Vec<u8>, Vec<u8>)> = Vec::new();
        for key in &keys {
            let (dl, dr) = (l.by_key.contains_key(*key), r.by_key.contains_key(*key));
            for side in [b'l', b'r'] {
                if self.reads(side, dl, dr) {
                    wanted.push((side, key, self.side_prefix(side, key)));
                }
            }
        }
        let mut loaded: HashMap<Vec<u8>, Arc<Rows>> = HashMap::with_capacity(wanted.len());
        // A preview's snapshot may be older than what the cache holds: it reads the store.
        let cached = !ctx.preview;
        wanted.retain(
            |(_, _, prefix)| match self.cache.get(prefix).filter(|_| cached) {
                Some(rows) => {
                    loaded.insert(prefix.clone(), rows);
                    false
                }
                None => true,
            },
        );
        let (from_tables, wanted): (Vec<_>, Vec<_>) = wanted
            .into_iter()
            .partition(|(side, _, _)| self.table_side(*side).is_some());
        for (i, input) in inputs.into_iter().enumerate() {
            let (keys, prefixes): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = from_tables
                .iter()
                .filter(|(side, _, _)| *side == side_byte(i))
                .map(|(_, key, prefix)| (*key, prefix))
                .unzip();
            if keys.is_empty() {
                continue;
            }
            let found = self.read_table_side(i, input, &keys, ctx)?;
            for (prefix, rows) in prefixes.into_iter().zip(found) {
                let rows = Arc::new(rows);
                if cached {
                    self.cache.insert(prefix.clone(), Arc::clone(&rows));
                }
                loaded.insert(prefix.clone(), rows);
            }
        }
        let wanted: Vec<Vec<u8>> = wanted.into_iter().map(|(_, _, prefix)| prefix).collect();
        // Expired rows leave deletions between a side's groups; one iterator shared by every
        // group would walk them to the next live row: those groups get a bounded scan each.
        let expiring = |p: &Vec<u8>| {
            self.expiry
                .active()
                .any(|(i, _)| p.get(self.prefix.len()) == Some(&side_byte(i)))
        };
        let (bounded, shared): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            wanted.into_iter().partition(|p| expiring(p));
        let mut pages = ctx.snapshot.scan_prefixes(&shared).map_err(state_err)?;
        for p in &bounded {
            pages.push(ctx.snapshot.scan_prefix(p).map_err(state_err)?);
        }
        let wanted: Vec<Vec<u8>> = shared.into_iter().chain(bounded).collect();
        for (prefix, page) in wanted.into_iter().zip(pages) {
            let mut rows = Vec::with_capacity(page.len());
            for (k, v) in page {
                rows.push((
                    row_codec::decode_row(&k[prefix.len()..]).map_err(state_err)?,
                    decode_count(&v)?,
                ));
            }
            let rows = Arc::new(rows);
            if cached {
                self.cache.insert(prefix.clone(), Arc::clone(&rows));
            }
            loaded.insert(prefix, rows);
        }
        let empty = Rows::new();
        let load = |side: u8, key: &[u8]| {
            loaded
                .get(&self.side_prefix(side, key))
                .map_or(&empty, |rows| rows.as_ref())
        };
        let mut writes: Vec<(u8, &Vec<u8>, &Rows)> = Vec::new();
        for key in keys {
            let dl = l.by_key.get(key);
            let dr = r.by_key.get(key);
            if inner {
                if let Some(dl) = dl {
                    out.extend(self.inner_pairs(dl, load(b'r', key))?);
                }
                if let Some(dr) = dr {
                    out.extend(self.inner_pairs(load(b'l', key), dr)?);
                }
                if let (Some(dl), Some(dr)) = (dl, dr) {
                    out.extend(self.inner_pairs(dl, dr)?);
                }
            } else if let (Some(dl), None, true) = (dl, dr, self.rows_on_left()) {
                // Each left row's output depends on the right rows only: the changed left
                // rows against the unchanged right ones are the change.
                out.extend(self.output(dl, load(b'r', key))?);
            } else if let (None, Some(dr), JoinKind::Right) = (dl, dr, self.kind) {
                out.extend(self.output(load(b'l', key), dr)?);
            } else {
                let (l_old, r_old) = (load(b'l', key), load(b'r', key));
                let l_new = merge(l_old, dl);
                let r_new = merge(r_old, dr);
                for (row, w) in self.output(l_old, r_old)? {
                    out.push((row, -w));
                }
                out.extend(self.output(&l_new, &r_new)?);
            }
            if let Some(dl) = dl {
                writes.push((b'l', key, dl));
            }
            if let Some(dr) = dr {
                writes.push((b'r', key, dr));
            }
        }
        self.store_all(&writes, horizon, ctx)
    }

    /// Whether each left row's output depends on the right rows only (not on other left
    /// rows): left, semi and anti joins.
    fn rows_on_left(&self) -> bool {
        matches!(
            self.kind,
            JoinKind::Left | JoinKind::LeftSemi | JoinKind::LeftAnti
        )
    }

    /// Whether a key whose left (`dl`) and right (`dr`) rows changed needs the stored rows of
    /// `side`: an inner join the other side's; a join whose left rows' outputs depend on the
    /// right rows only needs the left ones only when the right ones changed (a right join
    /// likewise); a full join both.
    fn reads(&self, side: u8, dl: bool, dr: bool) -> bool {
        let left = side == b'l';
        match self.kind {
            JoinKind::Inner => {
                if left {
                    dr
                } else {
                    dl
                }
            }
            _ if self.rows_on_left() => !left || dr,
            JoinKind::Right => left || dl,
            _ => true,
        }
    }

    /// [`JoinOp::split`], leaving out (and recording) the rows whose keys cannot be evaluated.
    fn split_or_isolate(
        &self,
        d: Option<Delta>,
        keys: &[Arc<dyn PhysicalExpr>],
        ctx: &mut EpochCtx<'_>,
    ) -> Result<SideChanges> {
        match self.split(d.as_ref(), keys) {
            Ok(sc) => Ok(sc),
            Err(e) => {
                let Some(d) = d else { return Err(e) };
                let good = super::bad_rows::without_bad_rows(&d, ctx, e, |one| {
                    self.split(Some(one), keys).map(|_| ())
                })?;
                self.split(Some(&good), keys)
            }
        }
    }

    /// Rows of `d` by the encoding of their key values.
    pub(super) fn split(
        &self,
        d: Option<&Delta>,
        keys: &[Arc<dyn PhysicalExpr>],
    ) -> Result<SideChanges> {
        let mut sc = SideChanges {
            by_key: BTreeMap::new(),
            null_keyed: Vec::new(),
        };
        let Some(d) = d else { return Ok(sc) };
        let n = d.len();
        let key_cols: Vec<Vec<Datum>> = keys
            .iter()
            .map(|e| array_to_datums(&e.evaluate(&d.batch)?.into_array(n)?))
            .collect::<Result<_>>()?;
        for (i, (row, w)) in d.to_rows()?.into_iter().enumerate() {
            let key: Vec<Datum> = key_cols.iter().map(|c| c[i].clone()).collect();
            if !self.null_equal && key.iter().any(Datum::is_null) {
                sc.null_keyed.push((row, w));
            } else {
                sc.by_key.entry(encode(&key)).or_default().push((row, w));
            }
        }
        Ok(sc)
    }

    /// Writes the new multiplicities of the rows `delta` changes.
    pub(super) fn store(
        &self,
        side: u8,
        key: &[u8],
        delta: &Rows,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<()> {
        let key = key.to_vec();
        self.store_all(&[(side, &key, delta)], &[None, None], ctx)
    }

    /// [`Self::store`] for many (side, key, changes) at once: one MultiGet for all. Rows
    /// already past matching (`horizon`) are not stored; the others are indexed by expiry
    /// (`join_expiry.rs`).
    fn store_all(
        &self,
        writes: &[(u8, &Vec<u8>, &Rows)],
        horizon: &Horizon,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<()> {
        // Arrivals add to the stored count blindly (a merge); only departures read it.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut weights: Vec<i64> = Vec::new();
        let mut indexed: [Vec<(i64, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
        for (side, key, delta) in writes {
            let prefix = self.side_prefix(*side, key);
            if !ctx.preview {
                self.cache.remove(&prefix);
            }
            if self.table_side(*side).is_some() {
                // The table's own write is this side's state change.
                continue;
            }
            let i = usize::from(*side == side_byte(1));
            for (b, row, w) in consolidate((*delta).clone()) {
                let full = [prefix.as_slice(), &b].concat();
                if w > 0 {
                    let Some(time) = self.arrival(horizon, i, &row) else {
                        continue;
                    };
                    ctx.batch.merge(&full, encode_count(w));
                    if let Some(time) = time {
                        indexed[i].push((time, full));
                    }
                } else {
                    keys.push(full);
                    weights.push(w);
                }
            }
        }
        for (i, rows) in indexed.into_iter().enumerate() {
            if !rows.is_empty() {
                self.index(i, rows, ctx);
            }
        }
        let olds = ctx.snapshot.multi_get(&keys).map_err(state_err)?;
        for ((full, w), old) in keys.iter().zip(&weights).zip(olds) {
            let n = old.map(|b| decode_count(&b)).transpose()?.unwrap_or(0) + w;
            if n < 0 {
                return Err(DataFusionError::Internal(
                    "join row count went negative".into(),
                ));
            }
            if n == 0 {
                ctx.batch.delete(full);
            } else {
                ctx.batch.put(full, encode_count(n));
            }
        }
        Ok(())
    }

    fn pad_left(&self, l: &[Datum]) -> Vec<Datum> {
        let mut row = l.to_vec();
        row.resize(self.left_width + self.right_width, Datum::Null);
        row
    }

    fn pad_right(&self, r: &[Datum]) -> Vec<Datum> {
        let mut row = vec![Datum::Null; self.left_width];
        row.extend_from_slice(r);
        row
    }

    /// Which (l, r) pairs satisfy the residual predicate, row-major.
    fn matches(&self, l: &Rows, r: &Rows) -> Result<Vec<bool>> {
        let n = l.len() * r.len();
        let Some(filter) = &self.filter else {
            return Ok(vec![true; n]);
        };
        if n == 0 {
            return Ok(vec![]);
        }
        let mut pairs = Vec::with_capacity(n);
        for (lr, _) in l {
            for (rr, _) in r {
                let mut row = lr.clone();
                row.extend_from_slice(rr);
                pairs.push(row);
            }
        }
        let batch = rows_to_full_batch(&pairs, &self.joined)?;
        let mask = filter.evaluate(&batch)?.into_array(n)?;
        let mask = mask
            .as_boolean_opt()
            .ok_or_else(|| DataFusionError::Internal("join filter is not boolean".into()))?;
        Ok((0..n).map(|i| mask.is_valid(i) && mask.value(i)).collect())
    }

    fn inner_pairs(&self, l: &Rows, r: &Rows) -> Result<Rows> {
        let m = self.matches(l, r)?;
        let mut out = Vec::new();
        for (i, (lr, lw)) in l.iter().enumerate() {
            for (j, (rr, rw)) in r.iter().enumerate() {
                if m[i * r.len() + j] {
                    let mut row = lr.clone();
                    row.extend_from_slice(rr);
                    out.push((row, lw * rw));
                }
            }
        }
        Ok(out)
    }

    /// The full output for one key's rows (multiplicities positive).
    fn output(&self, l: &Rows, r: &Rows) -> Result<Rows> {
        let m = self.matches(l, r)?;
        let mut out = Vec::new();
        let mut right_matched = vec![false; r.len()];
        for (i, (lr, lw)) in l.iter().enumerate() {
            let mut any = false;
            for (j, (rr, rw)) in r.iter().enumerate() {
                if m[i * r.len() + j] {
                    any = true;
                    right_matched[j] = true;
                    if matches!(
                        self.kind,
                        JoinKind::Inner | JoinKind::Left | JoinKind::Right | JoinKind::Full
                    ) {
                        let mut row = lr.clone();
                        row.extend_from_slice(rr);
                        out.push((row, lw * rw));
                    }
                }
            }
            match self.kind {
                JoinKind::Left | JoinKind::Full if !any => out.push((self.pad_left(lr), *lw)),
                JoinKind::LeftSemi if any => out.push((lr.clone(), *lw)),
                JoinKind::LeftAnti | JoinKind::NullAwareAnti if !any => out.push((lr.clone(), *lw)),
                _ => {}
            }
        }
        if matches!(self.kind, JoinKind::Right | JoinKind::Full) {
            for (j, (rr, rw)) in r.iter().enumerate() {
                if !right_matched[j] {
                    out.push((self.pad_right(rr), *rw));
                }
            }
        }
        Ok(out)
    }
}

/// `old` with `delta` applied (rows whose multiplicity reaches zero removed).
fn merge(old: &Rows, delta: Option<&Rows>) -> Rows {
    let Some(delta) = delta else {
        return old.clone();
    };
    let all: Rows = old.iter().chain(delta.iter()).cloned().collect();
    consolidate(all)
        .into_iter()
        .filter(|(_, _, w)| *w > 0)
        .map(|(_, row, w)| (row, w))
        .collect()
}
