//! Write batches: an atomic group of puts, merges and deletes, applied by [`crate::Store::write`].
//!
//! Keys and values are gathered in one buffer. At commit the writes go to RocksDB, as one
//! prebuilt write batch representation ([`WriteBatch::rocksdb_rep`]), in key
//! order (writes of one key in the order made, so the later wins): its memtable inserts each
//! key starting from where the previous one went, so sorted inserts cost far fewer skip-list
//! steps than scattered ones. A batch holding a range delete keeps its order instead, as a
//! later put may fall inside the range.

use crate::{Error, Result};

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

    /// Makes room for `bytes` more of keys and values in `writes` more writes: a batch that
    /// would otherwise grow by doubling copies what it holds each time.
    pub fn reserve(&mut self, bytes: usize, writes: usize) {
        self.data.reserve(bytes);
        self.ops.reserve(writes);
    }

    /// Bytes of keys and values so far.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Drops the writes made after the batch held `bytes` of keys and values in `writes`
    /// writes ([`WriteBatch::bytes`], [`WriteBatch::len`] then).
    pub fn truncate(&mut self, bytes: usize, writes: usize) {
        self.data.truncate(bytes);
        self.ops.truncate(writes);
        self.has_range = self.ops.iter().any(|o| o.kind == WriteKind::DeleteRange);
    }

    /// The writes in the order they reach RocksDB: (kind, key, value).
    pub(crate) fn ordered(&mut self) -> impl Iterator<Item = (WriteKind, &[u8], &[u8])> {
        let data = &self.data;
        let slice = move |(at, len): (usize, usize)| &data[at..at + len];
        if !self.has_range {
            // Writes of one key keep the order made: their keys' places in `data` grow with it.
            self.ops.sort_unstable_by(|a, b| {
                slice(a.key).cmp(slice(b.key)).then(a.key.0.cmp(&b.key.0))
            });
        }
        self.ops
            .iter()
            .map(move |op| (op.kind, slice(op.key), slice(op.value)))
    }

    /// The writes in RocksDB's write batch representation, in [`WriteBatch::ordered`] order,
    /// each in the column family `family_id` gives for its key: built here in one buffer
    /// rather than by one FFI call per write. The format (rocksdb/db/write_batch.cc): a
    /// 12-byte header (sequence number, then the count, little-endian), then per write a tag,
    /// the family id (varint32, omitted with the default family's tags), the key and, but for
    /// deletes, the value, each varint32-length-prefixed. The `rep_matches_rocksdb` test
    /// checks it against RocksDB's own batches.
    pub(crate) fn rocksdb_rep(&mut self, family_id: impl Fn(&[u8]) -> u32) -> Vec<u8> {
        let mut rep = Vec::with_capacity(12 + self.data.len() + self.ops.len() * 8);
        rep.extend_from_slice(&[0; 8]);
        rep.extend_from_slice(&(self.ops.len() as u32).to_le_bytes());
        for (kind, key, value) in self.ordered() {
            let cf = family_id(key);
            // (tag in the default family, tag with a family id)
            let (plain, with_cf) = match kind {
                WriteKind::Delete => (0x00, 0x04),
                WriteKind::Put => (0x01, 0x05),
                WriteKind::Merge => (0x02, 0x06),
                WriteKind::DeleteRange => (0x0F, 0x0E),
            };
            if cf == 0 {
                rep.push(plain);
            } else {
                rep.push(with_cf);
                push_varint32(&mut rep, cf);
            }
            push_slice(&mut rep, key);
            if kind != WriteKind::Delete {
                push_slice(&mut rep, value);
            }
        }
        rep
    }
}

fn push_varint32(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn push_slice(out: &mut Vec<u8>, s: &[u8]) {
    push_varint32(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// The id of column family `cf` in RocksDB's write batch format, read from a batch RocksDB
/// builds with one write to it.
pub(crate) fn family_id(cf: &rocksdb::ColumnFamily) -> Result<u32> {
    let mut b = rocksdb::WriteBatch::default();
    b.put_cf(cf, b"k", b"");
    let corrupt = || Error::Corrupt("unexpected RocksDB write batch format".into());
    match b.data().get(12..).ok_or_else(corrupt)? {
        [0x01, ..] => Ok(0),
        [0x05, rest @ ..] => {
            let mut id = 0u32;
            for (i, &byte) in rest.iter().take(5).enumerate() {
                id |= u32::from(byte & 0x7F) << (7 * i);
                if byte < 0x80 {
                    return Ok(id);
                }
            }
            Err(corrupt())
        }
        _ => Err(corrupt()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_sorts_keys_and_keeps_the_order_of_writes_to_one_key() {
        let mut b = WriteBatch::default();
        for i in 0..50u8 {
            b.put([i % 7], [i]);
            if i % 5 == 0 {
                b.delete([i % 7]);
            }
        }
        let got: Vec<(WriteKind, Vec<u8>, Vec<u8>)> = b
            .ordered()
            .map(|(k, key, v)| (k, key.to_vec(), v.to_vec()))
            .collect();
        let mut expected = Vec::new();
        for key in 0..7u8 {
            for i in 0..50u8 {
                if i % 7 == key {
                    expected.push((WriteKind::Put, vec![key], vec![i]));
                    if i % 5 == 0 {
                        expected.push((WriteKind::Delete, vec![key], vec![]));
                    }
                }
            }
        }
        assert_eq!(got, expected);
    }
}
