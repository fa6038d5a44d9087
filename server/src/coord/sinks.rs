//! Sinks: a view's committed changes written out, exactly once, by a task of their own that
//! reads the view's changelog after commit — a slow or failing destination never holds up
//! ingest or DML; it catches up from the changelog, which keeps every entry the sink has not
//! committed.
//!
//! The Parquet file sink commits in two phases. A file holds the changes of epochs
//! `first..=last` and is written under a hidden temporary name (`.part-<first>-<last>.parquet.tmp`)
//! and synced (prepare); the sink's progress (`last`) commits in RocksDB (commit); then the file
//! is renamed to `part-<first>-<last>.parquet` and the directory synced (finish). At start, a
//! temporary file at or below the committed progress is finished, one above it is deleted: after
//! a crash at any moment no partial file is visible and no epoch is in two files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use freshet_catalog::SinkDef;
use freshet_common::{Datum, FileSinkConfig, PgError, SinkConfig, SinkMode, SqlState, TableId};
use freshet_state::{meta_key, WriteBatch};
use tokio::sync::watch;

use super::changelog;
use crate::engine::Engine;

/// The running sinks.
#[derive(Default)]
pub struct Sinks {
    running: Mutex<HashMap<TableId, Arc<SinkRuntime>>>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field("running", &lock(&self.running).len())
            .finish()
    }
}

/// One running sink's state, as `SHOW SINKS` reports it.
pub struct SinkRuntime {
    pub def: Arc<SinkDef>,
    /// The last epoch whose changes are committed in the destination.
    pub committed: AtomicU64,
    pub rows: AtomicU64,
    pub files: AtomicU64,
    status: Mutex<String>,
    stop: watch::Sender<bool>,
}

impl SinkRuntime {
    pub fn status(&self) -> String {
        lock(&self.status).clone()
    }

    fn set_status(&self, s: impl Into<String>) {
        *lock(&self.status) = s.into();
    }
}

impl Sinks {
    pub fn all(&self) -> Vec<Arc<SinkRuntime>> {
        let mut v: Vec<_> = lock(&self.running).values().cloned().collect();
        v.sort_by_key(|r| r.def.id);
        v
    }

    /// Stops sink `id`'s task (dropped).
    pub fn stop(&self, id: TableId) {
        if let Some(rt) = lock(&self.running).remove(&id) {
            let _ = rt.stop.send(true);
        }
    }
}

/// The key of a sink's committed progress (u64 BE: the last epoch in the destination).
pub fn progress_key(sink: TableId) -> Vec<u8> {
    meta_key(format!("sink_progress/{}", sink.0).as_bytes())
}

/// `CREATE SINK`: checks the view and the options, writes the view's current rows as the
/// first file (two phases, as every file), commits the sink with its progress, and starts it.
pub async fn create(
    engine: &Arc<Engine>,
    plan: &freshet_sql::CreateSinkPlan,
    owner: String,
) -> Result<(), PgError> {
    let mut w = engine.begin_write().await;
    if engine.catalog.name_taken(&plan.name) {
        if plan.if_not_exists && engine.catalog.sink(&plan.name).is_some() {
            return Ok(());
        }
        return Err(PgError::new(
            SqlState::DUPLICATE_TABLE,
            format!("relation \"{}\" already exists", plan.name),
        ));
    }
    let view_def = engine.catalog.view(&plan.from).ok_or_else(|| {
        if engine.catalog.table(&plan.from).is_some() || engine.catalog.source(&plan.from).is_some() {
            PgError::not_supported(format!(
                "a sink from \"{}\", which is not a materialized view; create a view of it and sink from the view",
                plan.from
            ))
        } else {
            PgError::new(
                SqlState::UNDEFINED_TABLE,
                format!("relation \"{}\" does not exist", plan.from),
            )
        }
    })?;
    let view = engine.dataflows.get(view_def.id).ok_or_else(|| {
        PgError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("materialized view \"{}\" is not running", plan.from),
        )
    })?;
    let SinkConfig::File(cfg) = &plan.config;
    if cfg.mode == SinkMode::AppendOnly && !view.is_append_only() {
        return Err(PgError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!(
                "materialized view \"{}\" can retract rows, which an append-only sink cannot write",
                plan.from
            ),
        )
        .with_hint("Use type = 'changelog' to write every change with its sign, or force_append_only = 'true' to drop retractions."));
    }
    let dir = PathBuf::from(&cfg.path);
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, &e))?;
    let snapshot = engine.fold_for_read(&mut w).map_err(|e| freshet_sql::error::map_df_error(&e))?;
    let start = w.epoch();
    let id = engine.catalog.peek_next_id();
    let schema = output_schema(&view.schema, cfg.mode);
    // Prepare: the view's rows as of `start`, as the file of epochs 0..=start.
    let rows = freshet_dataflow::read_view_rows(&snapshot, &view)
        .map_err(|e| freshet_sql::error::map_df_error(&e))?;
    let changes = vec![changelog_rows(start, rows)];
    let prepared = prepare_file(&dir, &schema, cfg.mode, 0, start, &changes)
        .map_err(|e| io_error(&dir, &e))?;
    let def = SinkDef {
        id,
        name: plan.name.clone(),
        from: view_def.id,
        config: plan.config.clone(),
        owner,
    };
    let mut batch = WriteBatch::default();
    batch.put(progress_key(id), start.to_be_bytes());
    let def = match engine.catalog.create_sink(def, batch) {
        Ok(d) => d,
        Err(e) => {
            if let Some((tmp, _)) = &prepared {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(crate::session::user_error(e));
        }
    };
    let rt = start_runtime(engine, def, start);
    if let Some((tmp, n)) = prepared {
        finish_file(&tmp).map_err(|e| io_error(&dir, &e))?;
        rt.rows.fetch_add(n, Ordering::Relaxed);
        rt.files.fetch_add(1, Ordering::Relaxed);
    }
    drop(w);
    Ok(())
}

/// Starts every stored sink (after the views are loaded): recovers its directory, then runs.
pub fn start_all(engine: &Arc<Engine>) -> anyhow::Result<()> {
    for def in engine.catalog.sinks() {
        let committed = match engine.store.get(&progress_key(def.id))? {
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("sink {} has a corrupt progress", def.name))?,
            ),
            None => anyhow::bail!("sink {} has no progress", def.name),
        };
        let SinkConfig::File(cfg) = &def.config;
        recover(Path::new(&cfg.path), committed)
            .map_err(|e| anyhow::anyhow!("recovering sink {} in {}: {e}", def.name, cfg.path))?;
        start_runtime(engine, def, committed);
    }
    Ok(())
}

/// Drops sinks: stops them, releases their changelog entries, deletes their progress. Their
/// files stay.
pub fn drop_sinks(engine: &Engine, defs: &[Arc<SinkDef>]) -> Result<(), PgError> {
    let mut batch = WriteBatch::default();
    for d in defs {
        batch.delete(progress_key(d.id));
    }
    let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
    engine
        .catalog
        .drop_sinks(&names, batch)
        .map_err(crate::session::user_error)?;
    for d in defs {
        engine.sinks.stop(d.id);
        engine.changelogs.unpin(&engine.dataflows, d.from, d.id);
    }
    Ok(())
}

/// Columns of `SHOW SINKS`.
pub const SHOW_COLUMNS: &[&str] = &["name", "from", "connector", "path", "committed_epoch", "rows", "files", "status"];

/// `SHOW SINKS`: one row per sink.
pub fn show(engine: &Engine) -> Vec<Vec<Option<String>>> {
    let views: HashMap<TableId, String> = engine
        .catalog
        .views()
        .iter()
        .map(|v| (v.id, v.name.clone()))
        .collect();
    engine
        .sinks
        .all()
        .iter()
        .map(|rt| {
            let SinkConfig::File(cfg) = &rt.def.config;
            vec![
                Some(rt.def.name.clone()),
                views.get(&rt.def.from).cloned(),
                Some("file".to_owned()),
                Some(cfg.path.clone()),
                Some(rt.committed.load(Ordering::Relaxed).to_string()),
                Some(rt.rows.load(Ordering::Relaxed).to_string()),
                Some(rt.files.load(Ordering::Relaxed).to_string()),
                Some(rt.status()),
            ]
        })
        .collect()
}

fn start_runtime(engine: &Arc<Engine>, def: Arc<SinkDef>, committed: u64) -> Arc<SinkRuntime> {
    let since = engine
        .changelogs
        .since(def.from)
        .unwrap_or(committed + 1)
        .min(committed + 1);
    engine
        .changelogs
        .pin(&engine.dataflows, def.from, def.id, committed, since);
    let (stop, stopped) = watch::channel(false);
    let rt = Arc::new(SinkRuntime {
        def,
        committed: AtomicU64::new(committed),
        rows: AtomicU64::new(0),
        files: AtomicU64::new(0),
        status: Mutex::new("running".to_owned()),
        stop,
    });
    lock(&engine.sinks.running).insert(rt.def.id, Arc::clone(&rt));
    tokio::spawn(run(Arc::clone(engine), Arc::clone(&rt), stopped));
    rt
}

/// A sink's loop: gathers committed epochs' changes from the changelog; writes a file once
/// enough rows or time gathered; retries with backoff while the destination fails.
async fn run(engine: Arc<Engine>, rt: Arc<SinkRuntime>, mut stopped: watch::Receiver<bool>) {
    let SinkConfig::File(cfg) = rt.def.config.clone();
    let Some(view) = engine.dataflows.get(rt.def.from) else {
        rt.set_status("failed: its view is not running");
        return;
    };
    let schema = output_schema(&view.schema, cfg.mode);
    let mut latest = engine.subscriptions.watch_latest();
    let mut pending: Vec<Arc<super::subscriptions::EpochRows>> = Vec::new();
    let mut pending_rows = 0u64;
    let mut read_through = rt.committed.load(Ordering::SeqCst);
    let mut first_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stopped.borrow() {
            return;
        }
        // Gather what committed since.
        let now_latest = *latest.borrow_and_update();
        if now_latest > read_through {
            let snapshot = engine.store.snapshot();
            match changelog::read(&snapshot, rt.def.from, read_through + 1, now_latest) {
                Ok(entries) => {
                    for e in entries {
                        pending_rows += e.rows.len() as u64;
                        pending.push(e);
                    }
                    if pending_rows > 0 && first_at.is_none() {
                        first_at = Some(Instant::now());
                    }
                    read_through = now_latest;
                }
                Err(e) => rt.set_status(format!("retrying: reading the changelog: {e}")),
            }
        }
        if pending.is_empty() && read_through > rt.committed.load(Ordering::SeqCst) {
            // Epochs that did not change the view: nothing to write, progress to record
            // (unsynced: losing it only means reading them again).
            let mut batch = WriteBatch::default();
            batch.put(progress_key(rt.def.id), read_through.to_be_bytes());
            if engine.store.write_unsynced(batch).is_ok() {
                rt.committed.store(read_through, Ordering::SeqCst);
                engine
                    .changelogs
                    .pin(&engine.dataflows, rt.def.from, rt.def.id, read_through, 0);
            }
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
                    rt.set_status(format!("retrying: {}", e.message));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
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
    changes: &[Arc<super::subscriptions::EpochRows>],
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

/// The changes of one epoch as the sink sees them.
fn changelog_rows(epoch: u64, rows: Vec<(Vec<Datum>, i64)>) -> Arc<super::subscriptions::EpochRows> {
    Arc::new(super::subscriptions::EpochRows { epoch, rows })
}

/// The columns a sink writes.
fn output_schema(view: &SchemaRef, mode: SinkMode) -> SchemaRef {
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
fn file_rows(mode: SinkMode, changes: &[Arc<super::subscriptions::EpochRows>]) -> Vec<Vec<Datum>> {
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
fn prepare_file(
    dir: &Path,
    schema: &SchemaRef,
    mode: SinkMode,
    first: u64,
    last: u64,
    changes: &[Arc<super::subscriptions::EpochRows>],
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
    let mut writer = ArrowWriter::try_new(file, Arc::clone(schema), None).map_err(std::io::Error::other)?;
    writer.write(&batch).map_err(std::io::Error::other)?;
    let file = writer.into_inner().map_err(std::io::Error::other)?;
    file.sync_all()?;
    Ok(Some((tmp, rows.len() as u64)))
}

/// Finish: gives a committed temporary file its final name, durably.
fn finish_file(tmp: &Path) -> std::io::Result<()> {
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
fn recover(dir: &Path, committed: u64) -> std::io::Result<()> {
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

fn io_error(dir: &Path, e: &dyn std::fmt::Display) -> PgError {
    PgError::new(
        SqlState::IO_ERROR,
        format!("sink directory \"{}\": {e}", dir.display()),
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
