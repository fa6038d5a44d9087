//! Closing groups: an aggregate grouped by a column bounded below by a source's watermark (a
//! window's start or end, the event time itself; see `crate::event_time`) deletes a group's
//! state once the bound passes the group's value in that column — no later change can reach
//! the group, because the source admits no row below its watermark. The group's row stays in
//! the view (emitted on update) or has left through an `EMIT ON WINDOW CLOSE` gate; what goes
//! is the accumulator (when the operator keeps it under its own keys; kept in a view's
//! contents entry, it is part of the row) and the value multisets of MIN, MAX, DISTINCT and
//! ordered aggregates. So the state of a windowed aggregate is its open windows.
//!
//! State (under the operator's prefix):
//! ```text
//! 'w' <closing value: memcomparable> <group row> → group row   one per group, from its first row
//! 'L'                                            → the bound of the last close (i64 BE)
//! ```
//! Groups are indexed by closing value, so a close reads exactly the groups it deletes:
//! those between the last close's bound and the new one. A NULL closing value sorts last and
//! never closes.

use datafusion::error::Result;
use freshet_common::Datum;
use freshet_state::key_codec;

use super::{AggKind, AggregateOp};
use crate::epoch::{state_err, EpochChanges, EpochCtx};
use crate::bound::Bound;

/// Index entries read per page when groups close.
const PAGE: usize = 1024;

/// Which group column closes groups, and its bound.
#[derive(Debug, Clone)]
pub struct Closing {
    pub column: usize,
    pub bound: Bound,
}

impl AggregateOp {
    /// With `closing`, the state of groups the bound has passed is deleted.
    pub fn with_closing(mut self, closing: Option<Closing>) -> Self {
        self.closing = closing;
        self
    }

    pub fn closing(&self) -> Option<&Closing> {
        self.closing.as_ref()
    }

    /// Whether the epoch moves the closing bound.
    pub fn closing_moved(&self, changes: &EpochChanges) -> bool {
        self.closing
            .as_ref()
            .is_some_and(|c| c.bound.moved(changes))
    }

    fn index_key(&self, closing: &Datum, group: &[u8]) -> Vec<u8> {
        let mut k = self.index_from(None);
        key_codec::encode_key(std::slice::from_ref(closing), &mut k);
        k.extend_from_slice(group);
        k
    }

    /// The first index key of the groups whose closing value is `t` or more (all with `None`).
    fn index_from(&self, t: Option<i64>) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 10);
        k.extend_from_slice(&self.prefix);
        k.push(b'w');
        if let Some(t) = t {
            key_codec::encode_key(&[Datum::Timestamp(t)], &mut k);
        }
        k
    }

    fn last_close_key(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'L');
        k
    }

    /// After an epoch's groups are written: indexes the groups it created, and deletes the
    /// state of every group the bound has passed (`own`: the accumulators are under the
    /// operator's keys, not in a view's contents).
    pub(super) fn close(
        &self,
        created: &[(Vec<u8>, Datum)],
        own: bool,
        changes: &EpochChanges,
        ctx: &mut EpochCtx<'_>,
    ) -> Result<()> {
        let Some(closing) = &self.closing else {
            return Ok(());
        };
        let bound = closing.bound.now(changes, ctx.snapshot)?;
        let upper = bound.map(|b| self.index_from(Some(b)));
        for (group, value) in created {
            let key = self.index_key(value, group);
            if upper.as_ref().is_some_and(|u| key < *u) {
                self.forget(group, own, ctx);
            } else {
                ctx.batch.put(&key, group);
            }
        }
        let (Some(bound), Some(upper)) = (bound, upper) else {
            return Ok(());
        };
        let last = ctx.stored_i64(&self.last_close_key())?;
        if last.is_some_and(|l| l >= bound) {
            return Ok(());
        }
        let prefix = self.index_from(None);
        let first = self.index_from(last);
        let mut lower = first.clone();
        loop {
            let page = ctx
                .snapshot
                .scan(&prefix, &lower, Some(&upper), PAGE)
                .map_err(state_err)?;
            for (_, group) in &page {
                self.forget(group, own, ctx);
            }
            match page.last() {
                Some((k, _)) if page.len() == PAGE => lower = freshet_state::next_key(k),
                _ => break,
            }
        }
        ctx.batch.delete_range(&first, &upper);
        ctx.batch.put(self.last_close_key(), bound.to_be_bytes());
        Ok(())
    }

    /// Deletes the state of `group` (its row encoding): its accumulator when `own`, and its
    /// aggregates' value multisets.
    fn forget(&self, group: &[u8], own: bool, ctx: &mut EpochCtx<'_>) {
        if own {
            let key = self.group_key(group);
            if !ctx.preview {
                self.cache.remove(&key);
            }
            ctx.batch.delete(&key);
        }
        for (i, spec) in self.aggs.iter().enumerate() {
            let min_max = matches!(spec.kind, AggKind::Min | AggKind::Max);
            if spec.kind.keeps_values()
                && self.shares[i].is_none()
                && (!min_max || self.min_max_multisets())
            {
                let from = self.multiset_prefix(i, group);
                if let Some(to) = successor(&from) {
                    ctx.batch.delete_range(&from, &to);
                }
            }
        }
    }
}

/// The first key after every key that starts with `prefix`.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let at = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut to = prefix[..=at].to_vec();
    to[at] += 1;
    Some(to)
}
