//! A sink's task: gathers the view's committed changes from the changelog, hands them to its
//! writer when the writer says they are due, records progress by the writer's protocol, and
//! retries with backoff while the destination fails. Ingest and DML never wait for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use freshet_common::{PgError, SqlState};
use freshet_connector::{row_bytes, Changes, Pending, Prepared, Protocol, SinkWriter};
use freshet_state::WriteBatch;
use tokio::sync::watch;

use super::{progress_key, SinkRuntime};
use crate::coord::engine::Engine;
use crate::coord::subscriptions::EpochRows;

/// The sink's loop, until it is stopped (dropped) or its view's changelog ends.
pub(super) async fn run(
    engine: Arc<Engine>,
    rt: Arc<SinkRuntime>,
    writer: Arc<dyn SinkWriter>,
    mut stopped: watch::Receiver<bool>,
) {
    let Some(view) = engine.dataflows.get(rt.def.from) else {
        rt.set_status("failed: its view is not running");
        return;
    };
    // Connected before the first changes come (a failure is retried at the first write).
    let w = Arc::clone(&writer);
    match blocking(move || w.open()).await {
        Ok(()) => rt.set_status("running"),
        Err(e) => rt.set_status(format!("retrying: {}", e.message)),
    }
    let mut latest = engine.subscriptions.watch_latest();
    let mut read_through = rt.committed.load(Ordering::SeqCst);
    let mut pending: Vec<Arc<EpochRows>> = Vec::new();
    let mut stats = Pending::default();
    // A two-phase write that failed: the last epoch of the range it prepared, which its
    // retry covers again, no more (its temporary files are named by their range: a wider
    // retry would leave them to be finished beside the retry's, the same rows twice).
    let mut retry_through: Option<u64> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stopped.borrow() {
            return;
        }
        for e in gather(&engine, &rt, &mut latest, &mut read_through) {
            if !e.rows.is_empty() {
                add_stats(&mut stats, &e);
                pending.push(e);
            }
        }
        let committed = rt.committed.load(Ordering::SeqCst);
        if pending.is_empty() && read_through > committed {
            // Epochs that did not change the view: nothing to write, progress to record
            // (unsynced: losing it only means reading them again).
            let _ = record_progress(&engine, &rt, read_through);
        }
        if !pending.is_empty() && (retry_through.is_some() || writer.due(&stats)) {
            let last = retry_through.unwrap_or(read_through);
            let n = pending.partition_point(|e| e.epoch <= last);
            let written = if committed >= last {
                // The progress is durable, only finishing failed: finish what it covers.
                let w = Arc::clone(&writer);
                let rows = pending[..n].iter().map(|e| e.rows.len() as u64).sum();
                blocking(move || w.recover(committed)).await.map(|()| Prepared {
                    rows,
                    parts: Vec::new(),
                })
            } else {
                let written = commit(&engine, &rt, &writer, &view.schema, committed + 1, last, &pending[..n], &stopped);
                written.await
            };
            match written {
                Ok(p) => {
                    rt.rows.fetch_add(p.rows, Ordering::Relaxed);
                    rt.files.fetch_add(p.parts.len() as u64, Ordering::Relaxed);
                    pending.drain(..n);
                    stats = Pending::default();
                    pending.iter().for_each(|e| add_stats(&mut stats, e));
                    retry_through = None;
                    backoff = Duration::from_millis(100);
                    rt.set_status("running");
                }
                Err(e) => {
                    writer.reset();
                    if writer.protocol() == Protocol::TwoPhase {
                        retry_through = Some(last);
                    }
                    if !wait_to_retry(&rt, &e, &mut backoff, &mut stopped).await {
                        return;
                    }
                    continue;
                }
            }
        }
        // Wait for the next epoch, the writer's deadline for what is pending, or the end.
        let deadline = stats.since.zip(writer.max_wait()).map(|(t, d)| t + d);
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

/// Counts an epoch's rows into what is pending.
fn add_stats(stats: &mut Pending, e: &EpochRows) {
    stats.rows += e.rows.len() as u64;
    stats.bytes += e.rows.iter().map(|(r, _)| row_bytes(r)).sum::<u64>();
    stats.since.get_or_insert_with(Instant::now);
}

/// Writes the changes of epochs `first..=last` and records the sink's progress as the
/// writer's protocol asks: durably before finishing (two phases), or after the write (the
/// destination says what it holds; progress only bounds what a restart re-reads).
#[allow(clippy::too_many_arguments)]
async fn commit(
    engine: &Arc<Engine>,
    rt: &Arc<SinkRuntime>,
    writer: &Arc<dyn SinkWriter>,
    schema: &SchemaRef,
    first: u64,
    last: u64,
    pending: &[Arc<EpochRows>],
    stopped: &watch::Receiver<bool>,
) -> Result<Prepared, PgError> {
    let changes = changes(schema, first, last, pending)?;
    let (w, stopped) = (Arc::clone(writer), stopped.clone());
    let prepared = blocking(move || w.write(&changes, &|| *stopped.borrow())).await?;
    match writer.protocol() {
        Protocol::TwoPhase => {
            let mut batch = WriteBatch::default();
            batch.put(progress_key(rt.def.id), last.to_be_bytes());
            let store = engine.store.clone();
            blocking(move || {
                store
                    .write_unsynced(batch)
                    .and_then(|()| store.sync_wal())
                    .map_err(|e| {
                        PgError::new(SqlState::IO_ERROR, format!("committing sink progress: {e}"))
                    })
            })
            .await?;
            rt.committed.store(last, Ordering::SeqCst);
            engine
                .changelogs
                .pin(&engine.dataflows, rt.def.from, rt.def.id, last, 0);
            let w = Arc::clone(writer);
            blocking(move || w.finish(&prepared).map(|()| prepared)).await
        }
        Protocol::SelfDescribing => {
            if let Err(e) = record_progress(engine, rt, last) {
                tracing::warn!(sink = %rt.def.name, error = %e, "recording sink progress failed");
            }
            Ok(prepared)
        }
    }
}

/// The changes of `epochs` (of `first..=last`) as the writer takes them: Arrow rows in the
/// view's schema.
pub(super) fn changes(
    schema: &SchemaRef,
    first: u64,
    last: u64,
    epochs: &[Arc<EpochRows>],
) -> Result<Changes, PgError> {
    let n: usize = epochs.iter().map(|e| e.rows.len()).sum();
    let mut rows: Vec<&[freshet_common::Datum]> = Vec::with_capacity(n);
    let (mut at, mut diffs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for e in epochs {
        for (row, w) in &e.rows {
            rows.push(row);
            at.push(e.epoch);
            diffs.push(*w);
        }
    }
    let rows = freshet_sql::df_convert::rows_to_full_batch(&rows, schema)
        .map_err(|e| freshet_sql::error::map_df_error(&e))?;
    Ok(Changes {
        first,
        last,
        rows,
        epochs: at,
        diffs,
    })
}

/// The view's changes of the epochs committed after `read_through` (advanced to the latest
/// published epoch), or nothing when the changelog cannot be read now (the status says so).
fn gather(
    engine: &Engine,
    rt: &SinkRuntime,
    latest: &mut watch::Receiver<u64>,
    read_through: &mut u64,
) -> Vec<Arc<EpochRows>> {
    let now_latest = *latest.borrow_and_update();
    if now_latest <= *read_through {
        return Vec::new();
    }
    let snapshot = engine.store.snapshot();
    match crate::coord::changelog::read(&snapshot, rt.def.from, *read_through + 1, now_latest) {
        Ok(entries) => {
            *read_through = now_latest;
            entries
        }
        Err(e) => {
            rt.set_status(format!("retrying: reading the changelog: {e}"));
            Vec::new()
        }
    }
}

/// After a failed write: reports `error`, waits `backoff` (doubled for next time, at most
/// 5 s). False when the sink was stopped meanwhile.
async fn wait_to_retry(
    rt: &SinkRuntime,
    error: &PgError,
    backoff: &mut Duration,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    rt.set_status(format!("retrying: {}", error.message));
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = stopped.changed() => return false,
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    true
}

/// Records that the sink's destination holds every change through epoch `last`: its progress
/// (unsynced) and the changelog pin.
fn record_progress(engine: &Engine, rt: &SinkRuntime, last: u64) -> freshet_state::Result<()> {
    let mut batch = WriteBatch::default();
    batch.put(progress_key(rt.def.id), last.to_be_bytes());
    engine.store.write_unsynced(batch)?;
    rt.committed.store(last, Ordering::SeqCst);
    engine
        .changelogs
        .pin(&engine.dataflows, rt.def.from, rt.def.id, last, 0);
    Ok(())
}

/// Runs a writer's blocking call off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PgError> + Send + 'static,
) -> Result<T, PgError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PgError::new(SqlState::INTERNAL_ERROR, e.to_string()))?
}
