//! A bounded cache of operator state entries in front of RocksDB, written through.
//!
//! Every write goes to the epoch's write batch *and* the cache, so a cached entry is what the
//! latest commit holds — provided every epoch that wrote it committed. When an epoch fails
//! (an error in any view, or the commit itself), [`crate::Dataflows::forget_cached`] empties
//! every cache; the next epoch reads RocksDB again.

use std::sync::{Arc, Mutex};

use datafusion::common::HashMap;
use datafusion::error::Result;
use freshet_common::Datum;
use freshet_state::{Snapshot, WriteBatch};

use crate::epoch::state_err;

/// Bytes of keys and values one cache holds at most (plus a per-entry allowance).
const BUDGET: usize = 64 << 20;
/// Allowance per entry for the map's own memory.
const ENTRY_OVERHEAD: usize = 64;

/// The memory a cached value stands for, in bytes.
pub trait Weigh {
    fn weigh(&self) -> usize;
}

impl Weigh for Option<Vec<u8>> {
    fn weigh(&self) -> usize {
        self.as_ref().map_or(0, Vec::len)
    }
}

impl Weigh for Option<Arc<Vec<Datum>>> {
    fn weigh(&self) -> usize {
        let datum = |d: &Datum| {
            std::mem::size_of::<Datum>()
                + match d {
                    Datum::Text(t) => t.len(),
                    Datum::Bytes(b) => b.len(),
                    // Nested values: a rough allowance.
                    Datum::List(l) => l.len() * std::mem::size_of::<Datum>(),
                    _ => 0,
                }
        };
        self.as_ref().map_or(0, |row| row.iter().map(datum).sum())
    }
}

/// Cached values by key.
pub struct Cache<V> {
    inner: Mutex<Inner<V>>,
}

/// Decoded accumulators by key (`None`: known to be absent).
pub type AccCache = Cache<Option<Arc<Vec<Datum>>>>;

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::default(),
                bytes: 0,
            }),
        }
    }
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.lock().map_or(0, |inner| inner.map.len());
        write!(f, "Cache({n} entries)")
    }
}

struct Inner<V> {
    map: HashMap<Vec<u8>, V>,
    bytes: usize,
}

fn cost<V: Weigh>(key: &[u8], value: &V) -> usize {
    key.len() + value.weigh() + ENTRY_OVERHEAD
}

impl<V: Weigh> Inner<V> {
    fn insert(&mut self, key: Vec<u8>, value: V) {
        if cost(&key, &value) > BUDGET / 8 {
            // Too big to be worth the memory.
            self.remove(&key);
            return;
        }
        let key_len = key.len();
        self.bytes += cost(&key, &value);
        if let Some(old) = self.map.insert(key, value) {
            self.bytes -= key_len + old.weigh() + ENTRY_OVERHEAD;
        }
        if self.bytes > BUDGET {
            // Over budget: drop about half the entries (arbitrary ones, as hashed).
            let mut keep = false;
            self.map.retain(|_, _| {
                keep = !keep;
                keep
            });
            self.bytes = self.map.iter().map(|(k, v)| cost(k, v)).sum();
        }
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= key.len() + old.weigh() + ENTRY_OVERHEAD;
        }
    }
}

impl<V: Weigh + Clone> Cache<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<V> {
        self.lock().map.get(key).cloned()
    }

    /// Caches `value` as what the latest commit holds under `key`.
    pub fn insert(&self, key: Vec<u8>, value: V) {
        self.lock().insert(key, value);
    }

    /// Forgets `key` (its stored value is about to change).
    pub fn remove(&self, key: &[u8]) {
        self.lock().remove(key);
    }

    /// Forgets every entry (after an epoch that did not commit).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.map = HashMap::default();
        inner.bytes = 0;
    }
}

impl<T: Clone> Cache<Option<T>>
where
    Option<T>: Weigh,
{
    /// The stored values of `keys` as of `snapshot` (the latest commit), as `decode` makes
    /// them of the stored bytes: cached ones from memory, the rest read with one MultiGet,
    /// decoded, then cached.
    pub fn multi_get(
        &self,
        snapshot: &Snapshot,
        keys: &[Vec<u8>],
        decode: impl Fn(&[u8]) -> Result<T>,
    ) -> Result<Vec<Option<T>>> {
        let mut inner = self.lock();
        let mut out: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut missing: Vec<usize> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match inner.map.get(k) {
                Some(v) => out.push(v.clone()),
                None => {
                    out.push(None);
                    missing.push(i);
                }
            }
        }
        if !missing.is_empty() {
            let wanted: Vec<&[u8]> = missing.iter().map(|&i| keys[i].as_slice()).collect();
            let read = snapshot.multi_get(&wanted).map_err(state_err)?;
            for (i, v) in missing.into_iter().zip(read) {
                let v = v.map(|b| decode(&b)).transpose()?;
                inner.insert(keys[i].clone(), v.clone());
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Writes `bytes` under `key`; caches `value`, what `bytes` decode to.
    pub fn put(&self, batch: &mut WriteBatch, key: Vec<u8>, bytes: &[u8], value: T) {
        batch.put(&key, bytes);
        self.lock().insert(key, Some(value));
    }

    /// Deletes `key`.
    pub fn delete(&self, batch: &mut WriteBatch, key: Vec<u8>) {
        batch.delete(&key);
        self.lock().insert(key, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_budget() {
        let new = || Inner::<Option<Vec<u8>>> {
            map: HashMap::default(),
            bytes: 0,
        };
        let mut inner = new();
        for i in 0..2_000_000u64 {
            inner.insert(i.to_be_bytes().to_vec(), Some(vec![0; 16]));
            assert!(inner.bytes <= BUDGET + 100);
        }
        assert!(!inner.map.is_empty());
        // Overwrites do not inflate the count.
        let mut inner = new();
        for _ in 0..10 {
            inner.insert(b"k".to_vec(), Some(vec![0; 10]));
        }
        assert_eq!(inner.bytes, 1 + 10 + ENTRY_OVERHEAD);
    }
}
