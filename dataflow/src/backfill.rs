//! A new view's backfill: every input's current rows flow through the view's operators in
//! steps of bounded size, so what a backfill holds in memory is bounded by the step, not by
//! the size of what it reads.
//!
//! Each step is an epoch of its own over the state the steps before it wrote: those writes
//! go to the store between steps (through the caller's `flush`), and the last step's stay in
//! the caller's batch, which commits them with the view's catalog entry. Until then they lie
//! under an id no catalog entry names: after a failure the caller deletes them, after a crash
//! the next start does (`freshet_catalog::view_ranges_from`).
//!
//! Incremental maintenance makes the steps' sum the whole: feeding a relation's rows in
//! parts yields the same state and contents as feeding them at once. The first step is the
//! view's initial epoch (constant relations emit their rows, a global aggregate its row over
//! empty input); every step writes contents in place, never through a contents log.

use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::error::Result;
use freshet_common::{Datum, TableId};
use freshet_state::{next_key, table_prefix, Snapshot, WriteBatch};

use crate::columnar::ColumnsBuilder;
use crate::epoch::{state_err, EpochChanges, EpochCtx};
use crate::view::{decode_contents, MaterializedView};

/// Bytes of input a step carries at most by default (stored encoding for rows read from the
/// store, an estimate of the decoded size for rows given, Arrow's size for appends).
pub const STEP_BYTES: usize = 16 << 20;

/// Bytes of input a step carries: [`STEP_BYTES`], or less under a small memory budget (an
/// eighth of the operator caches' share of it: what a step holds decoded, and writes to the
/// memtables at once, is a few times its input).
fn step_bytes() -> usize {
    STEP_BYTES
        .min(crate::ops::cache::usage().budget / 8)
        .max(1 << 20)
}

/// Entries read from the store per page.
const PAGE: usize = 4096;

/// How far a backfill is, for whoever watches it (`freshet_internal.backfills`).
#[derive(Debug, Default)]
pub struct Progress {
    /// Steps done.
    pub steps: AtomicU64,
    /// Input rows fed so far.
    pub rows: AtomicU64,
}

/// Where an input's rows come from.
pub enum Input {
    /// A table: its rows in the snapshot.
    Table(TableId),
    /// A view: its contents in the snapshot.
    View(TableId, Vec<u8>),
}

/// Items gathered for one step, with their size.
struct Part<T> {
    items: Vec<T>,
    bytes: usize,
}

impl<T> Default for Part<T> {
    fn default() -> Self {
        Part {
            items: Vec::new(),
            bytes: 0,
        }
    }
}

impl<T> Part<T> {
    /// Adds `item` of `size` bytes; returns the items gathered once they reach `limit`.
    fn add(&mut self, item: T, size: usize, limit: usize) -> Option<Vec<T>> {
        self.items.push(item);
        self.bytes += size;
        (self.bytes >= limit).then(|| {
            self.bytes = 0;
            std::mem::take(&mut self.items)
        })
    }
}

/// One backfill in progress.
pub struct Backfill<'a> {
    view: &'a MaterializedView,
    /// Where inputs are read: the committed state when the backfill began.
    snapshot: &'a Snapshot,
    /// The state the steps so far wrote (after the first flush).
    latest: Option<Snapshot>,
    batch: &'a mut WriteBatch,
    flush: &'a mut dyn FnMut(WriteBatch) -> Result<Snapshot>,
    step_bytes: usize,
    steps: usize,
    progress: Option<&'a Progress>,
}

impl<'a> Backfill<'a> {
    /// A backfill of `view` reading `snapshot`, leaving its last step's writes in `batch`;
    /// `flush` writes a step's batch to the store and returns a snapshot that holds it.
    pub fn new(
        view: &'a MaterializedView,
        snapshot: &'a Snapshot,
        batch: &'a mut WriteBatch,
        flush: &'a mut dyn FnMut(WriteBatch) -> Result<Snapshot>,
    ) -> Self {
        Backfill {
            view,
            snapshot,
            latest: None,
            batch,
            flush,
            step_bytes: step_bytes(),
            steps: 0,
            progress: None,
        }
    }

    /// Counts its steps and rows in `progress`.
    pub fn with_progress(mut self, progress: &'a Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Steps of at most `bytes` of input (tests use tiny ones).
    pub fn with_step_bytes(mut self, bytes: usize) -> Self {
        self.step_bytes = bytes.max(1);
        self
    }

    /// Runs it: `given` first (rows the caller read, such as a source's replay), then every
    /// input of `inputs` from the snapshot. Returns how many steps it took.
    pub fn run(mut self, given: EpochChanges, inputs: &[Input]) -> Result<usize> {
        for (id, rows) in given.tables {
            let mut part = Part::default();
            for (row, w) in rows {
                let size = approx_size(&row);
                if let Some(full) = part.add((row, w), size, self.step_bytes) {
                    self.step_rows(id, full)?;
                }
            }
            self.step_rows(id, part.items)?;
        }
        for (id, batches) in given.appends {
            let mut part = Part::default();
            for b in batches {
                let size = b.get_array_memory_size();
                if let Some(full) = part.add(b, size, self.step_bytes) {
                    self.step_appends(id, full)?;
                }
            }
            self.step_appends(id, part.items)?;
        }
        for input in inputs {
            self.read(input)?;
        }
        if self.steps == 0 {
            // Nothing to read: the initial epoch still runs (constants, global aggregates).
            self.step(&EpochChanges::default())?;
        }
        Ok(self.steps)
    }

    /// Feeds `input`'s rows from the snapshot, a step at a time.
    fn read(&mut self, input: &Input) -> Result<()> {
        let (id, prefix) = match input {
            Input::Table(id) => (*id, table_prefix(*id)),
            Input::View(id, prefix) => (*id, prefix.clone()),
        };
        // A table's rows go straight into the columns the view's scans take, and flow as
        // appends (each row counts once); a view's contents carry counts.
        let mut columns = matches!(input, Input::Table(_))
            .then(|| ColumnsBuilder::new(&self.view.root.scanned_fields(id)));
        let mut bytes = 0;
        let mut lower = prefix.clone();
        let mut part = Part::default();
        loop {
            let entries = self
                .snapshot
                .scan(&prefix, &lower, None, PAGE)
                .map_err(state_err)?;
            if let Some((last, _)) = entries.last() {
                lower = next_key(last);
            }
            for (_, v) in &entries {
                if let Some(columns) = &mut columns {
                    columns.push(v)?;
                    bytes += v.len();
                    if bytes >= self.step_bytes {
                        bytes = 0;
                        let batch = columns.finish()?;
                        self.step_appends(id, vec![batch])?;
                    }
                } else {
                    // A view's entry: its row and count.
                    let (n, row) = decode_contents(v)?;
                    if let Some(full) = part.add((row, n), v.len(), self.step_bytes) {
                        self.step_rows(id, full)?;
                    }
                }
            }
            if entries.len() < PAGE {
                if let Some(columns) = columns.as_mut().filter(|c| !c.is_empty()) {
                    let batch = columns.finish()?;
                    self.step_appends(id, vec![batch])?;
                }
                return self.step_rows(id, part.items);
            }
        }
    }

    fn step_rows(&mut self, id: TableId, rows: Vec<(Vec<Datum>, i64)>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut changes = EpochChanges::default();
        changes.tables.insert(id, rows);
        self.step(&changes)
    }

    fn step_appends(&mut self, id: TableId, batches: Vec<RecordBatch>) -> Result<()> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        let mut changes = EpochChanges::default();
        changes.appends.insert(id, batches);
        self.step(&changes)
    }

    /// One step: the previous step's writes go to the store first, so this one reads them.
    fn step(&mut self, changes: &EpochChanges) -> Result<()> {
        if self.steps > 0 {
            let written = std::mem::take(self.batch);
            self.latest = Some((self.flush)(written)?);
        }
        let snapshot = self.latest.as_ref().unwrap_or(self.snapshot);
        let mut ctx = EpochCtx::new(snapshot, self.batch, self.steps == 0);
        ctx.backfill = true;
        self.view.process(changes, &mut ctx, false)?;
        ctx.record_errors(self.view.id);
        self.steps += 1;
        if let Some(p) = self.progress {
            let rows: usize = changes.tables.values().map(Vec::len).sum::<usize>()
                + changes
                    .appends
                    .values()
                    .flatten()
                    .map(RecordBatch::num_rows)
                    .sum::<usize>();
            p.rows.fetch_add(rows as u64, Ordering::Relaxed);
            p.steps.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// About how many bytes `row` takes decoded.
fn approx_size(row: &[Datum]) -> usize {
    row.iter()
        .map(|d| {
            std::mem::size_of::<Datum>()
                + match d {
                    Datum::Text(s) => s.len(),
                    Datum::Bytes(b) => b.len(),
                    Datum::List(l) => approx_size(l),
                    _ => 0,
                }
        })
        .sum()
}
