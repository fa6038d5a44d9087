//! The Parquet file sink: exactly once by two phases. A file holds the changes of epochs
//! `first..=last` and is written under a hidden temporary name (`.part-<first>-<last>.parquet.tmp`)
//! and synced (prepare); the sink's progress (`last`) commits in RocksDB (commit); then the file
//! is renamed to `part-<first>-<last>.parquet` and the directory synced (finish). At start, a
//! temporary file at or below the committed progress is finished, one above it is deleted: after
//! a crash at any moment no partial file is visible and no epoch is in two files.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use freshet_common::{Datum, FileSinkConfig, PgError, SinkMode, SqlState};
use freshet_state::WriteBatch;
use tokio::sync::watch;

use super::{gather, io_error, progress_key, record_progress, wait_to_retry, SinkRuntime};
use crate::coord::subscriptions::EpochRows;
use crate::engine::Engine;

/// A sink's loop: gathers committed epochs' changes from the changelog; writes a file once
/// enough rows or time gathered; retries with backoff while the destination fails.
pub(super) async fn run(
    engine: Arc<Engine>,
    rt: Arc<SinkRuntime>,
    cfg: FileSinkConfig,
    mut stopped: watch::Receiver<bool>,
) {
    let Some(view) = engine.dataflows.get(rt.def.from) else {
        rt.set_status("failed: its view is not running");
        return;
    };
    let schema = output_schema(&view.schema, cfg.mode);
    let mut latest = engine.subscriptions.watch_latest();
    let mut pending: Vec<Arc<EpochRows>> = Vec::new();
    let mut pending_rows = 0u64;
    let mut read_through = rt.committed.load(Ordering::SeqCst);
    let mut first_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stopped.borrow() {
            return;
        }
        // Gather what committed since.
        for e in gather(&engine, &rt, &mut latest, &mut read_through) {
            pending_rows += e.rows.len() as u64;
            pending.push(e);
        }
        if pending_rows > 0 && first_at.is_none() {
            first_at = Some(Instant::now());
        }
        if pending.is_empty() && read_through > rt.committed.load(Ordering::SeqCst) {
            // Epochs that did not change the view: nothing to write, progress to record
            // (unsynced: losing it only means reading them again).
            let _ = record_progress(&engine, &rt, read_through);
        }
        let due = pending_rows >= cfg.rollover_rows
            || first_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(cfg.rollover_ms));
        if due {
            let first = rt.committed.load(Ordering::SeqCst) + 1;
            match commit_file(&engine, &rt, &cfg, &schema, first, read_through, &pending).await {
                Ok(n) => {
                    rt.rows.fetch_add(n, Ordering::Relaxed);
                    rt.files.fetch_add(1, Ordering::Relaxed);
                    pending.clear();
                    pending_rows = 0;
                    first_at = None;
                    backoff = Duration::from_millis(100);
                    rt.set_status("running");
                }
                Err(e) => {
                    if !wait_to_retry(&rt, &e, &mut backoff, &mut stopped).await {
                        return;
                    }
                    continue;
                }
            }
        }
        // Wait for the next epoch, the rollover deadline, or the end.
        let deadline = first_at.map(|t| t + Duration::from_millis(cfg.rollover_ms));
        tokio::select! {
            r = latest.changed() => if r.is_err() { return },
            _ = stopped.changed() => return,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
}

/// Writes, commits and finishes the file of epochs `first..=last`.
async fn commit_file(
    engine: &Arc<Engine>,
    rt: &Arc<SinkRuntime>,
    cfg: &FileSinkConfig,
    schema: &SchemaRef,
    first: u64,
    last: u64,
    changes: &[Arc<EpochRows>],
) -> Result<u64, PgError> {
    let dir = PathBuf::from(&cfg.path);
    let (schema2, mode, changes2) = (Arc::clone(schema), cfg.mode, changes.to_vec());
    let dir2 = dir.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir2)?;
        prepare_file(&dir2, &schema2, mode, first, last, &changes2)
    })
    .await
    .map_err(|e| PgError::new(SqlState::INTERNAL_ERROR, e.to_string()))?
    .map_err(|e| io_error(&dir, &e))?;
    // Commit: the progress, durably.
    let mut batch = WriteBatch::default();
    batch.put(progress_key(rt.def.id), last.to_be_bytes());
    let store = engine.store.clone();
    tokio::task::spawn_blocking(move || {
        store.write_unsynced(batch)?;
        store.sync_wal()
    })
    .await
    .map_err(|e| PgError::new(SqlState::INTERNAL_ERROR, e.to_string()))?
    .map_err(|e| PgError::new(SqlState::IO_ERROR, format!("committing sink progress: {e}")))?;
    rt.committed.store(last, Ordering::SeqCst);
    engine
        .changelogs
        .pin(&engine.dataflows, rt.def.from, rt.def.id, last, 0);
    let Some((tmp, n)) = prepared else {
        return Ok(0);
    };
    tokio::task::spawn_blocking(move || finish_file(&tmp))
        .await
        .map_err(|e| PgError::new(SqlState::INTERNAL_ERROR, e.to_string()))?
        .map_err(|e| io_error(&dir, &e))?;
    Ok(n)
}

/// The columns a sink writes.
pub(super) fn output_schema(view: &SchemaRef, mode: SinkMode) -> SchemaRef {
    match mode {
        SinkMode::Changelog => {
            let mut fields = vec![
                Field::new("freshet_epoch", DataType::Int64, false),
                Field::new("freshet_diff", DataType::Int64, false),
            ];
            fields.extend(view.fields().iter().map(|f| f.as_ref().clone()));
            Arc::new(Schema::new(fields))
        }
        _ => Arc::clone(view),
    }
}

/// The rows a file holds for `changes`.
fn file_rows(mode: SinkMode, changes: &[Arc<EpochRows>]) -> Vec<Vec<Datum>> {
    let mut out = Vec::new();
    for e in changes {
        for (row, w) in &e.rows {
            match mode {
                SinkMode::Changelog => {
                    let mut r = vec![Datum::Int64(e.epoch as i64), Datum::Int64(*w)];
                    r.extend(row.iter().cloned());
                    out.push(r);
                }
                // Append-only views never retract; forced sinks drop retractions.
                SinkMode::AppendOnly | SinkMode::ForceAppendOnly => {
                    for _ in 0..(*w).max(0) {
                        out.push(row.clone());
                    }
                }
            }
        }
    }
    out
}

/// The final name of the file of epochs `first..=last`.
fn file_name(first: u64, last: u64) -> String {
    format!("part-{first:020}-{last:020}.parquet")
}

/// Prepare: writes and syncs the temporary file of epochs `first..=last`; `None` when they
/// hold no rows.
pub(super) fn prepare_file(
    dir: &Path,
    schema: &SchemaRef,
    mode: SinkMode,
    first: u64,
    last: u64,
    changes: &[Arc<EpochRows>],
) -> std::io::Result<Option<(PathBuf, u64)>> {
    let rows = file_rows(mode, changes);
    if rows.is_empty() {
        return Ok(None);
    }
    let columns: Vec<usize> = (0..schema.fields().len()).collect();
    let batch: RecordBatch = freshet_sql::df_convert::rows_to_batch(&rows, schema, &columns)
        .map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{}.tmp", file_name(first, last)));
    let file = std::fs::File::create(&tmp)?;
    let mut writer =
        ArrowWriter::try_new(file, Arc::clone(schema), None).map_err(std::io::Error::other)?;
    writer.write(&batch).map_err(std::io::Error::other)?;
    let file = writer.into_inner().map_err(std::io::Error::other)?;
    file.sync_all()?;
    Ok(Some((tmp, rows.len() as u64)))
}

/// Finish: gives a committed temporary file its final name, durably.
pub(super) fn finish_file(tmp: &Path) -> std::io::Result<()> {
    let name = tmp
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix('.'))
        .and_then(|n| n.strip_suffix(".tmp"))
        .ok_or_else(|| std::io::Error::other(format!("not a sink file: {}", tmp.display())))?;
    let dir = tmp.parent().unwrap_or(Path::new("."));
    std::fs::rename(tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// After a restart: finishes the temporary files the committed progress covers, deletes the
/// others (prepared, never committed).
pub(super) fn recover(dir: &Path, committed: u64) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(range) = name
            .strip_prefix(".part-")
            .and_then(|n| n.strip_suffix(".parquet.tmp"))
        else {
            continue;
        };
        let last = range
            .split_once('-')
            .and_then(|(_, l)| l.parse::<u64>().ok());
        match last {
            Some(last) if last <= committed => finish_file(&path)?,
            _ => std::fs::remove_file(&path)?,
        }
    }
    Ok(())
}
