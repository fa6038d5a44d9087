//! One epoch: the changes of one commit, read against the state before it, written into the
//! commit's write batch.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use freshet_common::{Datum, TableId};
use freshet_state::{Snapshot, WriteBatch};

/// The base-relation changes an epoch applies, by table or view id.
#[derive(Debug, Default)]
pub struct EpochChanges {
    /// (row, weight) per changed table.
    pub tables: HashMap<TableId, Vec<(Vec<Datum>, i64)>>,
    /// Rows appended to append-only relations (sources), as Arrow batches in the relation's
    /// full schema; each row counts once.
    pub appends: HashMap<TableId, Vec<RecordBatch>>,
}

impl EpochChanges {
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(Vec::is_empty)
            && self.appends.keys().all(|r| !self.has_appends(*r))
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

/// The state and contents writes of one epoch, gathered so they reach RocksDB in key order:
/// its memtable inserts each key starting from where the previous one went, so sorted
/// inserts cost far fewer skip-list steps than scattered ones. Keys and values live in one
/// buffer; a later write of a key wins over an earlier one, as in a write batch.
#[derive(Debug, Default)]
pub struct EpochWrites {
    data: Vec<u8>,
    ops: Vec<WriteOp>,
}

#[derive(Debug, Clone, Copy)]
struct WriteOp {
    kind: WriteKind,
    key: (usize, usize),
    value: (usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Put,
    Delete,
    Merge,
}

impl EpochWrites {
    fn push(&mut self, kind: WriteKind, key: &[u8], value: &[u8]) {
        let k = self.data.len();
        self.data.extend_from_slice(key);
        let v = self.data.len();
        self.data.extend_from_slice(value);
        self.ops.push(WriteOp {
            kind,
            key: (k, key.len()),
            value: (v, value.len()),
        });
    }

    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.push(WriteKind::Put, key.as_ref(), value.as_ref());
    }

    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.push(WriteKind::Delete, key.as_ref(), &[]);
    }

    /// Adds to a counted entry ([`freshet_state::counted`]) without reading it.
    pub fn merge(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.push(WriteKind::Merge, key.as_ref(), value.as_ref());
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends the writes to `batch` in key order (writes of one key in the order made).
    pub fn apply_to(mut self, batch: &mut WriteBatch) {
        let data = &self.data;
        let slice = |(at, len): (usize, usize)| &data[at..at + len];
        self.ops.sort_by(|a, b| slice(a.key).cmp(slice(b.key)));
        for op in &self.ops {
            match op.kind {
                WriteKind::Put => batch.put(slice(op.key), slice(op.value)),
                WriteKind::Delete => batch.delete(slice(op.key)),
                WriteKind::Merge => batch.merge(slice(op.key), slice(op.value)),
            }
        }
    }
}

/// What operators see while processing an epoch.
pub struct EpochCtx<'a> {
    /// The committed state before this epoch: every read goes here.
    pub snapshot: &'a Snapshot,
    /// This epoch's writes: committed atomically with the base-table changes.
    pub batch: &'a mut EpochWrites,
    /// True for the backfill epoch of a new view (constant relations emit their rows, a global
    /// aggregate emits its empty-input row).
    pub initial: bool,
}

pub(crate) fn state_err(e: freshet_state::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
