//! Write batches: an atomic group of puts, merges and deletes, applied by [`crate::Store::write`].
//!
//! Keys and values are gathered in one buffer. At commit the writes go to RocksDB in key
//! order (writes of one key in the order made, so the later wins): its memtable inserts each
//! key starting from where the previous one went, so sorted inserts cost far fewer skip-list
//! steps than scattered ones. A batch holding a range delete keeps its order instead, as a
//! later put may fall inside the range.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    Put,
    Delete,
    Merge,
    /// Deletes keys from `key` (inclusive) to `value` (exclusive).
    DeleteRange,
}

#[derive(Debug, Clone, Copy)]
struct WriteOp {
    kind: WriteKind,
    key: (usize, usize),
    value: (usize, usize),
}

/// An atomic group of writes.
#[derive(Debug, Default)]
pub struct WriteBatch {
    data: Vec<u8>,
    ops: Vec<WriteOp>,
    has_range: bool,
}

impl WriteBatch {
    fn push(&mut self, kind: WriteKind, key: &[u8], value: &[u8]) {
        self.push_with(kind, &[key], |buf| buf.extend_from_slice(value));
    }

    /// Appends a write whose key is `key_parts` together and whose value `value` appends to
    /// the buffer it is given.
    fn push_with(
        &mut self,
        kind: WriteKind,
        key_parts: &[&[u8]],
        value: impl FnOnce(&mut Vec<u8>),
    ) {
        let k = self.data.len();
        key_parts
            .iter()
            .for_each(|p| self.data.extend_from_slice(p));
        let v = self.data.len();
        value(&mut self.data);
        self.ops.push(WriteOp {
            kind,
            key: (k, v - k),
            value: (v, self.data.len() - v),
        });
    }

    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.push(WriteKind::Put, key.as_ref(), value.as_ref());
    }

    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.push(WriteKind::Delete, key.as_ref(), &[]);
    }

    /// Adds to a counted entry ([`crate::counted`]) without reading it.
    pub fn merge(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.push(WriteKind::Merge, key.as_ref(), value.as_ref());
    }

    /// [`WriteBatch::merge`] of the key `key_parts` make together and the value `value`
    /// appends to the buffer it is given, built in place.
    pub fn merge_with(&mut self, key_parts: &[&[u8]], value: impl FnOnce(&mut Vec<u8>)) {
        self.push_with(WriteKind::Merge, key_parts, value);
    }

    /// A put of the key `key_parts` make together and the value `value` appends to the
    /// buffer it is given, built in place.
    pub fn put_with(&mut self, key_parts: &[&[u8]], value: impl FnOnce(&mut Vec<u8>)) {
        self.push_with(WriteKind::Put, key_parts, value);
    }

    /// Deletes every key in `[begin, end)`.
    pub fn delete_range(&mut self, begin: impl AsRef<[u8]>, end: impl AsRef<[u8]>) {
        self.has_range = true;
        self.push(WriteKind::DeleteRange, begin.as_ref(), end.as_ref());
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The writes in the order they reach RocksDB: (kind, key, value).
    pub(crate) fn ordered(&mut self) -> impl Iterator<Item = (WriteKind, &[u8], &[u8])> {
        let data = &self.data;
        let slice = move |(at, len): (usize, usize)| &data[at..at + len];
        if !self.has_range {
            self.ops.sort_by(|a, b| slice(a.key).cmp(slice(b.key)));
        }
        self.ops
            .iter()
            .map(move |op| (op.kind, slice(op.key), slice(op.value)))
    }
}
