//! A session's transaction block: `BEGIN` … `COMMIT` / `ROLLBACK`, savepoints, the failed
//! state.
//!
//! A block reads one snapshot, taken at `BEGIN`, with its own pending writes laid over it
//! (`query/pending.rs`); its writes reach the store only at `COMMIT`, as one epoch, or never.
//! An error inside a block fails it: every statement but `ROLLBACK` (or `ROLLBACK TO
//! SAVEPOINT`) then gets 25P02, and `COMMIT` rolls it back. DDL is not transactional: in a block
//! that has not written it runs and commits at once (the block then reads a new snapshot), and a
//! later `ROLLBACK` across it fails with 0A000 saying that it stays; in a block that has
//! written rows it is refused with 25001.

use std::sync::Arc;

use freshet_common::{PgError, SqlState};
use freshet_state::Snapshot;

use freshet_sql::error::map_df_error;
use freshet_sql::TransactionOp;

use super::{Outcome, Session};
use crate::query::pending::{StatementWrites, WriteSet};

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
    failed: bool,
    /// DDL statements run in the block so far (each committed when it ran).
    ddl: usize,
    /// Savepoints, innermost last: name, the writes and DDL count when it was set.
    savepoints: Vec<(String, Arc<WriteSet>, usize)>,
}

/// What COMMIT must do.
pub(super) enum Commit {
    /// Commit these writes read over this snapshot.
    Writes(Arc<Snapshot>, Arc<WriteSet>),
    /// The block had failed: it is rolled back.
    RolledBack,
    /// No block was open.
    Nothing,
}

impl Block {
    /// Whether a block is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Opens a block reading `snapshot` (`BEGIN` inside a block keeps the open one).
    pub fn begin(&mut self, snapshot: Snapshot) {
        if self.open.is_none() {
            self.open = Some(Open {
                snapshot: Arc::new(snapshot),
                writes: Arc::new(WriteSet::new()),
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

    /// What a statement in the block reads and stages into; `None` outside a block.
    pub fn statement_writes(&self) -> Option<Arc<StatementWrites>> {
        self.open.as_ref().map(|o| {
            Arc::new(StatementWrites::new(
                Arc::clone(&o.snapshot),
                Arc::clone(&o.writes),
            ))
        })
    }

    /// Adds a successful statement's staged writes to the block.
    pub fn merge(&mut self, staged: WriteSet) {
        if let Some(o) = &mut self.open {
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
            Some(o) if o.failed => Commit::RolledBack,
            Some(o) => Commit::Writes(o.snapshot, o.writes),
        }
    }

    /// A COMMIT that failed leaves the block open and failed, until ROLLBACK (what the
    /// protocol's transaction status tells the client).
    pub fn commit_failed(&mut self, snapshot: Arc<Snapshot>, writes: Arc<WriteSet>) {
        self.open = Some(Open {
            snapshot,
            writes,
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
    /// Transaction control (see `session/txn.rs`).
    pub(super) async fn transaction(
        &self,
        op: TransactionOp,
        savepoint: Option<String>,
    ) -> Result<Outcome, PgError> {
        let name = || savepoint.clone().unwrap_or_default();
        if matches!(op, TransactionOp::Commit | TransactionOp::Rollback) {
            // Cursors live as long as their block.
            self.close_cursors();
        }
        match op {
            TransactionOp::Begin => {
                if !self.block().is_open() {
                    let snapshot = self
                        .engine
                        .read_snapshot()
                        .await
                        .map_err(|e| map_df_error(&e))?;
                    self.block().begin(snapshot);
                }
            }
            TransactionOp::Commit => {
                let commit = self.block().commit();
                match commit {
                    Commit::Nothing => {}
                    Commit::RolledBack => {
                        self.block_ended(false);
                        return Ok(Outcome::Transaction(TransactionOp::Rollback));
                    }
                    Commit::Writes(snapshot, writes) => {
                        if let Err(e) =
                            crate::query::pending::commit_block(&self.engine, &snapshot, &writes)
                                .await
                        {
                            self.block().commit_failed(snapshot, writes);
                            return Err(e);
                        }
                    }
                }
                self.block_ended(true);
            }
            TransactionOp::Rollback => {
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
