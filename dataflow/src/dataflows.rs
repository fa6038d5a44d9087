//! Every running view's dataflow, and the epochs that run through them: in dependency order,
//! with the contents logs' fold bookkeeping, observed relations, backfills and previews.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use datafusion::error::Result;
use freshet_common::{Datum, TableId};
use freshet_state::{Snapshot, WriteBatch};

use crate::backfill::{Backfill, Input, Progress};
use crate::epoch::{EpochChanges, EpochCtx};
use crate::view::MaterializedView;

/// Most an epoch's batch reserves for its views' writes (a bulk change's epoch is not a
/// reason for the next to start large).
const RESERVE_BYTES: usize = 16 << 20;

/// Every running view, in creation (= dependency) order.
#[derive(Debug, Default)]
pub struct Dataflows {
    views: RwLock<BTreeMap<TableId, Arc<MaterializedView>>>,
    /// Odd while some view's contents log may hold changes its entries lack (see
    /// [`Dataflows::log_generation`]).
    log_generation: AtomicU64,
    /// Some aggregate cache lost groups its contents log still holds (a failed epoch, a
    /// restart): fold before the next epoch.
    must_fold: AtomicBool,
    /// Bytes and writes the last epoch's views added to its batch: the next epoch reserves
    /// as much up front (at most [`RESERVE_BYTES`]).
    last_epoch: (AtomicUsize, AtomicUsize),
    /// Relations whose changes someone outside the dataflows observes (subscriptions), with
    /// how many observers each: their epochs produce their changes even when no view reads
    /// them (see [`Dataflows::observe`]).
    observed: RwLock<std::collections::HashMap<TableId, usize>>,
}

impl Dataflows {
    pub fn insert(&self, view: Arc<MaterializedView>) {
        if view.contents_log().is_some() {
            // After a restart its log may hold changes, and its cache is empty.
            self.must_fold.store(true, Ordering::SeqCst);
            self.mark_unfolded();
        }
        self.write().insert(view.id, view);
        // Its backfill's last step may have taken the caches past their budget.
        self.trim_caches();
    }

    /// Odd while some contents log may hold changes the views' entries lack; bumped to odd
    /// before an epoch that logs commits, and to even after a fold commits. A reader whose
    /// snapshot was taken between two equal even readings sees every view's contents whole;
    /// otherwise it must fold first, under the writer lock (`Engine::read_snapshot`).
    pub fn log_generation(&self) -> u64 {
        self.log_generation.load(Ordering::SeqCst)
    }

    fn mark_unfolded(&self) {
        let g = self.log_generation.load(Ordering::SeqCst);
        if g.is_multiple_of(2) {
            self.log_generation.store(g + 1, Ordering::SeqCst);
        }
    }

    /// Whether the next epoch must wait for a fold (see [`Dataflows::fold`]).
    pub fn must_fold(&self) -> bool {
        self.must_fold.load(Ordering::SeqCst)
    }

    /// Bytes the contents logs took since their last fold (as written by this process).
    pub fn logged_bytes(&self) -> usize {
        let views = self.read();
        let logs = views.values().filter_map(|v| v.contents_log());
        logs.map(|(log, _, _)| log.bytes()).sum()
    }

    /// Whether the contents logs together passed `budget` bytes, or a cache keeping a log's
    /// groups passed its own budget.
    pub fn wants_fold(&self, budget: usize) -> bool {
        let views = self.read();
        let mut logged = 0;
        for (log, _, op) in views.values().filter_map(|v| v.contents_log()) {
            if op.cache.over_budget() {
                return true;
            }
            logged += log.bytes();
        }
        logged > budget
    }

    /// Writes into `batch` every contents log's groups (their latest values, as of
    /// `snapshot`) and deletes the logs. Call with the writer lock held, and
    /// [`Dataflows::folded`] once the batch committed.
    pub fn fold(
        &self,
        snapshot: &Snapshot,
        batch: &mut WriteBatch,
        write: &mut dyn FnMut(WriteBatch) -> Result<()>,
    ) -> Result<()> {
        for v in self.read().values() {
            if let Some((log, layout, op)) = v.contents_log() {
                log.fold(snapshot, batch, &layout.prefix, &op.prefix, write)?;
            }
        }
        Ok(())
    }

    /// A [`Dataflows::fold`] committed: contents are whole, caches may evict again.
    pub fn folded(&self) {
        for v in self.read().values() {
            if let Some((log, _, op)) = v.contents_log() {
                log.folded();
                op.cache.release();
                op.folded();
            }
        }
        self.must_fold.store(false, Ordering::SeqCst);
        let g = self.log_generation.load(Ordering::SeqCst);
        if !g.is_multiple_of(2) {
            self.log_generation.store(g + 1, Ordering::SeqCst);
        }
    }

    pub fn remove(&self, id: TableId) {
        self.write().remove(&id);
    }

    /// Whether some view's clock is `source`'s watermark (see [`MaterializedView::clock`]):
    /// its advancing alone changes results.
    pub fn clocked_by(&self, source: TableId) -> bool {
        self.read().values().any(|v| v.clock.contains(&source))
    }

    /// When the next change some view's temporal filters scheduled is due (microseconds):
    /// an epoch must run then, with rows or without.
    pub fn next_due(&self) -> Option<i64> {
        self.read().values().filter_map(|v| v.next_due()).min()
    }

    pub fn get(&self, id: TableId) -> Option<Arc<MaterializedView>> {
        self.read().get(&id).cloned()
    }

    /// The ids of the running views from `from` on, in order.
    pub fn ids_from(&self, from: TableId) -> Vec<TableId> {
        self.read().range(from..).map(|(&id, _)| id).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// What of `relation` any view reads (nested fields of struct columns included).
    pub fn selection_read(&self, relation: TableId) -> freshet_common::Selection {
        let mut out = freshet_common::Selection::default();
        for v in self.read().values() {
            v.root.selection_read(relation, &mut out);
        }
        out
    }

    /// Evicts from operator caches over their share once the caches together are over
    /// their budget (see `ops/cache.rs`); call after each epoch.
    pub fn trim_caches(&self) {
        let usage = crate::ops::cache::usage();
        if usage.used > usage.budget {
            for v in self.read().values() {
                v.root.trim_caches();
            }
        }
    }

    /// Empties every view's operator caches; call when an epoch did not commit. Groups only
    /// a contents log holds are then folded before the next epoch.
    pub fn forget_cached(&self) {
        for v in self.read().values() {
            v.root.forget_cached();
            if v.contents_log().is_some() {
                self.must_fold.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Whether any view reads `table` (directly or through views), or an observer watches
    /// it: only then do writers collect its changes.
    pub fn reads(&self, table: TableId) -> bool {
        self.is_observed(table) || self.read().values().any(|v| v.inputs.contains(&table))
    }

    /// Starts (`true`) or stops observing `relation`'s changes: from the next epoch on,
    /// [`Dataflows::process`] leaves an observed view's changes in the epoch's
    /// [`EpochChanges`], and writers collect an observed table's. Call under the writer
    /// lock, so that no epoch is half-observed.
    pub fn observe(&self, relation: TableId, on: bool) {
        let mut observed = self
            .observed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = observed.entry(relation).or_insert(0);
        if on {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                observed.remove(&relation);
            }
        }
    }

    /// Whether something observes `relation`'s changes.
    pub fn is_observed(&self, relation: TableId) -> bool {
        let observed = self
            .observed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !observed.is_empty() && observed.contains_key(&relation)
    }

    /// Runs one epoch: `changes` to base tables flow through every view that depends on them,
    /// in dependency order. All state and contents writes go into `batch`, to be committed
    /// with the base-table writes. `snapshot` must be the state the epoch starts from. The
    /// views' own changes are added to `changes`. Fails with
    /// [`needs_fold`](crate::contents_log::needs_fold) when the contents logs must be folded
    /// first: the caller drops what the run added to `batch` and `changes`, folds, and runs
    /// the epoch again.
    pub fn process(
        &self,
        changes: &mut EpochChanges,
        snapshot: &Snapshot,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        changes.stamp();
        let views: Vec<Arc<MaterializedView>> = self.read().values().cloned().collect();
        let (bytes, writes) = (batch.bytes(), batch.len());
        batch.reserve(
            self.last_epoch.0.load(Ordering::Relaxed).min(RESERVE_BYTES),
            self.last_epoch
                .1
                .load(Ordering::Relaxed)
                .min(RESERVE_BYTES / 64),
        );
        let mut changed: HashSet<TableId> = changes.changed().collect();
        let read: HashSet<TableId> = views.iter().flat_map(|v| v.inputs.clone()).collect();
        for view in views {
            if !view.reached_by(changes, &changed) {
                continue;
            }
            let mut ctx = EpochCtx::new(snapshot, batch, false);
            let wanted = read.contains(&view.id) || self.is_observed(view.id);
            let out = view.process(changes, &mut ctx, wanted)?;
            ctx.record_errors(view.id);
            if view.contents_log().is_some_and(|(log, _, _)| log.logged()) {
                // Before the epoch commits: readers from then on fold first.
                self.mark_unfolded();
            }
            if !out.is_empty() {
                changed.insert(view.id);
                changes.tables.insert(view.id, out);
            }
        }
        let added = (batch.bytes() - bytes, batch.len() - writes);
        self.last_epoch.0.store(added.0, Ordering::Relaxed);
        self.last_epoch.1.store(added.1, Ordering::Relaxed);
        Ok(())
    }

    /// What `view` would become if `changes` (to base tables) committed over `snapshot`: its
    /// changes (consolidated), from one epoch run through it and the views it reads, whose
    /// writes are thrown away ([`EpochCtx::preview`]: caches, contents logs and every other
    /// state that outlives the run stay as they were). `snapshot` must have every contents
    /// log folded (`Engine::read_snapshot`'s). This is how a transaction block reads a view
    /// over its own pending writes. Call between epochs (under the writer lock): operators
    /// share per-epoch buffers.
    pub fn preview(
        &self,
        view: TableId,
        mut changes: EpochChanges,
        snapshot: &Snapshot,
    ) -> Result<Vec<(Vec<Datum>, i64)>> {
        changes.stamp();
        let views = self.read().clone();
        // The view and every view it reads, directly or through others.
        let mut needed: HashSet<TableId> = HashSet::new();
        let mut todo = vec![view];
        while let Some(id) = todo.pop() {
            if let Some(v) = views.get(&id) {
                if needed.insert(id) {
                    todo.extend(v.inputs.iter().copied());
                }
            }
        }
        let mut batch = WriteBatch::default();
        let mut changed: HashSet<TableId> = changes.changed().collect();
        for (id, v) in &views {
            if !needed.contains(id) || !v.reached_by(&changes, &changed) {
                continue;
            }
            let mut ctx = EpochCtx::new(snapshot, &mut batch, false);
            ctx.preview = true;
            let out = v.process(&changes, &mut ctx, true)?;
            if !out.is_empty() {
                changed.insert(*id);
                changes.tables.insert(*id, out);
            }
        }
        Ok(changes.tables.remove(&view).unwrap_or_default())
    }

    /// Fills a new view from the committed state in `snapshot`, in steps of bounded size
    /// (see the `backfill` module): `flush` writes a step's batch to the store and returns a
    /// snapshot holding it; the last step's writes stay in `batch`. Inputs `changes` already
    /// holds (sources, whose rows the caller re-reads) are taken as given; tables and views
    /// are read from `snapshot`; `progress` counts its steps and rows. Returns how many steps
    /// it took.
    pub fn backfill(
        &self,
        view: &MaterializedView,
        snapshot: &Snapshot,
        batch: &mut WriteBatch,
        changes: EpochChanges,
        flush: &mut dyn FnMut(WriteBatch) -> Result<Snapshot>,
        progress: &Progress,
    ) -> Result<usize> {
        let inputs: Vec<Input> = view
            .inputs
            .iter()
            .filter(|i| !changes.appends.contains_key(i) && !changes.tables.contains_key(i))
            .map(|&input| match self.get(input) {
                Some(v) => Input::View(input, v.contents_prefix()),
                None => Input::Table(input),
            })
            .collect();
        // Between steps, caches give back what the step took past the budget.
        let mut step = |written: WriteBatch| {
            self.trim_caches();
            view.root.trim_caches();
            flush(written)
        };
        Backfill::new(view, snapshot, batch, &mut step)
            .with_progress(progress)
            .run(changes, &inputs)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<TableId, Arc<MaterializedView>>> {
        self.views
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<TableId, Arc<MaterializedView>>> {
        self.views
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
