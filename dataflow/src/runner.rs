//! The epoch runner: the one owner of the commit protocol of an epoch — run its changes
//! through every view, fold the contents logs and run it again when an aggregate must read
//! staged values, write the base-table and view changes in one batch, then hand the
//! committed epoch to the post-commit hook (subscribers, LISTEN, changelogs, sinks).
//!
//! Large epochs run on a thread of their own, so they never hold a worker of the async
//! runtime that serves connections. Writers submit an epoch while holding their writer lock
//! and await its outcome; [`EpochRunner::idle`] lets the next writer wait for an epoch whose
//! submitter went away before it finished. A small epoch (at most [`INLINE_ROWS`] changed
//! input rows: a point UPDATE, a short transaction) runs on the submitter's thread when the
//! runner's thread is idle: handing it over and back costs two thread wake-ups, which
//! measured as a quarter of a TPC-B transaction's server CPU, more than the epoch itself.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};

use datafusion::error::DataFusionError;
use freshet_state::{Snapshot, Store, WriteBatch};
use futures::channel::oneshot;
use tokio::sync::watch;

use crate::contents_log::is_needs_fold;
use crate::epoch::state_err;
use crate::{Dataflows, EpochChanges};

/// What the runner calls around each commit, besides the views.
pub trait CommitHook: Send + Sync {
    /// Adds what epoch `epoch` records besides the views' changes (changelogs), in the
    /// epoch's own write batch.
    fn stage(&self, epoch: u64, changes: &EpochChanges, batch: &mut WriteBatch);
    /// Epoch `epoch` committed: readers see it. Called in commit order.
    fn committed(&self, epoch: u64, changes: &EpochChanges);
}

/// How an epoch reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced before the commit returns.
    Synced,
    /// Written without waiting for the disk: the submitter releases its writer lock, then
    /// makes it durable with [`Store::sync_wal`], sharing the fsync with concurrent writers.
    Grouped,
}

/// Why an epoch did not commit.
#[derive(Debug)]
pub enum EpochError {
    /// A view's operators failed.
    Dataflow(DataFusionError),
    /// The store refused the epoch's writes.
    Store(freshet_state::Error),
    /// The runner panicked on this epoch, or has stopped.
    Runner(String),
}

impl std::fmt::Display for EpochError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EpochError::Dataflow(e) => write!(f, "{e}"),
            EpochError::Store(e) => write!(f, "{e}"),
            EpochError::Runner(e) => write!(f, "epoch runner: {e}"),
        }
    }
}

impl std::error::Error for EpochError {}

impl From<EpochError> for DataFusionError {
    fn from(e: EpochError) -> Self {
        match e {
            EpochError::Dataflow(e) => e,
            EpochError::Store(e) => state_err(e),
            EpochError::Runner(e) => DataFusionError::Execution(format!("epoch runner: {e}")),
        }
    }
}

/// Why the contents logs were folded (counted in `freshet_internal.metrics`).
#[derive(Debug, Clone, Copy)]
pub enum FoldReason {
    /// A log or the cache keeping its groups passed its budget.
    OverBudget = 0,
    /// A statement or a new view's backfill reads view contents.
    ForReader = 1,
    /// Caches lost groups only a log held (a failed epoch, a restart).
    AfterLoss = 2,
    /// An epoch retracts MIN/MAX values of an aggregate whose arrivals a log stages.
    ForRetraction = 3,
}

/// Runs epochs on its own thread; see the module documentation.
pub struct EpochRunner {
    core: Arc<Core>,
    jobs: mpsc::Sender<Job>,
    /// Epochs submitted so far; [`Core::finished`] counts those done.
    submitted: AtomicU64,
}

struct Core {
    store: Store,
    dataflows: Arc<Dataflows>,
    hook: OnceLock<Arc<dyn CommitHook>>,
    /// Contents log budget of all aggregate views together, in bytes (0: no logs).
    contents_log_bytes: usize,
    /// The last committed epoch's number.
    epoch: AtomicU64,
    /// Folds so far, by [`FoldReason`] as index.
    folds: [AtomicU64; 4],
    /// Epochs finished (committed or not), watched by [`EpochRunner::idle`].
    finished: watch::Sender<u64>,
}

/// Epochs whose input changes at most this many rows run on the submitter's thread.
pub const INLINE_ROWS: usize = 256;

struct Job {
    batch: WriteBatch,
    changes: EpochChanges,
    durability: Durability,
    reply: oneshot::Sender<Result<EpochChanges, EpochError>>,
}

impl std::fmt::Debug for EpochRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochRunner")
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl EpochRunner {
    /// Starts the runner's thread. `epoch`: the last committed epoch's number.
    pub fn start(
        store: Store,
        dataflows: Arc<Dataflows>,
        epoch: u64,
        contents_log_bytes: usize,
    ) -> std::io::Result<EpochRunner> {
        let core = Arc::new(Core {
            store,
            dataflows,
            hook: OnceLock::new(),
            contents_log_bytes,
            epoch: AtomicU64::new(epoch),
            folds: Default::default(),
            finished: watch::Sender::new(0),
        });
        let (jobs, rx) = mpsc::channel::<Job>();
        let c = Arc::clone(&core);
        std::thread::Builder::new()
            .name("freshet-epochs".into())
            .spawn(move || {
                for job in rx {
                    let result = c.run_contained(job.batch, job.changes, job.durability);
                    c.finished.send_modify(|n| *n += 1);
                    let _ = job.reply.send(result);
                }
            })?;
        Ok(EpochRunner {
            core,
            jobs,
            submitted: AtomicU64::new(0),
        })
    }

    /// Sets the post-commit hook, once (before the first epoch).
    pub fn set_hook(&self, hook: Arc<dyn CommitHook>) {
        let _ = self.core.hook.set(hook);
    }

    /// The last committed epoch's number.
    pub fn epoch(&self) -> u64 {
        self.core.epoch.load(Ordering::SeqCst)
    }

    /// Commits one epoch on the runner's thread: the base-table writes in `batch` plus, in
    /// the same write batch, the state and contents changes of every view `changes`
    /// reaches. Submit under the writer lock, so the epoch reads the latest committed state.
    /// Returns the epoch's changes with the views' own added.
    pub async fn commit(
        &self,
        batch: WriteBatch,
        changes: EpochChanges,
        durability: Durability,
    ) -> Result<EpochChanges, EpochError> {
        let idle = self.submitted.load(Ordering::SeqCst) == *self.core.finished.borrow();
        if idle && input_rows(&changes) <= INLINE_ROWS {
            // Synchronous: a cancelled submitter cannot leave it half done.
            return self.core.run_contained(batch, changes, durability);
        }
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            batch,
            changes,
            durability,
            reply,
        };
        self.submitted.fetch_add(1, Ordering::SeqCst);
        if self.jobs.send(job).is_err() {
            self.core.finished.send_modify(|n| *n += 1);
            return Err(EpochError::Runner("stopped".into()));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(EpochError::Runner("stopped".into())))
    }

    /// [`EpochRunner::commit`] on the caller's thread, for callers outside an async runtime
    /// (tests, tools). Must not overlap epochs submitted to the thread.
    pub fn commit_here(
        &self,
        batch: WriteBatch,
        changes: EpochChanges,
        durability: Durability,
    ) -> Result<EpochChanges, EpochError> {
        self.core.run_contained(batch, changes, durability)
    }

    /// Waits until every submitted epoch finished: a writer that takes the writer lock calls
    /// it first, since a submitter that went away (its task was cancelled) released the lock
    /// before its epoch was done.
    pub async fn idle(&self) {
        let submitted = self.submitted.load(Ordering::SeqCst);
        let mut finished = self.core.finished.subscribe();
        // The sender lives as long as the runner.
        let _ = finished.wait_for(|n| *n >= submitted).await;
    }

    /// Folds every view's contents log into its entries (see `contents_log.rs`), on the
    /// caller's thread, under the writer lock, in write batches of its own. Unsynced: a fold
    /// only rewrites what the logs already hold durably, and a later synced commit syncs it.
    pub fn fold(&self, why: FoldReason) -> Result<(), EpochError> {
        self.core.fold(why)
    }

    /// Folds so far for `why`.
    pub fn folds(&self, why: FoldReason) -> u64 {
        self.core.folds[why as usize].load(Ordering::Relaxed)
    }

    /// A snapshot of the latest commit with every view's contents whole: folds first when a
    /// contents log may hold changes. Under the writer lock.
    pub fn fold_for_read(&self) -> Result<Snapshot, EpochError> {
        let flows = &self.core.dataflows;
        if !flows.log_generation().is_multiple_of(2) {
            let why = if flows.must_fold() {
                FoldReason::AfterLoss
            } else {
                FoldReason::ForReader
            };
            self.core.fold(why)?;
        }
        Ok(self.core.store.snapshot())
    }
}

/// The input rows an epoch changes (tables' rows and sources' appended rows).
fn input_rows(changes: &EpochChanges) -> usize {
    let tables: usize = changes.tables.values().map(Vec::len).sum();
    let appends: usize = changes.appends.values().flatten().map(|b| b.num_rows()).sum();
    tables + appends
}

impl Core {
    /// [`Core::run`], with a panic contained: the epoch does not commit, caches written
    /// through for it are forgotten, and the runner goes on with the next.
    fn run_contained(
        &self,
        batch: WriteBatch,
        changes: EpochChanges,
        durability: Durability,
    ) -> Result<EpochChanges, EpochError> {
        match catch_unwind(AssertUnwindSafe(|| self.run(batch, changes, durability))) {
            Ok(r) => r,
            Err(panic) => {
                self.dataflows.forget_cached();
                let msg = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("panic")
                    .to_owned();
                tracing::error!(error = %msg, "an epoch panicked; it did not commit");
                Err(EpochError::Runner(format!("the epoch failed: {msg}")))
            }
        }
    }

    fn run(
        &self,
        mut batch: WriteBatch,
        mut changes: EpochChanges,
        durability: Durability,
    ) -> Result<EpochChanges, EpochError> {
        let flows = &self.dataflows;
        if flows.must_fold() {
            self.fold(FoldReason::AfterLoss)?;
        }
        let epoch = self.epoch.load(Ordering::SeqCst) + 1;
        changes.stamp();
        let result = self
            .process(&mut batch, &mut changes)
            .and_then(|()| {
                batch.put(freshet_state::changelog::epoch_key(), epoch.to_be_bytes());
                if let Some(hook) = self.hook.get() {
                    hook.stage(epoch, &changes, &mut batch);
                }
                match durability {
                    Durability::Synced => self.store.write(batch),
                    Durability::Grouped => self.store.write_grouped(batch),
                }
                .map_err(EpochError::Store)
            });
        if let Err(e) = result {
            // Operator caches were written through for an epoch that did not commit.
            flows.forget_cached();
            return Err(e);
        }
        self.epoch.store(epoch, Ordering::SeqCst);
        flows.trim_caches();
        if let Some(hook) = self.hook.get() {
            hook.committed(epoch, &changes);
        }
        if flows.wants_fold(self.contents_log_bytes) {
            // The epoch committed; a fold that fails leaves the logs and held caches as they
            // were, and is tried again after the next epoch.
            if let Err(e) = self.fold(FoldReason::OverBudget) {
                tracing::warn!(error = %e, "folding contents logs failed");
            }
        }
        Ok(changes)
    }

    /// Runs `changes` through the views into `batch`; when an aggregate must read values
    /// staged in a contents log, folds and runs the epoch again from its base-table writes
    /// (caches were written through for the abandoned run).
    fn process(&self, batch: &mut WriteBatch, changes: &mut EpochChanges) -> Result<(), EpochError> {
        let flows = &self.dataflows;
        let due = flows.next_due().is_some_and(|t| t <= changes.now());
        if (changes.is_empty() && !due) || flows.is_empty() {
            return Ok(());
        }
        let (bytes, writes) = (batch.bytes(), batch.len());
        let inputs: Vec<_> = changes.tables.keys().copied().collect();
        let snapshot = self.store.snapshot();
        match flows.process(changes, &snapshot, batch) {
            Err(e) if is_needs_fold(&e) => {
                batch.truncate(bytes, writes);
                changes.tables.retain(|t, _| inputs.contains(t));
                flows.forget_cached();
                self.fold(FoldReason::ForRetraction)?;
                let snapshot = self.store.snapshot();
                flows.process(changes, &snapshot, batch)
            }
            r => r,
        }
        .map_err(EpochError::Dataflow)
    }

    fn fold(&self, why: FoldReason) -> Result<(), EpochError> {
        let flows = &self.dataflows;
        let snapshot = self.store.snapshot();
        let logged = flows.logged_bytes();
        let mut batch = WriteBatch::default();
        let store = &self.store;
        flows
            .fold(&snapshot, &mut batch, &mut |run| {
                store.write_unsynced(run).map_err(state_err)
            })
            .map_err(EpochError::Dataflow)?;
        if !batch.is_empty() {
            store.write_unsynced(batch).map_err(EpochError::Store)?;
            // The logs' memtable now holds the folded entries with their deletions; once
            // they fill more than its headroom over the budget, flush it, which drops both
            // (otherwise the epochs logged until it fills would reach a file). Small folds,
            // for readers, leave theirs to a later flush: one per fold would start a file
            // and a write-ahead log file per statement.
            if logged > self.contents_log_bytes / 4 {
                if let Err(e) = store.flush_contents_log() {
                    // The next epochs' entries then reach a file: slower, not wrong.
                    tracing::warn!(error = %e, "flushing the folded contents logs failed");
                }
            }
        }
        flows.folded();
        self.folds[why as usize].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
