//! A session's transaction block: `BEGIN` … `COMMIT` / `ROLLBACK`, savepoints, the failed
//! state.
//!
//! In REPEATABLE READ a block reads one snapshot, taken at `BEGIN`; in READ COMMITTED (the
//! default) each statement takes its own; either way with the block's pending writes laid over
//! it (`query/pending.rs`). Its UPDATEs and DELETEs lock their rows until it ends
//! (`query/locks.rs`); its writes reach the store only at `COMMIT`, as one epoch, or never.
//! An error inside a block fails it: every statement but `ROLLBACK` (or `ROLLBACK TO
//! SAVEPOINT`) then gets 25P02, and `COMMIT` rolls it back. DDL is not transactional: in a block
//! that has not written it runs and commits at once (the block then reads a new snapshot), and a
//! later `ROLLBACK` across it fails with 0A000 saying that it stays; in a block that has
//! written rows it is refused with 25001.

use std::sync::Arc;

use freshet_common::{PgError, SqlState};
use freshet_state::Snapshot;

use freshet_sql::error::map_df_error;
use freshet_sql::{Isolation, TransactionOp};

use super::{Outcome, Session};
use crate::query::pending::{StatementWrites, WriteSet};

/// Versions of rows by store key (`None`: no row).
pub(super) type BasedOn = std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>;

/// The explicit transaction block of a session, if one is open.
#[derive(Debug, Default)]
pub(super) struct Block {
    /// `None`: no block is open (each statement commits on its own).
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    snapshot: Arc<Snapshot>,
    writes: Arc<WriteSet>,
    /// Its row locks' owner (see `query/locks.rs`).
    owner: u64,
    isolation: Isolation,
    /// READ COMMITTED: what each written row held when the block's statement read it (each
    /// statement reads a snapshot of its own); COMMIT checks that it still does.
    based_on: BasedOn,
    failed: bool,
    /// DDL statements run in the block so far (each committed when it ran).
    ddl: usize,
    /// Savepoints, innermost last: name, the writes and DDL count when it was set.
    savepoints: Vec<(String, Arc<WriteSet>, usize)>,
}

/// What COMMIT must do.
pub(super) enum Commit {
    /// Commit these writes, read over this snapshot (or at these versions); then release
    /// the block's row locks (its owner).
    Writes(Arc<Snapshot>, BasedOn, Arc<WriteSet>, u64),
    /// The block had failed: it is rolled back (its row locks' owner).
    RolledBack(u64),
    /// No block was open.
    Nothing,
}

impl Block {
    /// Whether a block is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Opens a block reading `snapshot` (`BEGIN` inside a block keeps the open one), its
    /// row locks held as `owner`.
    pub fn begin(&mut self, snapshot: Snapshot, owner: u64, isolation: Isolation) {
        if self.open.is_none() {
            self.open = Some(Open {
                snapshot: Arc::new(snapshot),
                writes: Arc::new(WriteSet::new()),
                owner,
                isolation,
                based_on: BasedOn::new(),
                failed: false,
                ddl: 0,
                savepoints: Vec::new(),
            });
        }
    }

    /// 25P02 when the block has failed and `allowed` (the statement ends or rewinds the
    /// block) is false.
    pub fn check_not_failed(&self, allowed: bool) -> Result<(), PgError> {
        match &self.open {
            Some(o) if o.failed && !allowed => Err(PgError::new(
                SqlState::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            )),
            _ => Ok(()),
        }
    }

    /// 25001 when DDL may not run now: the block has pending writes.
    pub fn check_ddl_allowed(&self) -> Result<(), PgError> {
        match &self.open {
            Some(o) if !o.writes.is_empty() => Err(PgError::new(
                SqlState::ACTIVE_SQL_TRANSACTION,
                "this statement cannot run inside a transaction block that has written rows",
            )
            .with_hint("COMMIT or ROLLBACK first: DDL commits when it runs.")),
            _ => Ok(()),
        }
    }

    /// Records that DDL ran (and committed) in the block, which now reads `snapshot`.
    pub fn ddl_ran(&mut self, snapshot: Snapshot) {
        if let Some(o) = &mut self.open {
            o.ddl += 1;
            o.snapshot = Arc::new(snapshot);
        }
    }

    /// The open block's isolation level.
    pub fn isolation(&self) -> Option<Isolation> {
        self.open.as_ref().map(|o| o.isolation)
    }

    /// Sets the open block's isolation level (`SET TRANSACTION`); 25001 once it has
    /// written (PostgreSQL: before any query).
    pub fn set_isolation(&mut self, isolation: Isolation) -> Result<(), PgError> {
        match &mut self.open {
            Some(o) if !o.writes.is_empty() => Err(PgError::new(
                SqlState::ACTIVE_SQL_TRANSACTION,
                "SET TRANSACTION ISOLATION LEVEL must be called before any query",
            )),
            Some(o) => {
                o.isolation = isolation;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The open block's row-lock owner.
    pub fn owner(&self) -> Option<u64> {
        self.open.as_ref().map(|o| o.owner)
    }

    /// What a statement in the block reads and stages into; `None` outside a block.
    /// `fresh`: in READ COMMITTED, the statement's own snapshot of the latest commit.
    pub fn statement_writes(&self, fresh: Option<Snapshot>) -> Option<Arc<StatementWrites>> {
        self.open.as_ref().map(|o| {
            let read_committed = o.isolation == Isolation::ReadCommitted;
            let snapshot = match fresh {
                Some(s) if read_committed => Arc::new(s),
                _ => Arc::clone(&o.snapshot),
            };
            Arc::new(
                StatementWrites::new(snapshot, Arc::clone(&o.writes))
                    .in_block(o.owner, read_committed),
            )
        })
    }

    /// Adds a successful statement's staged writes to the block, with the versions they
    /// were based on (READ COMMITTED; the first version of a row counts).
    pub fn merge(&mut self, staged: WriteSet, based_on: BasedOn) {
        if let Some(o) = &mut self.open {
            if o.isolation == Isolation::ReadCommitted {
                for (k, v) in based_on {
                    o.based_on.entry(k).or_insert(v);
                }
            }
            if !staged.is_empty() {
                Arc::make_mut(&mut o.writes).extend(staged);
            }
        }
    }

    /// A statement failed: so has the block.
    pub fn fail(&mut self) {
        if let Some(o) = &mut self.open {
            o.failed = true;
        }
    }

    /// Closes the block for COMMIT.
    pub fn commit(&mut self) -> Commit {
        match self.open.take() {
            None => Commit::Nothing,
            Some(o) if o.failed => Commit::RolledBack(o.owner),
            Some(o) => Commit::Writes(o.snapshot, o.based_on, o.writes, o.owner),
        }
    }

    /// A COMMIT that failed leaves the block open and failed, until ROLLBACK (what the
    /// protocol's transaction status tells the client).
    pub fn commit_failed(&mut self, snapshot: Arc<Snapshot>, writes: Arc<WriteSet>, owner: u64) {
        self.open = Some(Open {
            snapshot,
            writes,
            owner,
            isolation: Isolation::RepeatableRead,
            based_on: BasedOn::new(),
            failed: true,
            ddl: 0,
            savepoints: Vec::new(),
        });
    }

    /// ROLLBACK: discards the block's writes. 0A000 if DDL ran in it (that stays).
    pub fn rollback(&mut self) -> Result<(), PgError> {
        match self.open.take() {
            Some(o) if o.ddl > 0 => Err(ddl_stays()),
            _ => Ok(()),
        }
    }

    /// SAVEPOINT `name`.
    pub fn savepoint(&mut self, name: String) -> Result<(), PgError> {
        let o = self.open.as_mut().ok_or_else(|| no_block("SAVEPOINT"))?;
        o.savepoints.push((name, Arc::clone(&o.writes), o.ddl));
        Ok(())
    }

    /// RELEASE SAVEPOINT `name`: forgets it and every later one.
    pub fn release(&mut self, name: &str) -> Result<(), PgError> {
        let o = self
            .open
            .as_mut()
            .ok_or_else(|| no_block("RELEASE SAVEPOINT"))?;
        let i = find(&o.savepoints, name)?;
        o.savepoints.truncate(i);
        Ok(())
    }

    /// ROLLBACK TO SAVEPOINT `name`: the block's writes as they were then; the block is no
    /// longer failed. 0A000 if DDL ran since (that stays).
    pub fn rollback_to(&mut self, name: &str) -> Result<(), PgError> {
        let o = self
            .open
            .as_mut()
            .ok_or_else(|| no_block("ROLLBACK TO SAVEPOINT"))?;
        let i = find(&o.savepoints, name)?;
        let (_, writes, ddl) = &o.savepoints[i];
        if o.ddl > *ddl {
            return Err(ddl_stays());
        }
        o.writes = Arc::clone(writes);
        o.savepoints.truncate(i + 1);
        o.failed = false;
        Ok(())
    }
}

fn find(savepoints: &[(String, Arc<WriteSet>, usize)], name: &str) -> Result<usize, PgError> {
    savepoints
        .iter()
        .rposition(|(n, _, _)| n == name)
        .ok_or_else(|| {
            PgError::new(
                SqlState("3B001"),
                format!("savepoint \"{name}\" does not exist"),
            )
        })
}

fn no_block(what: &str) -> PgError {
    PgError::new(
        SqlState("25P01"),
        format!("{what} can only be used in transaction blocks"),
    )
}

fn ddl_stays() -> PgError {
    PgError::not_supported(
        "rolling back DDL (it committed when it ran and stays; the block's row writes were \
         discarded)",
    )
}

impl Session {
    /// `LOCK … IN ACCESS SHARE MODE`: only in a block, only of tables and sources. Reads in
    /// the block see its snapshot, so the lock asks nothing more of them.
    pub(super) fn lock_shared(&self, tables: &[String]) -> Result<Outcome, PgError> {
        if !self.block().is_open() {
            return Err(no_block("LOCK TABLE"));
        }
        let catalog = &self.engine.catalog;
        for name in tables {
            if let Some((schema, table)) = name.split_once('.') {
                self.lock_system_relation(schema, table)?;
                continue;
            }
            let bare = name.as_str();
            if catalog.view(bare).is_some() {
                return Err(PgError::new(
                    SqlState::WRONG_OBJECT_TYPE,
                    format!("cannot lock relation \"{bare}\""),
                )
                .with_detail("This operation is not supported for materialized views."));
            }
            if catalog.table(bare).is_none()
                && catalog.source(bare).is_none()
            {
                return Err(PgError::new(
                    SqlState::UNDEFINED_TABLE,
                    format!("relation \"{name}\" does not exist"),
                ));
            }
        }
        Ok(Outcome::Command {
            tag: "LOCK TABLE",
            rows: None,
        })
    }

    /// `LOCK` of a relation in a schema of the system's: it must exist.
    fn lock_system_relation(&self, schema: &str, table: &str) -> Result<(), PgError> {
        let Some(provider) = self
            .ctx
            .catalog(crate::DATABASE_NAME)
            .and_then(|c| c.schema(schema))
        else {
            return Err(PgError::new(
                SqlState::INVALID_SCHEMA_NAME,
                format!("schema \"{schema}\" does not exist"),
            ));
        };
        if !provider.table_exist(table) {
            return Err(PgError::new(
                SqlState::UNDEFINED_TABLE,
                format!("relation \"{schema}.{table}\" does not exist"),
            ));
        }
        Ok(())
    }

    /// Transaction control (see `session/txn.rs`).
    pub(super) async fn transaction(
        &self,
        op: TransactionOp,
        savepoint: Option<String>,
        isolation: Option<Isolation>,
    ) -> Result<Outcome, PgError> {
        let name = || savepoint.clone().unwrap_or_default();
        if matches!(op, TransactionOp::Commit | TransactionOp::Rollback) {
            // Cursors live as long as their block (WITH HOLD ones past its commit).
            let committed =
                op == TransactionOp::Commit && self.block().check_not_failed(false).is_ok();
            self.end_block_cursors(committed);
        }
        match op {
            TransactionOp::Begin => {
                if !self.block().is_open() {
                    let snapshot = self
                        .engine
                        .read_snapshot()
                        .await
                        .map_err(|e| map_df_error(&e))?;
                    let isolation = isolation.unwrap_or_else(|| {
                        self.with_vars(|v| v.show("default_transaction_isolation"))
                            .ok()
                            .and_then(|(_, v)| Isolation::parse(&v))
                            .unwrap_or(Isolation::ReadCommitted)
                    });
                    let owner = self.engine.row_locks.new_owner();
                    self.block().begin(snapshot, owner, isolation);
                }
            }
            TransactionOp::Commit => {
                let commit = self.block().commit();
                match commit {
                    Commit::Nothing => {}
                    Commit::RolledBack(owner) => {
                        self.engine.row_locks.release(owner);
                        self.block_ended(false);
                        return Ok(Outcome::Transaction(TransactionOp::Rollback));
                    }
                    Commit::Writes(snapshot, based_on, writes, owner) => {
                        let done = crate::query::pending::commit_block(
                            &self.engine,
                            &snapshot,
                            &based_on,
                            &writes,
                        )
                        .await;
                        self.engine.row_locks.release(owner);
                        if let Err(e) = done {
                            self.block().commit_failed(snapshot, writes, owner);
                            return Err(e);
                        }
                    }
                }
                self.block_ended(true);
            }
            TransactionOp::Rollback => {
                if let Some(owner) = self.block().owner() {
                    self.engine.row_locks.release(owner);
                }
                self.block().rollback()?;
                self.block_ended(false);
            }
            TransactionOp::Savepoint => {
                let mut block = self.block();
                block.check_not_failed(false)?;
                block.savepoint(name())?;
            }
            TransactionOp::ReleaseSavepoint => {
                let mut block = self.block();
                block.check_not_failed(false)?;
                block.release(&name())?;
            }
            TransactionOp::RollbackToSavepoint => self.block().rollback_to(&name())?,
        }
        Ok(Outcome::Transaction(op))
    }
}
