//! What a source records when its positions fall outside the topic's log: retention gaps
//! (`'s' id 'g' partition first` → last ++ detected-at ms), counted and queryable, and a halt
//! (`'s' id 'h'` → why) after a topic reset, which keeps the source from reading — also
//! across restarts — until `ALTER SOURCE … RESET`.
//! Also how far a source lags behind its topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use freshet_common::{PgError, SqlState, TableId};
use freshet_connector::{OffsetProblem, BEGINNING};
use freshet_state::{source_prefix, Snapshot, WriteBatch};

use super::{be_i32, be_i64, read_errors, read_progress, state_error, Progress};
use crate::coord::engine::Engine;

fn gap_key(id: TableId, partition: i32, first: i64) -> Vec<u8> {
    let mut k = source_prefix(id);
    k.push(b'g');
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&first.to_be_bytes());
    k
}

fn halt_key(id: TableId) -> Vec<u8> {
    let mut k = source_prefix(id);
    k.push(b'h');
    k
}

/// One recorded retention gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    /// When it was found, in milliseconds since the Unix epoch.
    pub detected_ms: i64,
}

/// Stages what `problems` say into `batch`: each gap, and the halt after a reset. Returns the
/// number of gaps and the halt's text, if any.
pub(super) fn record(
    id: TableId,
    problems: &[OffsetProblem],
    batch: &mut WriteBatch,
) -> (u64, Option<String>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut gaps = 0;
    let mut resets = Vec::new();
    for p in problems {
        match *p {
            OffsetProblem::Gap {
                partition,
                first,
                last,
            } => {
                let mut v = Vec::with_capacity(16);
                v.extend_from_slice(&last.to_be_bytes());
                v.extend_from_slice(&now.to_be_bytes());
                batch.put(gap_key(id, partition, first), v);
                gaps += 1;
            }
            OffsetProblem::Reset { .. } => resets.push(p.to_string()),
        }
    }
    let halt = (!resets.is_empty()).then(|| resets.join("; "));
    if let Some(h) = &halt {
        batch.put(halt_key(id), h.as_bytes());
    }
    (gaps, halt)
}

/// A source's recorded gaps as of `snapshot`.
pub fn read_gaps(snapshot: &Snapshot, id: TableId) -> Result<Vec<Gap>, PgError> {
    let mut prefix = source_prefix(id);
    prefix.push(b'g');
    let mut out = Vec::new();
    for (k, v) in snapshot.scan_prefix(&prefix).map_err(state_error)? {
        if k.len() != prefix.len() + 12 || v.len() != 16 {
            continue;
        }
        out.push(Gap {
            partition: be_i32(&k[prefix.len()..prefix.len() + 4]),
            first: be_i64(&k[prefix.len() + 4..]),
            last: be_i64(&v[..8]),
            detected_ms: be_i64(&v[8..]),
        });
    }
    Ok(out)
}

/// Why the source is halted, as of `snapshot`.
pub fn read_halt(snapshot: &Snapshot, id: TableId) -> Result<Option<String>, PgError> {
    Ok(snapshot
        .get(&halt_key(id))
        .map_err(state_error)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// `ALTER SOURCE name RESET`: a source halted by a topic reset reads every partition of the
/// topic as it is now from its beginning; its views keep what they hold. Refused for a source
/// that is not halted (it would read everything a second time).
pub async fn reset(engine: &Arc<Engine>, name: &str) -> Result<(), PgError> {
    let def = engine.catalog.source(name).ok_or_else(|| {
        PgError::new(
            SqlState::UNDEFINED_OBJECT,
            format!("source \"{name}\" does not exist"),
        )
    })?;
    let w = engine.begin_write().await;
    let snapshot = engine.store.snapshot();
    if read_halt(&snapshot, def.id)?.is_none() {
        return Err(PgError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "source \"{name}\" is not halted: ALTER SOURCE … RESET only follows a topic reset"
            ),
        ));
    }
    let progress: Progress = read_progress(&snapshot, def.id)?;
    let errors = read_errors(&snapshot, def.id)?.len() as u64;
    let mut batch = WriteBatch::default();
    batch.delete(halt_key(def.id));
    let mut fresh = Progress::new();
    for &p in progress.keys() {
        batch.put(
            super::progress_key(def.id, p),
            super::progress_value(BEGINNING, BEGINNING),
        );
        fresh.insert(p, (BEGINNING, BEGINNING));
    }
    engine.store.write(batch).map_err(state_error)?;
    let old = engine.sources.write().remove(&def.id);
    drop(w);
    if let Some(rt) = old {
        super::stop(vec![rt]).await;
    }
    let _w = engine.begin_write().await;
    super::start_runtime(engine, def, fresh, errors, None)
}

/// Messages in the topic not yet committed, from the last seen high watermarks (`None` before
/// the broker answered once).
pub fn lag(progress: &Progress, marks: &BTreeMap<i32, i64>) -> Option<i64> {
    if marks.is_empty() {
        return None;
    }
    Some(
        marks
            .iter()
            .map(|(p, &high)| partition_lag(progress.get(p).map(|&(_, n)| n), high))
            .sum(),
    )
}

/// One partition's lag; a partition not read yet (or read from its beginning and still
/// empty) counts all of `high` (low watermarks are not tracked here).
pub fn partition_lag(next: Option<i64>, high: i64) -> i64 {
    match next {
        Some(n) if n >= 0 => (high - n).max(0),
        _ => high.max(0),
    }
}
