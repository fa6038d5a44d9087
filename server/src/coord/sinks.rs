//! Sinks: a view's committed changes written out, exactly once, by a task of their own that
//! reads the view's changelog after commit — a slow or failing destination never holds up
//! ingest or DML; it catches up from the changelog, which keeps every entry the sink has not
//! committed.
//!
//! Each connector's protocol lives beside this file: Parquet files committed in two phases
//! (`sinks/file.rs`), Kafka messages that carry their place in the output, read back after a
//! restart (`sinks/kafka.rs`).

mod file;
mod kafka;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use freshet_catalog::SinkDef;
use freshet_common::{Datum, PgError, SinkConfig, SinkMode, SqlState, TableId};
use freshet_state::{meta_key, WriteBatch};
use tokio::sync::watch;

use super::subscriptions::EpochRows;
use crate::coord::engine::Engine;

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

    pub(super) fn set_status(&self, s: impl Into<String>) {
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
    let snapshot = engine.fold_for_read(&mut w).map_err(|e| freshet_sql::error::map_df_error(&e))?;
    let start = engine.runner.epoch();
    let id = engine.catalog.peek_next_id();
    // The view's rows as of `start`: the first output, of epochs 0..=start.
    let rows = || {
        freshet_dataflow::read_view_rows(&snapshot, &view)
            .map_err(|e| freshet_sql::error::map_df_error(&e))
    };
    let first = match &plan.config {
        SinkConfig::File(cfg) => {
            if cfg.mode == SinkMode::AppendOnly && !view.is_append_only() {
                return Err(retracting_view(&plan.from, "type = 'changelog'"));
            }
            let layout = file::Layout::new(&view.schema, cfg)?;
            let dir = PathBuf::from(&cfg.path);
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, &e))?;
            let changes = vec![changelog_rows(start, rows()?)];
            // Prepared now, finished once the sink commits.
            let prepared = file::prepare(&dir, &layout, 0, start, &changes)
                .map_err(|e| io_error(&dir, &e))?;
            First::File(dir, prepared)
        }
        SinkConfig::Kafka(cfg) => {
            let keys = kafka::check(engine, cfg, &view, &plan.from)?;
            let tag = kafka::tag(&plan.name, id);
            let sent = kafka::write_first(cfg, &view.schema, &keys, &tag, start, rows()?).await?;
            First::Kafka(sent)
        }
    };
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
            if let First::File(_, Some(prepared)) = &first {
                for tmp in &prepared.files {
                    let _ = std::fs::remove_file(tmp);
                }
            }
            return Err(crate::error::user_error(e));
        }
    };
    let rt = start_runtime(engine, def, start);
    match first {
        First::File(dir, Some(prepared)) => {
            file::finish(&dir, &prepared).map_err(|e| io_error(&dir, &e))?;
            rt.rows.fetch_add(prepared.rows, Ordering::Relaxed);
            rt.files
                .fetch_add(prepared.files.len() as u64, Ordering::Relaxed);
        }
        First::File(_, None) => {}
        First::Kafka(n) => {
            rt.rows.fetch_add(n, Ordering::Relaxed);
        }
    }
    drop(w);
    Ok(())
}

/// What `CREATE SINK` wrote of the view's rows before the sink commits.
enum First {
    /// The prepared files (none for no rows), finished once the sink commits.
    File(PathBuf, Option<file::Prepared>),
    /// Messages sent.
    Kafka(u64),
}

/// A sink that writes only arrivals, from a view that can retract rows.
fn retracting_view(view: &str, changelog: &str) -> PgError {
    PgError::new(
        SqlState::INVALID_PARAMETER_VALUE,
        format!("materialized view \"{view}\" can retract rows, which an append-only sink cannot write"),
    )
    .with_hint(format!(
        "Use {changelog} to write every change, or force_append_only = 'true' to drop retractions."
    ))
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
        if let SinkConfig::File(cfg) = &def.config {
            file::recover(Path::new(&cfg.path), committed)
                .map_err(|e| anyhow::anyhow!("recovering sink {} in {}: {e}", def.name, cfg.path))?;
        }
        // A Kafka sink reads back what its topic holds once connected.
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
        .map_err(crate::error::user_error)?;
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
            let (connector, place) = match &rt.def.config {
                SinkConfig::File(cfg) => ("file", cfg.path.clone()),
                SinkConfig::Kafka(cfg) => ("kafka", format!("{}/{}", cfg.bootstrap, cfg.topic)),
            };
            vec![
                Some(rt.def.name.clone()),
                views.get(&rt.def.from).cloned(),
                Some(connector.to_owned()),
                Some(place),
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
    // A Kafka sink connects first (`sinks/kafka.rs`).
    let status = match def.config {
        SinkConfig::Kafka(_) => "connecting",
        SinkConfig::File(_) => "running",
    };
    let rt = Arc::new(SinkRuntime {
        def,
        committed: AtomicU64::new(committed),
        rows: AtomicU64::new(0),
        files: AtomicU64::new(0),
        status: Mutex::new(status.to_owned()),
        stop,
    });
    lock(&engine.sinks.running).insert(rt.def.id, Arc::clone(&rt));
    match rt.def.config.clone() {
        SinkConfig::File(cfg) => {
            tokio::spawn(file::run(Arc::clone(engine), Arc::clone(&rt), cfg, stopped));
        }
        SinkConfig::Kafka(cfg) => {
            tokio::spawn(kafka::run(Arc::clone(engine), Arc::clone(&rt), cfg, stopped));
        }
    }
    rt
}

/// The changes of one epoch as the sink sees them.
pub(super) fn changelog_rows(epoch: u64, rows: Vec<(Vec<Datum>, i64)>) -> Arc<EpochRows> {
    Arc::new(EpochRows { epoch, rows })
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
    match super::changelog::read(&snapshot, rt.def.from, *read_through + 1, now_latest) {
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
    backoff: &mut std::time::Duration,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    rt.set_status(format!("retrying: {}", error.message));
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = stopped.changed() => return false,
    }
    *backoff = (*backoff * 2).min(std::time::Duration::from_secs(5));
    true
}

/// Records that the sink's destination holds every change through epoch `last`: its progress
/// (unsynced — the caller syncs where the protocol needs it) and the changelog pin.
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

fn io_error(dir: &Path, e: &dyn std::fmt::Display) -> PgError {
    PgError::new(
        SqlState::IO_ERROR,
        format!("sink directory \"{}\": {e}", dir.display()),
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
