//! Sinks: a view's committed changes written out, exactly once, by a task of their own that
//! reads the view's changelog after commit (`sinks/run.rs`) — a slow or failing destination
//! never holds up ingest or DML; it catches up from the changelog, which keeps every entry the
//! sink has not committed.
//!
//! Destinations are `freshet_connector::SinkWriter`s, each with its exactly-once protocol:
//! Parquet files committed in two phases (`freshet_connector_file`), Kafka messages that carry
//! their place in the output, read back after a restart (`freshet_connector_kafka`).

mod kafka;
mod run;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use freshet_catalog::SinkDef;
use freshet_common::{PgError, SinkConfig, SinkMode, SqlState, TableId};
use freshet_connector::{Protocol, SinkWriter};
use freshet_connector_file::FileWriter;
use freshet_connector_kafka::KafkaWriter;
use freshet_dataflow::MaterializedView;
use freshet_state::{meta_key, WriteBatch};
use tokio::sync::watch;

use super::subscriptions::EpochRows;
use crate::coord::engine::Engine;

/// How long `CREATE SINK` waits for its first output to be written (a broker that is down
/// fails the statement).
const FIRST_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

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
    if let SinkConfig::File(cfg) = &plan.config {
        if cfg.mode == SinkMode::AppendOnly && !view.is_append_only() {
            return Err(retracting_view(&plan.from, "type = 'changelog'"));
        }
    }
    let writer = writer_for(engine, &plan.config, &view, &plan.from, &plan.name, id, true)?;
    // The view's rows as of `start`: the first output, of epochs 0..=start.
    let rows = freshet_dataflow::read_view_rows(&snapshot, &view)
        .map_err(|e| freshet_sql::error::map_df_error(&e))?;
    let first = run::changes(&view.schema, 0, start, &[Arc::new(EpochRows { epoch: start, rows })])?;
    let deadline = Instant::now() + FIRST_WRITE_TIMEOUT;
    let wr = Arc::clone(&writer);
    let prepared = run::blocking(move || {
        wr.open()?;
        wr.write(&first, &|| Instant::now() > deadline)
    })
    .await?;
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
            writer.discard(&prepared);
            return Err(crate::error::user_error(e));
        }
    };
    let running = writer_for(engine, &def.config, &view, &plan.from, &def.name, id, false);
    let rt = start_runtime(engine, def, start, running);
    if writer.protocol() == Protocol::TwoPhase {
        let wr = Arc::clone(&writer);
        let parts = run::blocking(move || wr.finish(&prepared).map(|()| prepared)).await?;
        rt.files.fetch_add(parts.parts.len() as u64, Ordering::Relaxed);
        rt.rows.fetch_add(parts.rows, Ordering::Relaxed);
    } else {
        rt.rows.fetch_add(prepared.rows, Ordering::Relaxed);
    }
    drop(w);
    Ok(())
}

/// The writer of a sink of `config` from `view` (named `from`): its options checked against
/// the view and the server's policy. `fresh`: the sink is being created (its destination
/// holds nothing of it yet).
fn writer_for(
    engine: &Engine,
    config: &SinkConfig,
    view: &MaterializedView,
    from: &str,
    name: &str,
    id: TableId,
    fresh: bool,
) -> Result<Arc<dyn SinkWriter>, PgError> {
    Ok(match config {
        SinkConfig::File(cfg) => Arc::new(FileWriter::new(&view.schema, cfg)?),
        SinkConfig::Kafka(cfg) => {
            let keys = kafka::check(engine, cfg, view, from)?;
            let tag = freshet_connector_kafka::writer::tag(name, id);
            Arc::new(match fresh {
                true => KafkaWriter::fresh(cfg, keys, tag),
                false => KafkaWriter::new(cfg, keys, tag),
            })
        }
    })
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

/// Starts every stored sink (after the views are loaded): its writer settles what a crash
/// left (files prepared and not finished), then its task runs.
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
        let writer = match engine.dataflows.get(def.from) {
            Some(view) => {
                let from = engine
                    .catalog
                    .views()
                    .iter()
                    .find(|v| v.id == def.from)
                    .map(|v| v.name.clone())
                    .unwrap_or_default();
                writer_for(engine, &def.config, &view, &from, &def.name, def.id, false)
            }
            None => Err(PgError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                "its view is not running",
            )),
        };
        if let Ok(w) = &writer {
            w.recover(committed)
                .map_err(|e| anyhow::anyhow!("recovering sink {}: {}", def.name, e.message))?;
        }
        start_runtime(engine, def, committed, writer);
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

/// Registers a sink's runtime and starts its task (or reports why its writer cannot run).
fn start_runtime(
    engine: &Arc<Engine>,
    def: Arc<SinkDef>,
    committed: u64,
    writer: Result<Arc<dyn SinkWriter>, PgError>,
) -> Arc<SinkRuntime> {
    let since = engine
        .changelogs
        .since(def.from)
        .unwrap_or(committed + 1)
        .min(committed + 1);
    engine
        .changelogs
        .pin(&engine.dataflows, def.from, def.id, committed, since);
    let (stop, stopped) = watch::channel(false);
    let status = match &writer {
        Ok(w) if w.protocol() == Protocol::SelfDescribing => "connecting".to_owned(),
        Ok(_) => "running".to_owned(),
        Err(e) => format!("failed: {}", e.message),
    };
    let rt = Arc::new(SinkRuntime {
        def,
        committed: AtomicU64::new(committed),
        rows: AtomicU64::new(0),
        files: AtomicU64::new(0),
        status: Mutex::new(status),
        stop,
    });
    lock(&engine.sinks.running).insert(rt.def.id, Arc::clone(&rt));
    if let Ok(w) = writer {
        tokio::spawn(run::run(Arc::clone(engine), Arc::clone(&rt), w, stopped));
    }
    rt
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
