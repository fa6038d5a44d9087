//! `freshet_internal`: system relations about the running server, computed when a statement
//! looks them up.
//!
//! - `metrics (name text, value bigint)`: counters such as `state_entries_read_at_startup`,
//!   the number of table rows, view rows and operator state entries read while the server
//!   started (materialized views resume from their stored state, so this stays 0 however large
//!   the views are); and where RocksDB's memory is: `rocksdb_memtable_bytes`,
//!   `rocksdb_table_reader_bytes` (index and filter blocks outside the block cache),
//!   `rocksdb_block_cache_bytes`, `rocksdb_block_cache_pinned_bytes`, and
//!   `rocksdb_table_files`; `query_memory_reserved_bytes`, what running statements of all
//!   sessions hold of `--query-memory-total-mb` by their operators' reservations, and
//!   `query_memory_allocated_bytes`, what they have allocated.
//! - `memory (name, budget_bytes, used_bytes)`: the memory budget (`--memory-mb`) and its
//!   parts (RocksDB's block cache and memtables, operator caches), the statements' budget,
//!   and the process's resident memory (see `internal/memory.rs`).
//! - `source_errors (source, partition, "offset", error, payload)`: every message a source
//!   could not decode (payload: its first 256 bytes, as text).
//! - `source_gaps (source, partition, first_offset, last_offset, missing, detected_at)`:
//!   offsets retention deleted before a source read them (reading went on after them).
//! - `source_progress (source, topic, partition, start_offset, "offset", high_watermark, lag,
//!   status)`: per partition, the committed next offset, the last seen high watermark and the
//!   source's status (running / broker unreachable / stalled).
//! - `view_errors (view, error, "row", weight)`: input rows a view could not evaluate (division
//!   by zero, a failed cast…), left out of that view alone; the source or statement went on.
//! - `sink_progress (sink, view, committed_epoch, lag_epochs, rows, files, status)`: per sink,
//!   the last epoch its destination holds, how many epochs it trails the latest, the rows and
//!   files it wrote since the server started, and its status (running / retrying: why).
//! - `backfills (view, steps, rows_read, seconds)`: the backfills of views being created
//!   (and of `SUBSCRIBE (query)` dataflows, named `subscribe`), how many steps and input rows
//!   each has done and for how long it has run.
//! - `source_watermarks (source, partition, max_event_time, idle, watermark)` and
//!   `late_rows (source, partition, "offset", event_time, watermark)`: event time of sources
//!   with `WATERMARK FOR` (see `sources/watermark.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};

use crate::coord::engine::{Engine, FoldReason};

mod event_time;
mod memory;
mod view_state;

/// The schema name.
pub const INTERNAL_SCHEMA: &str = "freshet_internal";

const TABLES: &[&str] = &[
    "backfills",
    "late_rows",
    "memory",
    "metrics",
    "sink_progress",
    "source_errors",
    "source_gaps",
    "source_progress",
    "source_watermarks",
    "view_errors",
    "view_late_rows",
    "view_state",
];

/// The `freshet_internal` schema.
#[derive(Debug)]
pub struct InternalSchema {
    engine: Arc<Engine>,
    /// Query memory of all sessions (`--query-memory-total-mb`).
    query_memory: Arc<crate::memory::ServerBudget>,
}

impl InternalSchema {
    pub fn new(engine: Arc<Engine>, query_memory: Arc<crate::memory::ServerBudget>) -> Self {
        Self {
            engine,
            query_memory,
        }
    }

    fn metrics(&self) -> Result<Arc<dyn TableProvider>> {
        let mut rows: Vec<(&str, i64)> = vec![
            (
                "state_entries_read_at_startup",
                clamp(self.engine.startup_entries_read()),
            ),
            (
                "state_entries_read",
                clamp(freshet_state::data_entries_read()),
            ),
            ("tables", self.engine.catalog.tables().len() as i64),
            ("subscribers", self.engine.subscriptions.count() as i64),
            (
                "subscriber_queued_rows",
                self.engine.subscriptions.queued_rows() as i64,
            ),
            (
                "subscribers_behind",
                self.engine.subscriptions.behind() as i64,
            ),
            ("latest_epoch", clamp(self.engine.latest_epoch())),
            (
                "materialized_views",
                self.engine.catalog.views().len() as i64,
            ),
            (
                "contents_log_folds_over_budget",
                clamp(self.engine.folds(FoldReason::OverBudget)),
            ),
            (
                "contents_log_folds_for_readers",
                clamp(self.engine.folds(FoldReason::ForReader)),
            ),
            (
                "contents_log_folds_after_loss",
                clamp(self.engine.folds(FoldReason::AfterLoss)),
            ),
            (
                "contents_log_folds_for_retractions",
                clamp(self.engine.folds(FoldReason::ForRetraction)),
            ),
        ];
        let memory = self
            .engine
            .store
            .memory_usage()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        rows.extend(memory.into_iter().map(|(name, v)| (name, clamp(v))));
        rows.push((
            "query_memory_reserved_bytes",
            clamp(self.query_memory.used() as u64),
        ));
        rows.push((
            "query_memory_allocated_bytes",
            clamp(crate::alloc::all_live() as u64),
        ));
        relation(
            vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("value", DataType::Int64, false),
            ],
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|(n, _)| *n))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, v)| *v))),
            ],
        )
    }
}

impl InternalSchema {
    fn source_errors(&self) -> Result<Arc<dyn TableProvider>> {
        let snapshot = self.engine.store.snapshot();
        let (mut src, mut part, mut off, mut err, mut payload) =
            (vec![], vec![], vec![], vec![], vec![]);
        for def in self.engine.catalog.sources() {
            let records = crate::coord::sources::read_errors(&snapshot, def.id)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            for (p, o, e, bytes) in records {
                src.push(def.name.clone());
                part.push(p);
                off.push(o);
                err.push(e);
                payload.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        relation(
            vec![
                Field::new("source", DataType::Utf8, false),
                Field::new("partition", DataType::Int32, false),
                Field::new("offset", DataType::Int64, false),
                Field::new("error", DataType::Utf8, false),
                Field::new("payload", DataType::Utf8, false),
            ],
            vec![
                Arc::new(StringArray::from(src)),
                Arc::new(Int32Array::from(part)),
                Arc::new(Int64Array::from(off)),
                Arc::new(StringArray::from(err)),
                Arc::new(StringArray::from(payload)),
            ],
        )
    }

    fn source_progress(&self) -> Result<Arc<dyn TableProvider>> {
        let (mut src, mut topic, mut part, mut start, mut next, mut high, mut lag, mut status) = (
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        );
        for rt in self.engine.sources.all() {
            let progress = rt.progress();
            let (st, marks) = rt.status();
            let mut parts: Vec<i32> = progress.keys().chain(marks.keys()).copied().collect();
            parts.sort_unstable();
            parts.dedup();
            for p in parts {
                let prog = progress.get(&p).copied();
                // The watermark is polled about once a second: one below what the source has
                // read is stale, and the log holds at least that much.
                let h = marks.get(&p).map(|&h| prog.map_or(h, |(_, n)| h.max(n)));
                src.push(rt.def.name.clone());
                topic.push(rt.opts.topic.clone());
                part.push(p);
                start.push(prog.map(|(s, _)| s).filter(|s| *s >= 0));
                next.push(prog.map(|(_, n)| n).filter(|n| *n >= 0));
                high.push(h);
                lag.push(h.map(|h| {
                    crate::coord::sources::positions::partition_lag(prog.map(|(_, n)| n), h)
                }));
                status.push(st.clone());
            }
        }
        relation(
            vec![
                Field::new("source", DataType::Utf8, false),
                Field::new("topic", DataType::Utf8, false),
                Field::new("partition", DataType::Int32, false),
                Field::new("start_offset", DataType::Int64, true),
                Field::new("offset", DataType::Int64, true),
                Field::new("high_watermark", DataType::Int64, true),
                Field::new("lag", DataType::Int64, true),
                Field::new("status", DataType::Utf8, false),
            ],
            vec![
                Arc::new(StringArray::from(src)),
                Arc::new(StringArray::from(topic)),
                Arc::new(Int32Array::from(part)),
                Arc::new(Int64Array::from(start)),
                Arc::new(Int64Array::from(next)),
                Arc::new(Int64Array::from(high)),
                Arc::new(Int64Array::from(lag)),
                Arc::new(StringArray::from(status)),
            ],
        )
    }
}

impl InternalSchema {
    fn view_errors(&self) -> Result<Arc<dyn TableProvider>> {
        let snapshot = self.engine.store.snapshot();
        let (mut view, mut error, mut row, mut weight) = (vec![], vec![], vec![], vec![]);
        for def in self.engine.catalog.views() {
            let prefix = freshet_state::changelog::view_errors_prefix(def.id);
            let entries = snapshot
                .scan_prefix(&prefix)
                .map_err(freshet_dataflow::epoch::state_err)?;
            for (_, v) in entries {
                let (w, e, r) = freshet_state::changelog::decode_view_error(&v)
                    .map_err(freshet_dataflow::epoch::state_err)?;
                view.push(def.name.clone());
                error.push(e);
                row.push(r);
                weight.push(w);
            }
        }
        relation(
            vec![
                Field::new("view", DataType::Utf8, false),
                Field::new("error", DataType::Utf8, false),
                Field::new("row", DataType::Utf8, false),
                Field::new("weight", DataType::Int64, false),
            ],
            vec![
                Arc::new(StringArray::from(view)),
                Arc::new(StringArray::from(error)),
                Arc::new(StringArray::from(row)),
                Arc::new(Int64Array::from(weight)),
            ],
        )
    }

    fn sink_progress(&self) -> Result<Arc<dyn TableProvider>> {
        use std::sync::atomic::Ordering;
        let latest = self.engine.latest_epoch();
        let views: std::collections::HashMap<_, _> = self
            .engine
            .catalog
            .views()
            .iter()
            .map(|v| (v.id, v.name.clone()))
            .collect();
        let (mut name, mut view, mut committed, mut lag, mut rows, mut files, mut status) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for rt in self.engine.sinks.all() {
            let c = rt.committed.load(Ordering::Relaxed);
            name.push(rt.def.name.clone());
            view.push(views.get(&rt.def.from).cloned().unwrap_or_default());
            committed.push(clamp(c));
            lag.push(clamp(latest.saturating_sub(c)));
            rows.push(clamp(rt.rows.load(Ordering::Relaxed)));
            files.push(clamp(rt.files.load(Ordering::Relaxed)));
            status.push(rt.status());
        }
        relation(
            vec![
                Field::new("sink", DataType::Utf8, false),
                Field::new("view", DataType::Utf8, false),
                Field::new("committed_epoch", DataType::Int64, false),
                Field::new("lag_epochs", DataType::Int64, false),
                Field::new("rows", DataType::Int64, false),
                Field::new("files", DataType::Int64, false),
                Field::new("status", DataType::Utf8, false),
            ],
            vec![
                Arc::new(StringArray::from(name)),
                Arc::new(StringArray::from(view)),
                Arc::new(Int64Array::from(committed)),
                Arc::new(Int64Array::from(lag)),
                Arc::new(Int64Array::from(rows)),
                Arc::new(Int64Array::from(files)),
                Arc::new(StringArray::from(status)),
            ],
        )
    }
}

impl InternalSchema {
    fn backfills(&self) -> Result<Arc<dyn TableProvider>> {
        let rows = self.engine.backfills.rows();
        relation(
            vec![
                Field::new("view", DataType::Utf8, false),
                Field::new("steps", DataType::Int64, false),
                Field::new("rows_read", DataType::Int64, false),
                Field::new("seconds", DataType::Float64, false),
            ],
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.view.as_str()),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| clamp(r.steps)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| clamp(r.rows)),
                )),
                Arc::new(Float64Array::from_iter_values(
                    rows.iter().map(|r| r.seconds),
                )),
            ],
        )
    }

    fn source_gaps(&self) -> Result<Arc<dyn TableProvider>> {
        let snapshot = self.engine.store.snapshot();
        let (mut src, mut part, mut first, mut last, mut missing, mut at) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for def in self.engine.catalog.sources() {
            let gaps = crate::coord::sources::read_gaps(&snapshot, def.id)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            for g in gaps {
                src.push(def.name.clone());
                part.push(g.partition);
                first.push(g.first);
                last.push(g.last);
                missing.push(g.last - g.first + 1);
                at.push(g.detected_ms * 1000);
            }
        }
        relation(
            vec![
                Field::new("source", DataType::Utf8, false),
                Field::new("partition", DataType::Int32, false),
                Field::new("first_offset", DataType::Int64, false),
                Field::new("last_offset", DataType::Int64, false),
                Field::new("missing", DataType::Int64, false),
                Field::new(
                    "detected_at",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                    false,
                ),
            ],
            vec![
                Arc::new(StringArray::from(src)),
                Arc::new(Int32Array::from(part)),
                Arc::new(Int64Array::from(first)),
                Arc::new(Int64Array::from(last)),
                Arc::new(Int64Array::from(missing)),
                Arc::new(TimestampMicrosecondArray::from(at).with_timezone("+00:00")),
            ],
        )
    }
}

/// A relation of one batch: `fields` and their `columns`.
fn relation(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl SchemaProvider for InternalSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| (*t).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match name {
            "metrics" => self.metrics().map(Some),
            "memory" => memory::memory(&self.engine, &self.query_memory).map(Some),
            "backfills" => self.backfills().map(Some),
            "late_rows" => event_time::late_rows(&self.engine).map(Some),
            "source_watermarks" => event_time::source_watermarks(&self.engine).map(Some),
            "view_late_rows" => event_time::view_late_rows(&self.engine).map(Some),
            "source_errors" => self.source_errors().map(Some),
            "source_gaps" => self.source_gaps().map(Some),
            "source_progress" => self.source_progress().map(Some),
            "sink_progress" => self.sink_progress().map(Some),
            "view_errors" => self.view_errors().map(Some),
            "view_state" => {
                let snapshot = self.engine.read_snapshot().await?;
                view_state::view_state(&self.engine, &snapshot).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
