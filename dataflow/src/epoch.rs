//! One epoch: the changes of one commit, read against the state before it, written into the
//! commit's write batch.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use freshet_common::{Datum, TableId};
use freshet_state::{Snapshot, WriteBatch};

/// The base-relation changes an epoch applies, by table or view id.
#[derive(Debug, Default, Clone)]
pub struct EpochChanges {
    /// (row, weight) per changed table.
    pub tables: HashMap<TableId, Vec<(Vec<Datum>, i64)>>,
    /// Rows appended to append-only relations (sources), as Arrow batches in the relation's
    /// full schema; each row counts once.
    pub appends: HashMap<TableId, Vec<RecordBatch>>,
    /// The watermark (microseconds) of each source whose event time this epoch carries: no
    /// row of a later epoch has an event time below it (see the `event_time` module).
    pub watermarks: HashMap<TableId, i64>,
    /// The epoch's time (microseconds since 1970, UTC): `now()` for its temporal filters.
    /// Set when the epoch starts ([`EpochChanges::stamp`]).
    pub time: Option<i64>,
}

impl EpochChanges {
    pub fn is_empty(&self) -> bool {
        self.watermarks.is_empty()
            && self.tables.values().all(Vec::is_empty)
            && self.appends.keys().all(|r| !self.has_appends(*r))
    }

    /// Gives the epoch its time, the wall clock, unless it has one.
    pub fn stamp(&mut self) -> i64 {
        *self
            .time
            .get_or_insert_with(wall_clock)
    }

    /// The epoch's time: its stamp, or the wall clock for an epoch never stamped.
    pub fn now(&self) -> i64 {
        self.time
            .unwrap_or_else(wall_clock)
    }

    /// Whether `relation` changes in this epoch.
    pub fn changes(&self, relation: TableId) -> bool {
        self.tables.get(&relation).is_some_and(|r| !r.is_empty()) || self.has_appends(relation)
    }

    fn has_appends(&self, relation: TableId) -> bool {
        self.appends
            .get(&relation)
            .is_some_and(|b| b.iter().any(|b| b.num_rows() > 0))
    }

    /// The relations that change in this epoch.
    pub fn changed(&self) -> impl Iterator<Item = TableId> + '_ {
        self.tables
            .keys()
            .chain(self.appends.keys())
            .copied()
            .filter(|r| self.changes(*r))
    }

    /// Records `rows` changing by `weight` each in `table`.
    pub fn add(&mut self, table: TableId, rows: impl IntoIterator<Item = Vec<Datum>>, weight: i64) {
        self.tables
            .entry(table)
            .or_default()
            .extend(rows.into_iter().map(|r| (r, weight)));
    }
}

/// The wall clock in microseconds since 1970 (UTC).
pub fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// What operators see while processing an epoch.
pub struct EpochCtx<'a> {
    /// The committed state before this epoch: every read goes here.
    pub snapshot: &'a Snapshot,
    /// This epoch's writes: committed atomically with the base-table changes.
    pub batch: &'a mut WriteBatch,
    /// True for the backfill epoch of a new view (constant relations emit their rows, a global
    /// aggregate emits its empty-input row).
    pub initial: bool,
    /// True for every epoch of a new view's backfill (see the `backfill` module): contents
    /// are written in place, not through a contents log, and MIN/MAX arrivals are not staged.
    pub backfill: bool,
    /// Input rows the view could not evaluate, taken out of its epoch (see
    /// `ops/bad_rows.rs`); the caller records them.
    pub errors: Vec<RowError>,
    /// A preview ([`crate::Dataflows::preview`]): the epoch computes what it would change
    /// and its batch is thrown away, so nothing that outlives it may change — operator caches
    /// are neither read nor written (the snapshot may be older than what they hold), contents
    /// logs take nothing, staging flags stay as they are. The snapshot has every contents
    /// log folded.
    pub preview: bool,
}

impl EpochCtx<'_> {
    /// Writes the rows view `view` could not evaluate this epoch into the epoch's batch,
    /// where `freshet_internal.view_errors` reads them.
    pub(crate) fn record_errors(&mut self, view: TableId) {
        use freshet_state::changelog::{encode_view_error, view_error_key};
        let sequence = self.snapshot.sequence();
        for (n, e) in std::mem::take(&mut self.errors).into_iter().enumerate() {
            self.batch.put(
                view_error_key(view, sequence, n),
                encode_view_error(e.weight, &e.message, &e.row),
            );
        }
    }
}

impl EpochCtx<'_> {
    /// The i64 (big-endian) the committed state holds under `key`: the last bound or time an
    /// operator applied.
    pub(crate) fn stored_i64(&self, key: &[u8]) -> datafusion::error::Result<Option<i64>> {
        match self.snapshot.get(key).map_err(state_err)? {
            None => Ok(None),
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(|b| Some(i64::from_be_bytes(b)))
                .map_err(|_| {
                    DataFusionError::Internal("corrupt stored bound of an operator".into())
                }),
        }
    }

    /// Deletes every stored entry under `prefix` from `lower` up to `upper` (exclusive),
    /// handing each to `f` first; read a page at a time. How operators drop state a bound
    /// or a time has passed (closed windows, due changes, expired join rows).
    pub(crate) fn take_range(
        &mut self,
        prefix: &[u8],
        mut lower: Vec<u8>,
        upper: &[u8],
        mut f: impl FnMut(&mut Self, &[u8], &[u8]) -> datafusion::error::Result<()>,
    ) -> datafusion::error::Result<()> {
        const PAGE: usize = 1024;
        loop {
            let page = self
                .snapshot
                .scan(prefix, &lower, Some(upper), PAGE)
                .map_err(state_err)?;
            for (k, v) in &page {
                self.batch.delete(k);
                f(self, k, v)?;
            }
            match page.last() {
                Some((k, _)) if page.len() == PAGE => lower = freshet_state::next_key(k),
                _ => return Ok(()),
            }
        }
    }
}

impl<'a> EpochCtx<'a> {
    /// An epoch that commits: reads `snapshot`, writes into `batch`. An `initial` epoch is
    /// also a backfill's.
    pub fn new(snapshot: &'a Snapshot, batch: &'a mut WriteBatch, initial: bool) -> Self {
        EpochCtx {
            snapshot,
            batch,
            initial,
            backfill: initial,
            errors: Vec::new(),
            preview: false,
        }
    }
}

/// One input row a view could not evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub message: String,
    /// The row's values as text, cut at a bounded length (see `ops::bad_rows`).
    pub row: String,
    /// Its weight in the epoch (negative: a retraction).
    pub weight: i64,
}

/// A state store error as DataFusion carries ours (the server unwraps it again).
pub fn state_err(e: freshet_state::Error) -> DataFusionError {
    DataFusionError::External(Box::new(freshet_common::PgError::from(e)))
}
