//! Event time of a source declared `WATERMARK FOR ts AS ts - INTERVAL 'd'`.
//!
//! Each partition's largest event time read so far is committed with the offsets that read it
//! (`'s' id 'w' partition` → micros), and so is the source's watermark (`'s' id 'W'` →
//! micros): the smallest over the partitions of (largest event time − d), never moving back.
//! A partition that has delivered nothing for `watermark.idle_timeout` (default 10 s; `0`
//! never) stops holding the watermark back; when every partition is idle the watermark moves
//! on with the wall clock, so that time still passes when traffic stops.
//!
//! A row whose event time is below the watermark when it arrives is late: it does not enter
//! the source's views, and is recorded (`'s' id 'l' partition offset` → watermark then ++ the
//! event times of the message's late rows) where `freshet_internal.late_rows` shows it. The
//! re-reads that backfill a new view skip exactly those rows.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::filter_record_batch;
use freshet_catalog::SourceDef;
use freshet_common::{PgError, SourceConfig, SqlState, TableId};
use freshet_connector::Origins;
use freshet_state::{source_prefix, Snapshot, WriteBatch};

use super::{be_i32, be_i64, state_error};

fn max_key(id: TableId, partition: i32) -> Vec<u8> {
    let mut k = source_prefix(id);
    k.push(b'w');
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn watermark_key(id: TableId) -> Vec<u8> {
    freshet_state::source_watermark_key(id)
}

fn late_key(id: TableId, partition: i32, offset: i64) -> Vec<u8> {
    let mut k = source_prefix(id);
    k.push(b'l');
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// `watermark.idle_timeout` of a source (`None`: partitions never count as idle).
pub fn idle_timeout(def: &SourceDef) -> Option<Duration> {
    let SourceConfig::Kafka(k) = &def.config;
    k.idle_timeout_ms.map(Duration::from_millis)
}

/// The event-time column's index among the source's columns.
pub fn column(def: &SourceDef) -> Option<usize> {
    let w = def.watermark.as_ref()?;
    def.columns.iter().position(|c| c.name == w.column)
}

#[derive(Debug, Clone)]
struct Partition {
    /// Largest event time read, in microseconds.
    max: Option<i64>,
    /// When a message of it last arrived (or the source started).
    last: Instant,
}

/// A running source's event-time state.
#[derive(Debug, Clone)]
pub struct Watermarks {
    column: usize,
    delay: i64,
    idle: Option<Duration>,
    partitions: BTreeMap<i32, Partition>,
    /// The watermark, in microseconds (`None` until every partition has read an event time).
    current: Option<i64>,
}

/// A row that arrived late: partition, offset, event time, watermark at arrival.
pub type LateRow = (i32, i64, i64, i64);

impl Watermarks {
    /// The state committed for `def` as of `snapshot`; `None` without `WATERMARK FOR`.
    pub fn load(def: &SourceDef, snapshot: &Snapshot) -> Result<Option<Watermarks>, PgError> {
        let (Some(w), Some(column)) = (&def.watermark, column(def)) else {
            return Ok(None);
        };
        let now = Instant::now();
        let mut partitions = BTreeMap::new();
        let mut prefix = source_prefix(def.id);
        prefix.push(b'p');
        for (k, _) in snapshot.scan_prefix(&prefix).map_err(state_error)? {
            if k.len() == prefix.len() + 4 {
                let p = be_i32(&k[prefix.len()..]);
                partitions.insert(
                    p,
                    Partition {
                        max: None,
                        last: now,
                    },
                );
            }
        }
        prefix.pop();
        prefix.push(b'w');
        for (k, v) in snapshot.scan_prefix(&prefix).map_err(state_error)? {
            if k.len() == prefix.len() + 4 && v.len() == 8 {
                let p = be_i32(&k[prefix.len()..]);
                partitions.insert(
                    p,
                    Partition {
                        max: Some(be_i64(&v)),
                        last: now,
                    },
                );
            }
        }
        let current = snapshot
            .get(&watermark_key(def.id))
            .map_err(state_error)?
            .filter(|v| v.len() == 8)
            .map(|v| be_i64(&v));
        Ok(Some(Watermarks {
            column,
            delay: w.delay_micros,
            idle: idle_timeout(def),
            partitions,
            current,
        }))
    }

    /// The watermark at `now`: the committed one, or ahead of it the smallest (largest event
    /// time − delay) of the partitions that are not idle. When every partition is idle, the
    /// most advanced partition's, moved on by the wall-clock time since the source went idle.
    pub fn at(&self, now: Instant) -> Option<i64> {
        let idle_for = |p: &Partition| now.saturating_duration_since(p.last);
        let all_idle = self.idle.is_some_and(|i| {
            !self.partitions.is_empty() && self.partitions.values().all(|p| idle_for(p) >= i)
        });
        let candidate = if all_idle {
            let quiet = self
                .partitions
                .values()
                .map(idle_for)
                .min()
                .unwrap_or_default();
            let extra = quiet.saturating_sub(self.idle.unwrap_or_default());
            let extra = i64::try_from(extra.as_micros()).unwrap_or(i64::MAX);
            self.partitions
                .values()
                .filter_map(|p| p.max)
                .max()
                .map(|m| m.saturating_sub(self.delay).saturating_add(extra))
        } else {
            let mut lowest: Option<i64> = None;
            let mut blocked = false;
            for p in self.partitions.values() {
                if self.idle.is_some_and(|i| idle_for(p) >= i) {
                    continue;
                }
                match p.max {
                    // An active partition that has read no event time yet holds all back.
                    None => blocked = true,
                    Some(m) => {
                        let w = m.saturating_sub(self.delay);
                        lowest = Some(lowest.map_or(w, |l| l.min(w)));
                    }
                }
            }
            lowest.filter(|_| !blocked)
        };
        match (self.current, candidate) {
            (Some(c), Some(n)) => Some(c.max(n)),
            (c, n) => c.or(n),
        }
    }

    /// The watermark as of the last [`Watermarks::admit`] or [`Watermarks::advance`].
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// How long a partition may go without messages before it stops holding the watermark
    /// back (`None`: never).
    pub fn idle(&self) -> Option<Duration> {
        self.idle
    }

    /// Moves the watermark to what it is at `now` (idle partitions, wall-clock time); the new
    /// watermark when it moved.
    pub fn advance(&mut self, now: Instant) -> Option<i64> {
        let before = self.current;
        self.current = self.at(now);
        (self.current != before).then_some(self.current).flatten()
    }

    /// Each partition's largest event time read (micros), `None` before its first.
    pub fn partition_maxima(&self) -> Vec<(i32, Option<i64>, bool)> {
        let now = Instant::now();
        self.partitions
            .iter()
            .map(|(&p, s)| {
                let idle = self
                    .idle
                    .is_some_and(|i| now.saturating_duration_since(s.last) >= i);
                (p, s.max, idle)
            })
            .collect()
    }

    /// Takes one batch of the reader's rows (from the messages of `partitions`): the rows
    /// below the watermark are removed from `batch` and returned; the others' event times move
    /// their partitions, and then the watermark.
    pub fn admit(
        &mut self,
        batch: &mut Option<RecordBatch>,
        origins: &Origins,
        partitions: impl Iterator<Item = i32>,
        now: Instant,
    ) -> Result<Vec<LateRow>, PgError> {
        // Partitions that went idle, and time that passed while all were, count first.
        self.current = self.at(now);
        for p in partitions {
            self.partitions
                .entry(p)
                .or_insert(Partition {
                    max: None,
                    last: now,
                })
                .last = now;
        }
        let mut late = Vec::new();
        if let Some(b) = batch.as_ref() {
            let ts = event_times(b, self.column)?;
            let mut keep = Vec::with_capacity(ts.len());
            for (i, &(p, o)) in origins.iter().enumerate().take(ts.len()) {
                if ts.is_null(i) {
                    keep.push(true);
                    continue;
                }
                let t = ts.value(i);
                match self.current {
                    Some(w) if t < w => {
                        late.push((p, o, t, w));
                        keep.push(false);
                    }
                    _ => {
                        let part = self.partitions.entry(p).or_insert(Partition {
                            max: None,
                            last: now,
                        });
                        part.max = Some(part.max.map_or(t, |m| m.max(t)));
                        keep.push(true);
                    }
                }
            }
            if !late.is_empty() {
                let mask = BooleanArray::from(keep);
                let kept = filter_record_batch(b, &mask)
                    .map_err(|e| PgError::new(SqlState::INTERNAL_ERROR, e.to_string()))?;
                *batch = (kept.num_rows() > 0).then_some(kept);
            }
        }
        self.current = self.at(now);
        Ok(late)
    }

    /// Stages the state and `late` rows of `id` into `batch`.
    pub fn stage(&self, id: TableId, late: &[LateRow], batch: &mut WriteBatch) {
        for (&p, s) in &self.partitions {
            if let Some(m) = s.max {
                batch.put(max_key(id, p), m.to_be_bytes());
            }
        }
        if let Some(w) = self.current {
            batch.put(watermark_key(id), w.to_be_bytes());
        }
        let mut by_message: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
        for &(p, o, t, w) in late {
            by_message
                .entry((p, o))
                .or_insert_with(|| w.to_be_bytes().to_vec())
                .extend_from_slice(&t.to_be_bytes());
        }
        for ((p, o), v) in by_message {
            batch.put(late_key(id, p, o), v);
        }
    }
}

/// The event-time column of a decoded batch (microseconds).
fn event_times(batch: &RecordBatch, column: usize) -> Result<&TimestampMicrosecondArray, PgError> {
    batch
        .column(column)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| PgError::internal("event-time column is not a timestamp"))
}

/// A source's late rows as of `snapshot`.
pub fn read_late(snapshot: &Snapshot, id: TableId) -> Result<Vec<LateRow>, PgError> {
    let mut prefix = source_prefix(id);
    prefix.push(b'l');
    let mut out = Vec::new();
    for (k, v) in snapshot.scan_prefix(&prefix).map_err(state_error)? {
        if k.len() != prefix.len() + 12 || v.len() < 16 || v.len() % 8 != 0 {
            continue;
        }
        let p = be_i32(&k[prefix.len()..prefix.len() + 4]);
        let o = be_i64(&k[prefix.len() + 4..]);
        let w = be_i64(&v[..8]);
        for t in v[8..].chunks_exact(8) {
            out.push((p, o, be_i64(t), w));
        }
    }
    Ok(out)
}

/// Removes from re-read rows those that were late when first read: rows of a late message
/// whose event time is below the watermark recorded for it.
pub fn drop_late(
    def: &SourceDef,
    late: &HashMap<(i32, i64), i64>,
    batch: RecordBatch,
    origins: &Origins,
) -> Result<Option<RecordBatch>, PgError> {
    let Some(column) = column(def) else {
        return Ok(Some(batch));
    };
    if late.is_empty() {
        return Ok(Some(batch));
    }
    let ts = event_times(&batch, column)?;
    let keep: BooleanArray = origins
        .iter()
        .enumerate()
        .take(ts.len())
        .map(|(i, po)| {
            Some(match late.get(po) {
                Some(&w) => ts.is_null(i) || ts.value(i) >= w,
                None => true,
            })
        })
        .collect();
    let kept = filter_record_batch(&batch, &keep)
        .map_err(|e| PgError::new(SqlState::INTERNAL_ERROR, e.to_string()))?;
    Ok((kept.num_rows() > 0).then_some(kept))
}
