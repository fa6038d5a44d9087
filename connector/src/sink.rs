//! The sink contract: a [`SinkWriter`] takes a view's committed changes ([`Changes`]: Arrow
//! rows with their epochs and signed multiplicities) to a destination, exactly once, by one of
//! two protocols ([`Protocol`]). The server's sink task owns everything else — reading the
//! changelog after commit, recording progress, retrying with backoff — so a new destination
//! (object storage, another database) is only a writer.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::error::ArrowError;
use freshet_common::{Datum, PgError};

/// Changes of the committed epochs `first..=last`, in epoch order: one batch in the view's
/// schema, each row with its epoch and signed multiplicity. Epochs that changed nothing have
/// no rows.
#[derive(Debug, Clone)]
pub struct Changes {
    pub first: u64,
    pub last: u64,
    pub rows: RecordBatch,
    pub epochs: Vec<u64>,
    pub diffs: Vec<i64>,
}

impl Changes {
    /// The rows of each epoch that has some: (epoch, the range of its rows).
    pub fn by_epoch(&self) -> Vec<(u64, std::ops::Range<usize>)> {
        let mut out: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
        for (i, &e) in self.epochs.iter().enumerate() {
            match out.last_mut() {
                Some((last, range)) if *last == e => range.end = i + 1,
                _ => out.push((e, i..i + 1)),
            }
        }
        out
    }
}

/// The rows of `rows` that arrive, each as many times as it arrives (`diffs` > 0); the
/// retractions dropped. For destinations that take only arrivals (append-only views never
/// retract; forced sinks drop retractions).
pub fn arrivals(rows: &RecordBatch, diffs: &[i64]) -> Result<RecordBatch, ArrowError> {
    if diffs.iter().all(|&w| w == 1) {
        return Ok(rows.clone());
    }
    let indices: UInt32Array = diffs
        .iter()
        .enumerate()
        .flat_map(|(i, &w)| std::iter::repeat_n(i as u32, w.max(0) as usize))
        .collect();
    take_record_batch(rows, &indices)
}

/// How a destination takes changes exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// What [`SinkWriter::write`] prepares is invisible until [`SinkWriter::finish`], which
    /// the server calls only once the sink's progress is durable; at start,
    /// [`SinkWriter::recover`] finishes what the progress covers and discards the rest
    /// (files: temporary names, renamed at finish).
    TwoPhase,
    /// Written output is visible at once and carries its place in the output; after a
    /// failure or restart the writer reads back what the destination holds and skips it.
    /// Progress only bounds how far back the changelog is re-read (Kafka).
    SelfDescribing,
}

/// What a write prepared: rows written, and for [`Protocol::TwoPhase`] the temporary parts
/// that [`SinkWriter::finish`] makes visible.
#[derive(Debug, Default)]
pub struct Prepared {
    pub rows: u64,
    pub parts: Vec<PathBuf>,
}

/// The changes gathered and not yet written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pending {
    pub rows: u64,
    /// About what the rows take in memory, uncompressed ([`row_bytes`]).
    pub bytes: u64,
    /// When the first of them was gathered.
    pub since: Option<Instant>,
}

/// A sink's destination. Methods block (the server calls them off its async workers).
pub trait SinkWriter: Send + Sync {
    fn protocol(&self) -> Protocol;

    /// Whether pending changes are written now, or gathered further (rollover).
    fn due(&self, pending: &Pending) -> bool;

    /// How long pending changes may wait at most (`None`: until the next epoch).
    fn max_wait(&self) -> Option<Duration> {
        None
    }

    /// Connects ahead of the first write (a failure is retried at the first write).
    fn open(&self) -> Result<(), PgError> {
        Ok(())
    }

    /// Writes `changes`; `stop` says when to give up waiting on the destination.
    fn write(&self, changes: &Changes, stop: &dyn Fn() -> bool) -> Result<Prepared, PgError>;

    /// Makes what `write` prepared visible, durably (after the progress is).
    fn finish(&self, _prepared: &Prepared) -> Result<(), PgError> {
        Ok(())
    }

    /// Discards what `write` prepared (the sink was never committed).
    fn discard(&self, _prepared: &Prepared) {}

    /// At start: settles what a crash left, given the last epoch committed in the progress.
    fn recover(&self, _committed: u64) -> Result<(), PgError> {
        Ok(())
    }

    /// After a failed write: forgets connections, so the next write starts afresh.
    fn reset(&self) {}
}

/// About what a row takes in memory, uncompressed (for `rollover_bytes`).
pub fn row_bytes(row: &[Datum]) -> u64 {
    fn datum(d: &Datum) -> u64 {
        match d {
            Datum::Null => 1,
            Datum::Text(s) => 4 + s.len() as u64,
            Datum::Bytes(b) => 4 + b.len() as u64,
            Datum::Decimal(_) | Datum::Interval { .. } => 16,
            Datum::List(l) => 4 + l.iter().map(datum).sum::<u64>(),
            _ => 8,
        }
    }
    row.iter().map(datum).sum()
}
