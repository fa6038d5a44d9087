//! The contents log of an aggregate view: each epoch's changed groups in one sequential entry,
//! folded into the groups' own entries later.
//!
//! A view whose root aggregate keeps its accumulators in its contents
//! (`ops/aggregate/contents.rs`) would write one entry per changed group per epoch at a
//! scattered key — with 1,000-row epochs over 100k groups, about one scattered RocksDB insert
//! per input row, the largest single cost of benchmark (b) (docs/design/
//! 20261125_aggregate_write_budget.md). Instead each epoch appends **one** entry
//! `'l' <view id> <epoch>` holding every group it changed, in the epoch's write batch, so the
//! epoch is as durable and atomic as before. A **fold** writes each logged group's latest
//! value to its key and deletes the folded log entries, in one batch of its own:
//!
//! * when the logs of all views together pass their budget (they share one memtable sized to
//!   hold them, flushed after each large fold — `Store::flush_contents_log` in freshet-state
//!   — so folded entries never reach a file), or the aggregate's cache (which must keep every group
//!   whose stored entry lags: `Cache::hold` in ops/cache.rs) passes its own;
//! * before anything reads the contents: a statement whose plan scans the view, `FLUSH`, a
//!   new view's backfill ([`Dataflows::log_generation`](crate::Dataflows::log_generation)
//!   says when one is needed);
//! * before the first epoch after a restart or a failed epoch, when the cache lost the
//!   lagging groups (the log still has them: nothing is recomputed).
//!
//! Between folds a group changed in many epochs is written once instead of once per epoch.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use datafusion::error::{DataFusionError, Result};
use freshet_common::TableId;
use freshet_state::{contents_log_prefix, Snapshot, WriteBatch};
use hashbrown::HashSet;

use crate::epoch::state_err;

/// Length marking a deleted group in a log entry.
const DELETED: u32 = u32::MAX;

/// Log entries read per page while folding (each holds one epoch's groups).
const FOLD_PAGE: usize = 16;

/// One view's contents log.
#[derive(Debug)]
pub struct ContentsLog {
    /// `'l' <view id>`.
    prefix: Vec<u8>,
    /// Bytes logged since the last fold (as written by this process).
    bytes: AtomicUsize,
    /// Entries of epochs before this one are folded and deleted: folds start here, so they
    /// do not step over the deleted entries (tombstones) of every earlier fold.
    folded_below: AtomicU64,
    /// What `folded_below` becomes once the pending fold commits.
    pending_below: AtomicU64,
}

/// One epoch's entry under construction: the changed groups, by key after the view prefix.
#[derive(Debug, Default)]
pub struct LogEntry {
    buf: Vec<u8>,
}

impl LogEntry {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
        }
    }

    /// Group `key` now stores `value`; `None`: the group is gone.
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.buf
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        match value {
            Some(v) => {
                self.buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                self.buf.extend_from_slice(v);
            }
            None => self.buf.extend_from_slice(&DELETED.to_le_bytes()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The (key, value) pairs of a stored log entry, in the order written.
fn entries(mut buf: &[u8]) -> impl Iterator<Item = Result<(&[u8], Option<&[u8]>)>> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if buf.len() < n {
            return Err(DataFusionError::Internal(
                "a contents log entry is truncated".into(),
            ));
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }
    fn len(buf: &mut &[u8]) -> Result<u32> {
        let b = take(buf, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let mut next = || {
            let k = len(&mut buf)? as usize;
            let key = take(&mut buf, k)?;
            let value = match len(&mut buf)? {
                DELETED => None,
                n => Some(take(&mut buf, n as usize)?),
            };
            Ok((key, value))
        };
        let item = next();
        if item.is_err() {
            buf = &[];
        }
        Some(item)
    })
}

impl ContentsLog {
    /// The log of view `view` (folded once all views' logs together pass the budget the
    /// engine holds: [`Dataflows::wants_fold`](crate::Dataflows::wants_fold)).
    pub fn new(view: TableId) -> Self {
        Self {
            prefix: contents_log_prefix(view),
            bytes: AtomicUsize::new(0),
            folded_below: AtomicU64::new(0),
            pending_below: AtomicU64::new(0),
        }
    }

    /// Writes `entry` as the log entry of the epoch reading `snapshot`.
    pub fn append(&self, snapshot: &Snapshot, batch: &mut WriteBatch, entry: LogEntry) {
        if entry.is_empty() {
            return;
        }
        let mut key = Vec::with_capacity(self.prefix.len() + 8);
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(&snapshot.sequence().to_be_bytes());
        self.bytes.fetch_add(entry.buf.len(), Ordering::Relaxed);
        batch.put(key, entry.buf);
    }

    /// Whether this process logged anything since the last fold.
    pub fn logged(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) > 0
    }

    /// Bytes logged since the last fold.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Writes into `batch` the latest logged value of every group in the log `snapshot` holds
    /// (under `contents_prefix`), and deletes those log entries. Reads the log newest first, so
    /// each group is written once. Call [`ContentsLog::folded`] once the batch committed.
    pub fn fold(
        &self,
        snapshot: &Snapshot,
        batch: &mut WriteBatch,
        contents_prefix: &[u8],
    ) -> Result<()> {
        let mut written: HashSet<Box<[u8]>> = HashSet::new();
        let mut upper: Option<Vec<u8>> = None;
        let mut lower = self.prefix.clone();
        lower.extend_from_slice(&self.folded_below.load(Ordering::Relaxed).to_be_bytes());
        loop {
            let page = snapshot
                .scan_reverse_from(&self.prefix, &lower, upper.as_deref(), FOLD_PAGE)
                .map_err(state_err)?;
            if upper.is_none() {
                // The newest entry: everything up to it is folded once this batch commits.
                if let Some(epoch) = page.first().and_then(|(k, _)| k.get(self.prefix.len()..)) {
                    let epoch = u64::from_be_bytes(epoch.try_into().map_err(|_| {
                        DataFusionError::Internal("a contents log key is malformed".into())
                    })?);
                    self.pending_below.store(epoch + 1, Ordering::Relaxed);
                }
            }
            for (log_key, value) in &page {
                for item in entries(value) {
                    let (key, value) = item?;
                    if written.contains(key) {
                        continue;
                    }
                    let mut full = Vec::with_capacity(contents_prefix.len() + key.len());
                    full.extend_from_slice(contents_prefix);
                    full.extend_from_slice(key);
                    match value {
                        Some(v) => batch.put(&full, v),
                        None => batch.delete(&full),
                    }
                    written.insert(key.into());
                }
                batch.delete(log_key);
            }
            match page.last() {
                Some((k, _)) if page.len() == FOLD_PAGE => upper = Some(k.to_vec()),
                _ => return Ok(()),
            }
        }
    }

    /// The fold's batch committed: the log is empty.
    pub fn folded(&self) {
        self.bytes.store(0, Ordering::Relaxed);
        self.folded_below.fetch_max(
            self.pending_below.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let mut e = LogEntry::default();
        e.push(b"k1", Some(b"v1"));
        e.push(b"", None);
        e.push(b"k3", Some(b""));
        let got: Vec<_> = entries(&e.buf).collect::<Result<_>>().unwrap();
        assert_eq!(
            got,
            vec![
                (&b"k1"[..], Some(&b"v1"[..])),
                (&b""[..], None),
                (&b"k3"[..], Some(&b""[..]))
            ]
        );
        // A truncated entry is an error, not a panic.
        let cut = &e.buf[..e.buf.len() - 1];
        assert!(entries(cut).any(|r| r.is_err()));
    }
}
