//! The engine: what every session shares — the store, the catalog, the table write path.

use std::collections::HashMap;
use std::sync::Arc;

use freshet_catalog::Catalog;
use freshet_common::TableId;
use freshet_dataflow::epoch::state_err;
use freshet_dataflow::runner::{CommitHook, Durability, EpochRunner};
use freshet_dataflow::{Dataflows, EpochChanges};
use freshet_state::{key_codec, table_prefix, Snapshot, Store, WriteBatch};
use tokio::sync::{Mutex, MutexGuard};

/// Shared server state. One per process.
#[derive(Debug)]
pub struct Engine {
    /// The RocksDB store.
    pub store: Store,
    /// The durable catalog.
    pub catalog: Arc<Catalog>,
    /// The running dataflows of materialized views.
    pub dataflows: Arc<Dataflows>,
    /// Commits epochs through the dataflows, on a thread of its own.
    pub runner: EpochRunner,
    /// The running sources.
    pub sources: crate::coord::sources::Sources,
    /// Serializes writers: DDL and DML take it for their whole check-and-commit, so primary
    /// key checks see every earlier commit. Readers never take it: they read snapshots.
    write_lock: Mutex<WriteState>,
    /// Data entries read from the store until startup finished (see `freshet_internal.metrics`).
    startup_entries_read: std::sync::atomic::AtomicU64,
    /// Contents log budget of all aggregate views together, in bytes (0: no logs; see
    /// `MaterializedView::with_contents_log` and `Dataflows::wants_fold`).
    pub contents_log_bytes: usize,
    /// Which librdkafka properties sources may set.
    pub kafka_policy: freshet_connector_kafka::PropertyPolicy,
    /// Subscribers of relations' changes, fed after each commit.
    pub subscriptions: Arc<crate::coord::Subscriptions>,
    /// Views' retained changelogs.
    pub changelogs: Arc<crate::coord::Changelogs>,
    /// The running sinks.
    pub sinks: crate::coord::sinks::Sinks,
    /// LISTEN registrations.
    pub listeners: Arc<crate::coord::notify::Listeners>,
    /// Identity columns' sequences.
    pub sequences: crate::coord::sequences::Sequences,
    /// Row locks of open transaction blocks.
    pub row_locks: crate::coord::locks::RowLocks,
    /// What each session is doing (`pg_stat_activity`).
    pub activities: crate::coord::activity::Activities,
    /// Backfills running now (`freshet_internal.backfills`).
    pub backfills: crate::coord::backfills::Backfills,
    /// Plans the queries of views (`CREATE VIEW`) at each use: the server's template state,
    /// set once at startup (see [`DefinerState`]).
    pub definer: DefinerState,
}

/// The session state views' queries are planned with (the server's template: no session's
/// search path, user or settings leak into a view's meaning), and how a materialized view's
/// plan takes in the queries of the views it reads (the query layer's, set by the server).
/// Its catalog holds the engine, so its `Debug` does not print it.
#[derive(Default)]
pub struct DefinerState(std::sync::OnceLock<Definer>);

/// See [`DefinerState`].
pub struct Definer {
    pub state: datafusion::execution::SessionState,
    /// A plan with every view it scans replaced by the view's query, and those views' ids.
    pub inline_views: InlineViews,
}

/// See [`Definer::inline_views`].
pub type InlineViews = fn(
    datafusion::logical_expr::LogicalPlan,
) -> datafusion::error::Result<(datafusion::logical_expr::LogicalPlan, Vec<TableId>)>;

impl DefinerState {
    /// Sets the definer once; later calls are ignored.
    pub fn set(&self, definer: Definer) {
        let _ = self.0.set(definer);
    }

    /// The state views' queries are planned with, once the server has set it.
    pub fn state(&self) -> Option<&datafusion::execution::SessionState> {
        self.0.get().map(|d| &d.state)
    }

    /// `plan` with the views it scans inlined (unchanged before the server set the definer).
    pub fn inline_views(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> datafusion::error::Result<(datafusion::logical_expr::LogicalPlan, Vec<TableId>)> {
        match self.0.get() {
            Some(d) => (d.inline_views)(plan),
            None => Ok((plan, Vec::new())),
        }
    }
}

impl std::fmt::Debug for DefinerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DefinerState")
    }
}

pub use freshet_dataflow::runner::FoldReason;

/// State only a writer may touch.
#[derive(Debug, Default)]
pub struct WriteState {
    /// Next hidden row id per table without a primary key.
    next_row_id: HashMap<TableId, u64>,
}

impl WriteState {
    /// Allocates `n` consecutive row ids for `table`, returning the first.
    pub fn allocate_row_ids(
        &mut self,
        store: &Store,
        table: TableId,
        n: u64,
    ) -> freshet_state::Result<u64> {
        let next = match self.next_row_id.get(&table) {
            Some(n) => *n,
            None => {
                let prefix = table_prefix(table);
                match store.last_key_with_prefix(&prefix)? {
                    Some(k) => key_codec::decode_row_id(&k[prefix.len()..])? + 1,
                    None => 0,
                }
            }
        };
        self.next_row_id.insert(table, next + n);
        Ok(next)
    }

    /// Forgets a dropped table's counter.
    pub fn forget(&mut self, table: TableId) {
        self.next_row_id.remove(&table);
    }
}

impl Engine {
    /// Builds the engine over an opened store.
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        contents_log_bytes: usize,
        kafka_policy: freshet_connector_kafka::PropertyPolicy,
        subscriber_queue_rows: usize,
        retain_changes: std::time::Duration,
    ) -> anyhow::Result<Arc<Engine>> {
        let latest = match store.get(&freshet_state::changelog::epoch_key())? {
            Some(v) => v
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| freshet_state::Error::Corrupt("epoch number".into()))?,
            None => 0,
        };
        let dataflows = Arc::new(Dataflows::default());
        let runner = EpochRunner::start(
            store.clone(),
            Arc::clone(&dataflows),
            latest,
            contents_log_bytes,
        )
        .map_err(|e| anyhow::anyhow!("starting the epoch thread: {e}"))?;
        let publish = Arc::new(Publish {
            store: store.clone(),
            subscriptions: Arc::new(crate::coord::Subscriptions::new(
                subscriber_queue_rows,
                latest,
            )),
            changelogs: Arc::new(crate::coord::Changelogs::new(retain_changes)),
            listeners: Arc::default(),
        });
        runner.set_hook(publish.clone());
        Ok(Arc::new(Engine {
            store,
            catalog,
            dataflows,
            runner,
            sources: crate::coord::sources::Sources::default(),
            write_lock: Mutex::new(WriteState::default()),
            startup_entries_read: std::sync::atomic::AtomicU64::new(0),
            contents_log_bytes,
            kafka_policy,
            subscriptions: Arc::clone(&publish.subscriptions),
            changelogs: Arc::clone(&publish.changelogs),
            sinks: crate::coord::sinks::Sinks::default(),
            listeners: Arc::clone(&publish.listeners),
            sequences: crate::coord::sequences::Sequences::default(),
            row_locks: crate::coord::locks::RowLocks::default(),
            activities: crate::coord::activity::Activities::default(),
            backfills: crate::coord::backfills::Backfills::default(),
            definer: DefinerState::default(),
        }))
    }

    /// The last committed epoch's number (epochs count commits that go through the views:
    /// DML, COPY, a source's batch).
    pub fn latest_epoch(&self) -> u64 {
        self.subscriptions.latest()
    }

    /// Whether any materialized view reads `table`: only then do writers collect changes.
    pub fn has_dependents(&self, table: TableId) -> bool {
        self.dataflows.reads(table)
    }

    /// Commits one epoch on the epoch runner: the base-table writes in `batch` plus, in the
    /// same RocksDB write batch, the state and contents changes of every view `changes`
    /// reaches. Call with the writer lock held (the guard proves it), so the epoch reads the
    /// latest committed state.
    pub async fn commit(
        &self,
        _writer: &mut WriteState,
        batch: WriteBatch,
        changes: EpochChanges,
    ) -> datafusion::error::Result<()> {
        self.runner.commit(batch, changes, Durability::Synced).await?;
        Ok(())
    }

    /// [`Engine::commit`] that does not wait for the disk: the caller releases the writer
    /// lock, then awaits [`Engine::sync_commits`] before acknowledging, so that concurrent
    /// committers share fsyncs (group commit). Until then, other sessions may already read
    /// the epoch; only a crash of the machine (not of the process) could still undo it.
    pub async fn commit_grouped(
        &self,
        _writer: &mut WriteState,
        batch: WriteBatch,
        changes: EpochChanges,
    ) -> datafusion::error::Result<()> {
        self.runner.commit(batch, changes, Durability::Grouped).await?;
        Ok(())
    }

    /// Makes every epoch committed so far durable (with `--sync-commits`), sharing the fsync
    /// with every other session waiting meanwhile.
    pub async fn sync_commits(&self) -> datafusion::error::Result<()> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.sync_wal())
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
            .map_err(state_err)
    }

    /// Folds every view's contents log into its entries (see the dataflow crate's
    /// `contents_log.rs`), under the writer lock (the guard proves it).
    pub fn fold(&self, _writer: &mut WriteState, why: FoldReason) -> datafusion::error::Result<()> {
        Ok(self.runner.fold(why)?)
    }

    /// Contents log folds so far for `why`.
    pub fn folds(&self, why: FoldReason) -> u64 {
        self.runner.folds(why)
    }

    /// A snapshot for a statement: the latest commit, with every view's contents whole. When
    /// a contents log may hold changes, folds it first under the writer lock.
    pub async fn read_snapshot(&self) -> datafusion::error::Result<Snapshot> {
        let g = self.dataflows.log_generation();
        if g.is_multiple_of(2) {
            let snapshot = self.store.snapshot();
            if self.dataflows.log_generation() == g {
                return Ok(snapshot);
            }
        }
        let mut w = self.begin_write().await;
        self.fold_for_read(&mut w)
    }

    /// [`Engine::read_snapshot`] for a caller holding the writer lock.
    pub fn fold_for_read(&self, _writer: &mut WriteState) -> datafusion::error::Result<Snapshot> {
        Ok(self.runner.fold_for_read()?)
    }

    /// Records that startup is over: what was read from the store until now is its cost.
    pub fn finish_startup(&self) {
        self.startup_entries_read.store(
            freshet_state::data_entries_read(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Data entries (table rows, view rows, operator state) read while starting up.
    pub fn startup_entries_read(&self) -> u64 {
        self.startup_entries_read
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes the writer lock.
    pub async fn begin_write(&self) -> MutexGuard<'_, WriteState> {
        let guard = self.write_lock.lock().await;
        // A writer whose task was cancelled while its epoch ran released the lock early.
        self.runner.idle().await;
        guard
    }
}

/// The runner's post-commit hook: changelogs are written with each epoch; subscribers,
/// LISTEN and changelog retention learn of it once it committed.
struct Publish {
    store: Store,
    subscriptions: Arc<crate::coord::Subscriptions>,
    changelogs: Arc<crate::coord::Changelogs>,
    listeners: Arc<crate::coord::notify::Listeners>,
}

impl CommitHook for Publish {
    fn stage(&self, epoch: u64, changes: &EpochChanges, batch: &mut WriteBatch) {
        self.changelogs.write(epoch, changes, batch);
    }

    fn committed(&self, epoch: u64, changes: &EpochChanges) {
        self.subscriptions.publish(epoch, changes);
        self.listeners.publish(epoch, changes);
        if let Err(e) = self.changelogs.prune(&self.store) {
            tracing::warn!(error = %e, "pruning changelogs failed");
        }
    }
}

/// The Arrow schema of a table: one field per column, nullable unless NOT NULL.
pub fn table_schema(def: &freshet_catalog::TableDef) -> datafusion::arrow::datatypes::Schema {
    datafusion::arrow::datatypes::Schema::new(
        def.columns
            .iter()
            .map(|c| freshet_sql::types::arrow_field(&c.name, &c.ty, !c.not_null))
            .collect::<Vec<_>>(),
    )
}
