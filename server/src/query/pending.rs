//! The writes of a transaction block: staged by its statements, read by them over the block's
//! snapshot, committed at COMMIT as one epoch.
//!
//! Inside `BEGIN … COMMIT`, INSERT, UPDATE, DELETE, TRUNCATE and COPY FROM write nothing to the
//! store: each stages its rows (new encoded rows, or deletions, by store key) in the running
//! statement's [`StatementWrites`], which the session merges into the block when the statement
//! succeeds. Table scans lay the block's writes over its snapshot, so a session reads its own
//! writes. [`commit_block`] then checks, under the writer lock, that no key the block wrote
//! changed since its snapshot (first committer wins; the loser gets 40001 and nothing of it
//! is applied) and commits every write, with every view's maintenance for them, in one
//! RocksDB write batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use datafusion::error::Result;
use freshet_catalog::TableDef;
use freshet_common::{Datum, PgError, SqlState, TableId};
use freshet_dataflow::epoch::state_err;
use freshet_dataflow::EpochChanges;
use freshet_state::{row_codec, Snapshot, WriteBatch};

use super::write::{row_key, unique_violation, validate_row};
use crate::coord::engine::{Engine, WriteState};
use datafusion::logical_expr::LogicalPlan;
use tokio::sync::MutexGuard;

use super::provider::StatementSnapshot;

/// Pending writes by store key.
pub type WriteSet = BTreeMap<Vec<u8>, Pending>;

/// One pending write: the key's new encoded row, or `None` for a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub table: TableId,
    pub row: Option<Vec<u8>>,
}

/// What a statement inside a transaction block reads and writes (a session config extension
/// while it runs).
#[derive(Debug)]
pub struct StatementWrites {
    /// The block's snapshot: what the statement reads under the pending writes.
    pub snapshot: Arc<Snapshot>,
    /// The block's writes before this statement.
    pub block: Arc<WriteSet>,
    /// This statement's writes, merged into the block when it succeeds.
    pub staged: Mutex<WriteSet>,
    /// The block's row-lock owner (`None` outside a block).
    pub owner: Option<u64>,
    /// READ COMMITTED: the snapshot is this statement's own, and a locked row is read at
    /// its latest commit.
    pub read_committed: bool,
    /// What the rows this statement changed held when it read them, where that is not the
    /// snapshot's (a locked row read at its latest commit): the block's COMMIT checks that
    /// each still does.
    pub based_on: Mutex<HashMap<Vec<u8>, Option<Vec<u8>>>>,
}

impl StatementWrites {
    /// A statement's view of a block with `snapshot` and pending `block` writes.
    pub fn new(snapshot: Arc<Snapshot>, block: Arc<WriteSet>) -> Self {
        Self {
            snapshot,
            block,
            staged: Mutex::new(WriteSet::new()),
            owner: None,
            read_committed: false,
            based_on: Mutex::default(),
        }
    }

    /// A statement of the block whose rows locks belong to `owner`.
    pub fn in_block(mut self, owner: u64, read_committed: bool) -> Self {
        self.owner = Some(owner);
        self.read_committed = read_committed;
        self
    }

    /// Locks the rows at `keys` for the statement's block (waiting for other blocks that
    /// hold them); nothing outside a block.
    pub async fn lock_rows(&self, engine: &Engine, keys: &[&[u8]]) -> Result<(), PgError> {
        match self.owner {
            Some(owner) => engine.row_locks.lock(owner, keys).await,
            None => Ok(()),
        }
    }

    /// READ COMMITTED, once `keys` are locked: 40001 if another block committed a change to
    /// one of them since this statement's snapshot (PostgreSQL would re-evaluate the row;
    /// a point statement reads the locked row at its latest commit and never needs to).
    /// Otherwise the rows are recorded as based on what the statement read.
    pub fn check_unchanged(&self, engine: &Engine, keys: &[&[u8]]) -> Result<(), PgError> {
        if !self.read_committed || self.owner.is_none() || keys.is_empty() {
            return Ok(());
        }
        let fresh: Vec<&[u8]> = keys
            .iter()
            .copied()
            .filter(|k| !self.block.contains_key(*k))
            .collect();
        let latest = engine.store.snapshot().multi_get(&fresh).map_err(internal)?;
        let read = self.snapshot.multi_get(&fresh).map_err(internal)?;
        if latest != read {
            return Err(serialization_failure());
        }
        let mut based_on = self
            .based_on
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (k, v) in fresh.into_iter().zip(read) {
            based_on.entry(k.to_vec()).or_insert(v);
        }
        Ok(())
    }

    /// The versions this statement based its changes on, where not its snapshot's.
    pub fn take_based_on(&self) -> HashMap<Vec<u8>, Option<Vec<u8>>> {
        std::mem::take(
            &mut *self
                .based_on
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The row at `key` as this statement changes it, once locked: its own or the block's
    /// pending write, else, in READ COMMITTED, the latest commit's (recorded as what the
    /// change is based on), else the snapshot's.
    pub fn locked_row(&self, engine: &Engine, staged: &WriteSet, key: &[u8]) -> Result<Option<Vec<u8>>, PgError> {
        if let Some(p) = staged.get(key).or_else(|| self.block.get(key)) {
            return Ok(p.row.clone());
        }
        if self.read_committed && self.owner.is_some() {
            let latest = engine.store.get(key).map_err(internal)?;
            self.based_on
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key.to_vec(), latest.clone());
            return Ok(latest);
        }
        self.snapshot.get(key).map_err(internal)
    }

    /// Makes `state` read through these writes: their snapshot, with the block's writes
    /// over it.
    /// Its start also fixes `now()` for the expressions the statement evaluates itself
    /// (defaults, `RETURNING`, `ON CONFLICT`).
    pub fn install(self: &Arc<Self>, state: &mut datafusion::execution::SessionState) {
        let options = Arc::clone(state.config().options());
        state.execution_props_mut().mark_start_execution(options);
        state.config_mut().set_extension(Arc::clone(self));
        state
            .config_mut()
            .set_extension(Arc::new(StatementSnapshot(Arc::clone(&self.snapshot))));
    }

    /// This statement's writes so far.
    pub fn take_staged(&self) -> WriteSet {
        std::mem::take(&mut *self.lock())
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, WriteSet> {
        self.staged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `key` holds a row as this statement sees it (`staged`: its own writes).
    fn visible(&self, staged: &WriteSet, key: &[u8]) -> Result<bool> {
        Ok(self.visible_row(staged, key)?.is_some())
    }

    /// What the snapshot holds at each of `keys`, read at once (for [`Self::visible_row_in`]).
    pub(super) fn snapshot_rows(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.snapshot.multi_get(keys).map_err(state_err)
    }

    /// [`Self::visible_row`] with the snapshot's value already read (`in_snapshot`).
    pub(super) fn visible_row_in(
        &self,
        staged: &WriteSet,
        key: &[u8],
        in_snapshot: &Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        match staged.get(key).or_else(|| self.block.get(key)) {
            Some(p) => p.row.clone(),
            None => in_snapshot.clone(),
        }
    }

    /// The encoded row `key` holds as this statement sees it (`staged`: its own writes).
    pub(super) fn visible_row(&self, staged: &WriteSet, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(p) = staged.get(key).or_else(|| self.block.get(key)) {
            return Ok(p.row.clone());
        }
        Ok(self
            .snapshot
            .get(key)
            .map_err(state_err)?
            .map(|v| v.to_vec()))
    }
}

/// What a writing statement reads and stages into: its block's, or, outside a block, a
/// statement of its own over the latest commit, with the writer lock (returned) held until
/// the caller commits the staged writes (`commit_writes`). `plan`, the statement's read, says
/// whether contents logs must be folded first.
pub async fn for_statement<'a>(
    engine: &'a Engine,
    block: Option<Arc<StatementWrites>>,
    plan: Option<&LogicalPlan>,
) -> Result<(Option<MutexGuard<'a, WriteState>>, Arc<StatementWrites>), PgError> {
    if let Some(b) = block {
        return Ok((None, b));
    }
    let mut w = engine.begin_write().await;
    let snapshot = match plan {
        Some(p) if super::reads_logged_view(p) => engine
            .fold_for_read(&mut w)
            .map_err(|e| freshet_sql::error::map_df_error(&e))?,
        _ => engine.store.snapshot(),
    };
    let writes = StatementWrites::new(Arc::new(snapshot), Arc::new(WriteSet::new()));
    Ok((Some(w), Arc::new(writes)))
}

/// Stages the deletion of `rows` (each a store key and the row it holds) of `def`.
pub fn stage_delete(
    writes: &StatementWrites,
    def: &TableDef,
    rows: Vec<(Vec<u8>, Vec<Datum>)>,
) -> u64 {
    let mut staged = writes.lock();
    let n = rows.len() as u64;
    for (key, old) in rows {
        super::indexes::stage(&mut staged, def, &key, Some(&old), None);
        staged.insert(
            key,
            Pending {
                table: def.id,
                row: None,
            },
        );
    }
    n
}

/// Stages an UPDATE: each (store key, row, new row) replaces its key's row, under a new key
/// when the primary key changes. Every old row is gone before the new rows are checked, so
/// rows may trade key or unique values within one statement.
pub fn stage_update(
    writes: &StatementWrites,
    def: &TableDef,
    rows: Vec<(Vec<u8>, Vec<Datum>, Vec<Datum>)>,
) -> Result<u64, PgError> {
    let mut staged = writes.lock();
    let mut deleted = HashSet::with_capacity(rows.len());
    let mut updated = Vec::with_capacity(rows.len());
    for (key, old, mut new) in rows {
        validate_row(def, &mut new)?;
        let new_key = if def.has_primary_key() {
            row_key(def, &new)
        } else {
            key.clone()
        };
        super::indexes::stage(&mut staged, def, &key, Some(&old), None);
        staged.insert(
            key.clone(),
            Pending {
                table: def.id,
                row: None,
            },
        );
        deleted.insert(key);
        updated.push((new_key, new));
    }
    let mut seen = HashSet::with_capacity(updated.len());
    for (key, row) in &updated {
        let visible = writes
            .visible(&staged, key)
            .map_err(|e| freshet_sql::error::map_df_error(&e))?;
        if def.has_primary_key() && (!seen.insert(key.clone()) || visible) {
            return Err(unique_violation(def, row));
        }
        if let Some(u) = super::indexes::conflict(writes, &staged, def, key, row)? {
            return Err(super::indexes::violation(def, u, row));
        }
        super::indexes::stage(&mut staged, def, key, None, Some(row));
        staged.insert(key.clone(), put(def.id, row));
    }
    Ok(updated.len() as u64)
}

pub(super) fn put(table: TableId, row: &[Datum]) -> Pending {
    let mut buf = Vec::new();
    row_codec::encode_row(row, &mut buf);
    Pending {
        table,
        row: Some(buf),
    }
}

/// Commits a block's `writes`, read over `snapshot`, as one epoch: 40001 if another commit
/// changed any key they write since it was read (at `based_on`'s version where it has one,
/// else at the snapshot), or dropped a table they write.
pub async fn commit_block(
    engine: &Engine,
    snapshot: &Snapshot,
    based_on: &HashMap<Vec<u8>, Option<Vec<u8>>>,
    writes: &WriteSet,
) -> Result<(), PgError> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut w = engine.begin_write().await;
    let latest = engine.store.snapshot();
    let keys: Vec<&Vec<u8>> = writes.keys().collect();
    let now = latest.multi_get(&keys).map_err(internal)?;
    // What each key held when the block read it: its recorded version, else the snapshot's.
    let unbased: Vec<&Vec<u8>> = keys
        .iter()
        .copied()
        .filter(|k| !based_on.contains_key(k.as_slice()))
        .collect();
    let mut from_snapshot = snapshot.multi_get(&unbased).map_err(internal)?.into_iter();
    let then: Vec<Option<Vec<u8>>> = keys
        .iter()
        .map(|k| match based_on.get(k.as_slice()) {
            Some(v) => v.clone(),
            None => from_snapshot.next().flatten(),
        })
        .collect();
    let written: HashSet<TableId> = writes.values().map(|p| p.table).collect();
    let live: HashSet<TableId> = engine
        .catalog
        .tables()
        .iter()
        .flat_map(|d| d.storage_ids().collect::<Vec<_>>())
        .collect();
    let dropped = !written.is_subset(&live);
    if now != then || dropped || misses_an_index(engine, writes) {
        return Err(serialization_failure());
    }
    // The rows the writes replace were just read under the writer lock: the views' input.
    apply_writes_over(engine, &mut w, writes, &now).await?;
    drop(w);
    engine
        .sync_commits()
        .await
        .map_err(|e| freshet_sql::error::map_df_error(&e))
}

/// Commits `writes` as one epoch, with every view's changes for them, not yet durable (see
/// [`commit_writes`]); the caller holds the writer lock (`w`).
async fn apply_writes(
    engine: &Engine,
    w: &mut WriteState,
    writes: &WriteSet,
    known: Option<EpochChanges>,
) -> Result<(), PgError> {
    if writes.is_empty() {
        return Ok(());
    }
    if let Some(changes) = known {
        let mut batch = WriteBatch::default();
        for (key, p) in writes {
            match &p.row {
                Some(row) => batch.put(key, row),
                None => batch.delete(key),
            }
        }
        return engine
            .commit_grouped(w, batch, changes)
            .await
            .map_err(|e| freshet_sql::error::map_df_error(&e));
    }
    // Views need each written key's row as it was: read those of tables views read, only.
    let tracked = tracked_tables(engine, writes);
    let read: Vec<&Vec<u8>> = writes
        .iter()
        .filter(|(_, p)| tracked[&p.table])
        .map(|(k, _)| k)
        .collect();
    let olds = engine
        .store
        .snapshot()
        .multi_get(&read)
        .map_err(internal)?;
    apply_with_olds(engine, w, writes, &tracked, olds).await
}

/// Which of the tables `writes` touch have views over them.
fn tracked_tables(engine: &Engine, writes: &WriteSet) -> HashMap<TableId, bool> {
    writes
        .values()
        .map(|p| p.table)
        .collect::<HashSet<_>>()
        .into_iter()
        .map(|t| (t, engine.has_dependents(t)))
        .collect()
}

/// [`apply_writes`] with every written key's current row already read (`now`, in key order).
async fn apply_writes_over(
    engine: &Engine,
    w: &mut WriteState,
    writes: &WriteSet,
    now: &[Option<Vec<u8>>],
) -> Result<(), PgError> {
    let tracked = tracked_tables(engine, writes);
    let olds = writes
        .values()
        .zip(now)
        .filter(|(p, _)| tracked[&p.table])
        .map(|(_, old)| old.clone())
        .collect();
    apply_with_olds(engine, w, writes, &tracked, olds).await
}

/// Commits `writes` with the views' changes: `olds` are the replaced rows of the keys of
/// `tracked` tables, in key order.
async fn apply_with_olds(
    engine: &Engine,
    w: &mut WriteState,
    writes: &WriteSet,
    tracked: &HashMap<TableId, bool>,
    olds: Vec<Option<Vec<u8>>>,
) -> Result<(), PgError> {
    let mut olds = olds.into_iter();
    let mut batch = WriteBatch::default();
    let mut changes = EpochChanges::default();
    let decode = |b: &[u8]| row_codec::decode_row(b).map_err(internal);
    for (key, p) in writes {
        match &p.row {
            Some(row) => batch.put(key, row),
            None => batch.delete(key),
        }
        if tracked[&p.table] {
            if let Some(old) = olds.next().flatten() {
                changes.add(p.table, [decode(&old)?], -1);
            }
            if let Some(row) = &p.row {
                changes.add(p.table, [decode(row)?], 1);
            }
        }
    }
    engine
        .commit_grouped(w, batch, changes)
        .await
        .map_err(|e| freshet_sql::error::map_df_error(&e))
}

/// Commits a statement's or block's `writes` under the writer lock `w`, releases the lock,
/// then waits until they are durable (sharing the fsync with concurrent committers).
/// `known`: the views' input for them, when the statement has it (the rows it read and
/// wrote under the lock), which spares reading and decoding every written row again.
pub async fn commit_writes(
    engine: &Engine,
    mut w: MutexGuard<'_, WriteState>,
    writes: &WriteSet,
    known: Option<EpochChanges>,
) -> Result<(), PgError> {
    if writes.is_empty() {
        return Ok(());
    }
    if misses_an_index(engine, writes) {
        return Err(serialization_failure());
    }
    apply_writes(engine, &mut w, writes, known).await?;
    drop(w);
    engine
        .sync_commits()
        .await
        .map_err(|e| freshet_sql::error::map_df_error(&e))
}

/// Whether `writes` change rows of a table without the entries of one of its `CREATE
/// INDEX`es: staged before the index was created (every row write stages an entry in each).
fn misses_an_index(engine: &Engine, writes: &WriteSet) -> bool {
    let written: HashSet<TableId> = writes.values().map(|p| p.table).collect();
    engine
        .catalog
        .tables()
        .iter()
        .filter(|d| written.contains(&d.id))
        .any(|d| d.indexes.iter().any(|i| !written.contains(&i.id)))
}

fn serialization_failure() -> PgError {
    PgError::new(
        SqlState::SERIALIZATION_FAILURE,
        "could not serialize access due to concurrent update",
    )
    .with_hint("Run the transaction again.")
}

fn internal(e: impl std::fmt::Display) -> PgError {
    PgError::internal(e)
}
