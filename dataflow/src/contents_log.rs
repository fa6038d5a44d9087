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
//!
//! ## Staged occurrences
//!
//! The root aggregate's MIN/MAX arrivals (one occurrence entry per input row, at a scattered
//! key: see ops/aggregate/mod.rs) ride in the log entry too, as *staged* records, instead of
//! going to the epoch's batch. The fold writes them in runs of [`RUN_BYTES`], each sorted by
//! key ([`WriteBatch`] orders its writes), so RocksDB's memtable takes them in key order —
//! each insert lands next to the previous one — instead of ~1,000 scattered inserts per epoch,
//! which cost ~650 ns each (benchmarks.md, 2026-11-25). Staged occurrences are pure
//! additions: an epoch about to read a multiset holding staged occurrences (a MIN/MAX
//! retraction) stops with [`needs_fold`], and the engine folds and runs it again; an aggregate
//! that saw a retraction between two folds stages nothing until a fold window without one
//! (`AggregateOp::folded`), so workloads with deletes or updates write as before.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use datafusion::error::{DataFusionError, Result};
use freshet_common::TableId;
use freshet_state::row_codec::{read_varint, write_varint};
use freshet_state::{contents_log_prefix, Snapshot, WriteBatch};
use hashbrown::HashSet;

use crate::epoch::state_err;

/// Length marking a deleted group in a log entry.
const DELETED: u32 = u32::MAX;

/// Key length marking an entry's section of staged occurrences: the section's length (u32
/// LE) and its records follow, each the key's length (varint), the key — the entry's key
/// after the operator's prefix, without the 8 bytes of the epoch's sequence number its
/// occurrence id starts with (the log entry's key holds it) — the value's length (varint) and
/// the value.
const STAGED: u32 = u32::MAX - 1;

/// Bytes of an occurrence id after the epoch's sequence number (see ops/aggregate).
pub const STAGED_ID_TAIL: usize = 4;

/// Bytes of staged records one epoch's entry takes at most: a large epoch (a bulk INSERT)
/// writes the rest of its arrivals to its batch directly, so entries stay small and their
/// section length fits its u32.
pub const STAGED_EPOCH_BYTES: usize = 16 << 20;

/// Bytes of staged occurrences a fold writes per write batch (each sorted): runs of at least
/// a memtable's worth keep its inserts in key order.
const RUN_BYTES: usize = 4 << 20;

/// The error an epoch stops with when it must read a multiset whose occurrences are staged in
/// a contents log: the caller folds the logs and runs the epoch again.
pub(crate) fn needs_fold() -> DataFusionError {
    DataFusionError::External(Box::new(NeedsFold))
}

/// Whether `e` is [`needs_fold`]'s.
pub(crate) fn is_needs_fold(e: &DataFusionError) -> bool {
    match e.find_root() {
        DataFusionError::External(inner) => inner.is::<NeedsFold>(),
        _ => false,
    }
}

#[derive(Debug)]
struct NeedsFold;

impl std::fmt::Display for NeedsFold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("staged aggregate values must be folded before this epoch")
    }
}

impl std::error::Error for NeedsFold {}

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

    /// Appends the epoch's staged occurrence records ([`push_staged`]) as its section.
    pub fn extend_staged(&mut self, records: &[u8]) {
        if records.is_empty() {
            return;
        }
        self.buf.extend_from_slice(&STAGED.to_le_bytes());
        self.buf
            .extend_from_slice(&(records.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(records);
    }
}

/// Appends to `buf` a staged occurrence record: the operator state entry whose key is
/// `key_parts` (after the operator's prefix), then the epoch's sequence number, then `tail`,
/// holding what `value` appends.
pub fn push_staged(
    buf: &mut Vec<u8>,
    key_parts: &[&[u8]],
    tail: &[u8; STAGED_ID_TAIL],
    value: impl FnOnce(&mut Vec<u8>),
) {
    let key_len = key_parts.iter().map(|p| p.len()).sum::<usize>() + STAGED_ID_TAIL;
    write_varint(key_len as u64, buf);
    key_parts.iter().for_each(|p| buf.extend_from_slice(p));
    buf.extend_from_slice(tail);
    // Values are mostly empty (the key holds the value): one length byte, moved over for
    // the rare long value.
    let len_at = buf.len();
    buf.push(0);
    value(buf);
    let value_len = buf.len() - len_at - 1;
    if value_len < 0x80 {
        buf[len_at] = value_len as u8;
    } else {
        let mut len = Vec::with_capacity(5);
        write_varint(value_len as u64, &mut len);
        buf.splice(len_at..len_at + 1, len);
    }
}

/// The first `n` bytes of `buf`, which then starts after them.
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    let (head, rest) = buf.split_at_checked(n).ok_or_else(truncated)?;
    *buf = rest;
    Ok(head)
}

/// The staged occurrence records of a section: (key without the sequence number, value).
fn staged_records(mut buf: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8])>> {
    fn varint(buf: &mut &[u8]) -> Result<usize> {
        let n = read_varint(buf).map_err(|_| truncated())?;
        usize::try_from(n).map_err(|_| malformed())
    }
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let mut next = || {
            let k = varint(&mut buf)?;
            let key = take(&mut buf, k)?;
            let v = varint(&mut buf)?;
            Ok((key, take(&mut buf, v)?))
        };
        let item = next();
        if item.is_err() {
            buf = &[];
        }
        Some(item)
    })
}

fn truncated() -> DataFusionError {
    DataFusionError::Internal("a contents log entry is truncated".into())
}

/// One record of a log entry.
#[derive(Debug, PartialEq, Eq)]
enum Record<'a> {
    /// Group `key` (after the contents prefix) now stores the value; `None`: it is gone.
    Group(&'a [u8], Option<&'a [u8]>),
    /// A section of staged occurrence records ([`staged_records`]).
    Staged(&'a [u8]),
}

fn malformed() -> DataFusionError {
    DataFusionError::Internal("a contents log entry is malformed".into())
}

/// The records of a stored log entry, in the order written.
fn entries(mut buf: &[u8]) -> impl Iterator<Item = Result<Record<'_>>> {
    fn len(buf: &mut &[u8]) -> Result<u32> {
        let b = take(buf, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let mut next = || {
            let k = len(&mut buf)?;
            if k == STAGED {
                let n = len(&mut buf)? as usize;
                return Ok(Record::Staged(take(&mut buf, n)?));
            }
            let key = take(&mut buf, k as usize)?;
            let value = match len(&mut buf)? {
                DELETED => None,
                n => Some(take(&mut buf, n as usize)?),
            };
            Ok(Record::Group(key, value))
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
    /// each group is written once. Staged occurrences (under `op_prefix`) go to `write` in
    /// batches of their own, committed before `batch`: writing them again after a crash
    /// between the two is harmless (the same entries, which no later epoch removed). Call
    /// [`ContentsLog::folded`] once the batch committed.
    pub fn fold(
        &self,
        snapshot: &Snapshot,
        batch: &mut WriteBatch,
        contents_prefix: &[u8],
        op_prefix: &[u8],
        write: &mut dyn FnMut(WriteBatch) -> Result<()>,
    ) -> Result<()> {
        let mut written: HashSet<Box<[u8]>> = HashSet::new();
        let mut run = WriteBatch::default();
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
                    let epoch = u64::from_be_bytes(epoch.try_into().map_err(|_| malformed())?);
                    self.pending_below.store(epoch + 1, Ordering::Relaxed);
                }
            }
            for (log_key, value) in &page {
                let epoch = log_key.get(self.prefix.len()..).ok_or_else(malformed)?;
                for item in entries(value) {
                    let (key, value) = match item? {
                        Record::Group(key, value) => (key, value),
                        Record::Staged(section) => {
                            for record in staged_records(section) {
                                let (key, value) = record?;
                                let at = key
                                    .len()
                                    .checked_sub(STAGED_ID_TAIL)
                                    .ok_or_else(malformed)?;
                                run.put_with(&[op_prefix, &key[..at], epoch, &key[at..]], |b| {
                                    b.extend_from_slice(value)
                                });
                                if run.bytes() >= RUN_BYTES {
                                    write(std::mem::take(&mut run))?;
                                }
                            }
                            continue;
                        }
                    };
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
                _ if run.is_empty() => return Ok(()),
                _ => return write(run),
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
        let mut staged = Vec::new();
        push_staged(&mut staged, &[b"m", b"1"], b"0001", |b| {
            b.extend_from_slice(b"x")
        });
        let long = vec![7u8; 300];
        push_staged(&mut staged, &[b"m2"], b"0002", |b| {
            b.extend_from_slice(&long)
        });
        push_staged(&mut staged, &[&long], b"0003", |_| {});
        e.extend_staged(&staged);
        e.extend_staged(&[]);
        e.push(b"k4", None);
        let got: Vec<_> = entries(&e.buf).collect::<Result<_>>().unwrap();
        assert_eq!(
            got,
            vec![
                Record::Group(b"k1", Some(b"v1")),
                Record::Group(b"", None),
                Record::Group(b"k3", Some(b"")),
                Record::Staged(&staged),
                Record::Group(b"k4", None),
            ]
        );
        let records: Vec<_> = staged_records(&staged).collect::<Result<_>>().unwrap();
        let long_key = [&long[..], b"0003"].concat();
        assert_eq!(
            records,
            vec![
                (&b"m10001"[..], &b"x"[..]),
                (&b"m20002"[..], &long[..]),
                (&long_key[..], &b""[..]),
            ]
        );
        assert!(staged_records(&staged[..staged.len() - 1]).any(|r| r.is_err()));
        // A truncated entry is an error, not a panic.
        let cut = &e.buf[..e.buf.len() - 1];
        assert!(entries(cut).any(|r| r.is_err()));
    }
}
