//! The engine: what every session shares — the store, the catalog, the table write path.

use std::collections::HashMap;
use std::sync::Arc;

use freshet_catalog::Catalog;
use freshet_common::TableId;
use freshet_dataflow::{Dataflows, EpochChanges};
use freshet_state::{key_codec, table_prefix, Store, WriteBatch};
use tokio::sync::{Mutex, MutexGuard};

/// Shared server state. One per process.
#[derive(Debug)]
pub struct Engine {
    /// The RocksDB store.
    pub store: Store,
    /// The durable catalog.
    pub catalog: Arc<Catalog>,
    /// The running dataflows of materialized views.
    pub dataflows: Dataflows,
    /// The running sources.
    pub sources: crate::sources::Sources,
    /// Serializes writers: DDL and DML take it for their whole check-and-commit, so primary
    /// key checks see every earlier commit. Readers never take it: they read snapshots.
    write_lock: Mutex<WriteState>,
    /// Data entries read from the store until startup finished (see `freshet_internal.metrics`).
    startup_entries_read: std::sync::atomic::AtomicU64,
}

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
    pub fn new(store: Store, catalog: Arc<Catalog>) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            catalog,
            dataflows: Dataflows::default(),
            sources: crate::sources::Sources::default(),
            write_lock: Mutex::new(WriteState::default()),
            startup_entries_read: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Whether any materialized view reads `table`: only then do writers collect changes.
    pub fn has_dependents(&self, table: TableId) -> bool {
        self.dataflows.reads(table)
    }

    /// Commits one epoch: the base-table writes in `batch` plus, in the same RocksDB write
    /// batch, the state and contents changes of every view `changes` reaches. Call with the
    /// writer lock held (the guard proves it), so the epoch reads the latest committed state.
    pub fn commit(
        &self,
        _writer: &mut WriteState,
        mut batch: WriteBatch,
        changes: EpochChanges,
    ) -> datafusion::error::Result<()> {
        let result = if !changes.is_empty() && !self.dataflows.is_empty() {
            let snapshot = self.store.snapshot();
            self.dataflows.process(changes, &snapshot, &mut batch)
        } else {
            Ok(())
        }
        .and_then(|()| {
            self.store
                .write(batch)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
        });
        if result.is_err() {
            // Operator caches were written through for an epoch that did not commit.
            self.dataflows.forget_cached();
        }
        result
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
        self.write_lock.lock().await
    }
}
