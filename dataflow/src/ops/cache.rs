//! A bounded cache of operator state entries in front of RocksDB, written through.
//!
//! Every write goes to the epoch's write batch *and* the cache, so a cached entry is what the
//! latest commit holds — provided every epoch that wrote it committed. When an epoch fails
//! (an error in any view, or the commit itself), [`crate::Dataflows::forget_cached`] empties
//! every cache; the next epoch reads RocksDB again.
//!
//! All caches of the process share one budget ([`set_budget`], the server's share of its
//! memory budget for operator caches): a cache may grow past its fair share (the budget
//! divided among the live caches) while the caches together stay within the budget; once
//! they pass it, a cache over its share gives back the excess (never going below half its
//! share) when it next grows, and [`crate::Dataflows::trim_caches`] (after each epoch and
//! between backfill steps) does the same to the others that are over theirs.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::error::Result;
use freshet_common::Datum;
use freshet_state::Snapshot;
use hashbrown::{DefaultHashBuilder, HashTable};
use smallvec::SmallVec;

use crate::epoch::state_err;

/// Allowance per entry for the map's own memory.
const ENTRY_OVERHEAD: usize = 64;

/// What the caches of the process may hold together, what they hold and how many there are.
struct Budget {
    limit: AtomicUsize,
    used: AtomicUsize,
    live: AtomicUsize,
}

impl Budget {
    const fn new(limit: usize) -> Budget {
        Budget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        }
    }

    /// A cache's fair share.
    fn share(&self) -> usize {
        self.limit.load(Ordering::Relaxed) / self.live.load(Ordering::Relaxed).max(1)
    }

    /// Whether the caches together hold more than the limit.
    fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit.load(Ordering::Relaxed)
    }

    /// The largest entry worth caching.
    fn largest_entry(&self) -> usize {
        self.limit.load(Ordering::Relaxed) / 8
    }
}

/// The budget of every operator cache of the process.
static BUDGET: Budget = Budget::new(256 << 20);

/// Sets the bytes (keys, values and a per-entry allowance) that the operator caches of all
/// views together may hold.
pub fn set_budget(bytes: usize) {
    BUDGET.limit.store(bytes.max(1 << 20), Ordering::Relaxed);
}

/// What the operator caches hold, all together.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub budget: usize,
    pub used: usize,
}

/// The caches' budget and what they hold.
pub fn usage() -> Usage {
    Usage {
        budget: BUDGET.limit.load(Ordering::Relaxed),
        used: BUDGET.used.load(Ordering::Relaxed),
    }
}

/// The memory a cached value stands for, in bytes.
pub trait Weigh {
    fn weigh(&self) -> usize;
}

impl Weigh for Option<Vec<u8>> {
    fn weigh(&self) -> usize {
        self.as_ref().map_or(0, Vec::len)
    }
}

/// The memory `row` takes decoded, about.
pub(crate) fn row_bytes(row: &[Datum]) -> usize {
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
    row.iter().map(datum).sum()
}

impl Weigh for Option<Arc<[Datum]>> {
    fn weigh(&self) -> usize {
        self.as_ref().map_or(0, |row| row_bytes(row))
    }
}

/// Cached values by key.
pub struct Cache<V> {
    inner: Mutex<Inner<V>>,
}

/// Decoded accumulators by key (`None`: known to be absent). A slice behind the `Arc`: the
/// datums sit right after the reference counts, one cache miss less per group than a `Vec`.
pub type AccCache = Cache<Option<Arc<[Datum]>>>;

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Self::within(&BUDGET)
    }
}

impl<V> Cache<V> {
    /// A cache charged to `budget`.
    fn within(budget: &'static Budget) -> Self {
        budget.live.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Mutex::new(Inner {
                table: HashTable::new(),
                hasher: DefaultHashBuilder::default(),
                bytes: 0,
                generation: 0,
                held: false,
                budget,
            }),
        }
    }
}

impl<V> Drop for Cache<V> {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        inner.budget.used.fetch_sub(inner.bytes, Ordering::Relaxed);
        inner.budget.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.lock().map_or(0, |inner| inner.table.len());
        write!(f, "Cache({n} entries)")
    }
}

/// A cached entry's key: short keys (most group keys) sit inside the table's bucket, so
/// comparing one costs no extra cache miss.
type SlotKey = SmallVec<[u8; INLINE_KEY]>;
const INLINE_KEY: usize = 24;

/// One cached entry with the memory it is charged for.
struct Slot<V> {
    key: SlotKey,
    value: V,
    cost: usize,
}

struct Inner<V> {
    table: HashTable<Slot<V>>,
    hasher: DefaultHashBuilder,
    bytes: usize,
    /// Bumped whenever entries may have moved (an entry added, removed or evicted), which
    /// invalidates the slots a [`Found`] remembers.
    generation: u64,
    /// Nothing may leave (see [`Cache::hold`]).
    held: bool,
    budget: &'static Budget,
}

/// Where [`Cache::multi_get`] found each key: [`AccCache::set_accs`] then updates
/// the entry in place instead of looking it up again — a second probe of a large table is
/// a cache miss per group — unless entries have moved since.
#[derive(Default)]
pub struct Found {
    generation: u64,
    slots: Vec<Option<usize>>,
}

fn cost<V: Weigh>(key: &[u8], value: &V) -> usize {
    key.len() + value.weigh() + ENTRY_OVERHEAD
}

impl<V: Weigh> Inner<V> {
    fn find(&self, key: &[u8]) -> Option<usize> {
        self.find_hashed(self.hasher.hash_one(key), key)
    }

    fn find_hashed(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.table
            .find_bucket_index(hash, |s| s.key.as_slice() == key)
    }

    fn get(&self, key: &[u8]) -> Option<&V> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |s| s.key.as_slice() == key)
            .map(|s| &s.value)
    }

    fn insert(&mut self, key: Vec<u8>, value: V) {
        let c = cost(&key, &value);
        if c > self.budget.largest_entry() && !self.held {
            // Too big to be worth the memory.
            self.remove(&key);
            return;
        }
        let hash = self.hasher.hash_one(key.as_slice());
        match self.find_hashed(hash, &key) {
            Some(at) => self.set_at(at, value, c),
            None => {
                let hasher = &self.hasher;
                self.table.insert_unique(
                    hash,
                    Slot {
                        key: if key.len() <= INLINE_KEY {
                            SmallVec::from_slice(&key)
                        } else {
                            SmallVec::from_vec(key)
                        },
                        value,
                        cost: c,
                    },
                    |s| hasher.hash_one(s.key.as_slice()),
                );
                self.set_bytes(self.bytes + c);
                self.generation += 1;
                self.evict_if_over();
            }
        }
    }

    /// Replaces the value in bucket `at` with `value`, which costs `c`.
    fn set_at(&mut self, at: usize, value: V, c: usize) {
        if let Some(slot) = self.table.get_bucket_mut(at) {
            slot.value = value;
        }
        self.recharge(at, c);
    }

    /// Charges bucket `at`'s entry `c` bytes (its value changed), evicting if over budget.
    fn recharge(&mut self, at: usize, c: usize) {
        if let Some(slot) = self.table.get_bucket_mut(at) {
            let bytes = self.bytes - slot.cost + c;
            slot.cost = c;
            self.set_bytes(bytes);
        }
        self.evict_if_over();
    }

    /// Sets what this cache holds, keeping the shared count in step.
    fn set_bytes(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            self.budget
                .used
                .fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            self.budget
                .used
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }

    /// Whether this cache must give memory back: the caches together are over the budget
    /// and it holds more than its share.
    fn over_share(&self) -> bool {
        self.bytes > self.budget.share() && self.budget.over()
    }

    /// Gives back what the caches together hold past the budget, if this one holds more
    /// than its share: at least an eighth of its entries (so that evicting stays rare),
    /// never going below half its share. The cache an epoch or backfill step is filling
    /// then keeps most of what it holds, and the others shrink when trimmed.
    fn evict_if_over(&mut self) {
        if self.held || !self.over_share() {
            return;
        }
        let overshoot =
            self.budget.used.load(Ordering::Relaxed) - self.budget.limit.load(Ordering::Relaxed);
        let target = self
            .bytes
            .saturating_sub(overshoot.max(self.bytes / 8))
            .max(self.budget.share() / 2);
        self.evict_to(target);
    }

    /// Drops entries (arbitrary ones, as hashed) until at most `target` bytes are left.
    fn evict_to(&mut self, target: usize) {
        let mut excess = self.bytes.saturating_sub(target);
        self.table.retain(|s| {
            if excess == 0 {
                return true;
            }
            excess = excess.saturating_sub(s.cost);
            false
        });
        let bytes = self.table.iter().map(|s| s.cost).sum();
        self.set_bytes(bytes);
        self.generation += 1;
    }

    fn remove(&mut self, key: &[u8]) {
        let hash = self.hasher.hash_one(key);
        if let Ok(entry) = self.table.find_entry(hash, |s| s.key.as_slice() == key) {
            let (slot, _) = entry.remove();
            self.set_bytes(self.bytes - slot.cost);
            self.generation += 1;
        }
    }

    /// The bucket of `found`'s `i`th key, unless entries moved since.
    fn slot_of(&self, found: &Found, i: usize, key: &[u8]) -> Option<usize> {
        let at = found.slots.get(i).copied().flatten()?;
        if found.generation != self.generation {
            return None;
        }
        debug_assert!(self
            .table
            .get_bucket(at)
            .is_some_and(|s| s.key.as_slice() == key));
        Some(at)
    }

    /// Sets `key` (the `i`th key of `found`) to `value`: in place when `found` still knows
    /// where it is.
    fn set_found(&mut self, found: &Found, i: usize, key: &[u8], value: V) {
        let c = cost(key, &value);
        match self.slot_of(found, i, key) {
            Some(at) if c <= self.budget.largest_entry() || self.held => self.set_at(at, value, c),
            _ => self.insert(key.to_vec(), value),
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
        self.lock().get(key).cloned()
    }

    /// Caches `value` as what the latest commit holds under `key`.
    pub fn insert(&self, key: Vec<u8>, value: V) {
        self.lock().insert(key, value);
    }

    /// Forgets `key` (its stored value is about to change).
    pub fn remove(&self, key: &[u8]) {
        self.lock().remove(key);
    }

    /// While held, no entry leaves the cache, whatever its size: the cached values are the
    /// only up-to-date copy of entries whose stored value lags (an aggregate view's groups
    /// whose changes are still in its contents log). The cache may then pass its budget:
    /// [`Cache::over_budget`] says when to fold the log and [`Cache::release`].
    pub fn hold(&self) {
        self.lock().held = true;
    }

    /// Ends [`Cache::hold`]: evicts if over budget.
    pub fn release(&self) {
        let mut inner = self.lock();
        inner.held = false;
        inner.evict_if_over();
    }

    /// Whether the cache holds more than its share while the caches together are over
    /// their budget (possible only while held).
    pub fn over_budget(&self) -> bool {
        self.lock().over_share()
    }

    /// Gives back what the caches together hold past their budget, if it holds more than
    /// its share (unless held; see `Inner::evict_if_over`).
    pub fn trim(&self) {
        self.lock().evict_if_over();
    }

    /// Forgets every entry (after an epoch that did not commit).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.table = HashTable::new();
        inner.set_bytes(0);
        inner.generation += 1;
    }
}

impl<T: Clone> Cache<Option<T>>
where
    Option<T>: Weigh,
{
    /// The stored values of `keys` as of `snapshot` (the latest commit), as `decode` makes
    /// them of the stored bytes: cached ones from memory, the rest read with one MultiGet,
    /// decoded, then cached. Also where each key now is, for [`AccCache::set_accs`].
    pub fn multi_get(
        &self,
        snapshot: &Snapshot,
        keys: &[Vec<u8>],
        decode: impl Fn(&[u8]) -> Result<T>,
    ) -> Result<(Vec<Option<T>>, Found)> {
        let mut inner = self.lock();
        let mut out: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut slots: Vec<Option<usize>> = Vec::with_capacity(keys.len());
        let mut missing: Vec<usize> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let at = inner.find(k);
            match at.and_then(|at| inner.table.get_bucket(at)) {
                Some(slot) => out.push(slot.value.clone()),
                None => {
                    out.push(None);
                    missing.push(i);
                }
            }
            slots.push(at);
        }
        if !missing.is_empty() {
            let wanted: Vec<&[u8]> = missing.iter().map(|&i| keys[i].as_slice()).collect();
            let read = snapshot.multi_get(&wanted).map_err(state_err)?;
            for (i, v) in missing.into_iter().zip(read) {
                let v = v.map(|b| decode(&b)).transpose()?;
                inner.insert(keys[i].clone(), v.clone());
                out[i] = v;
            }
            // Entries may have moved: find them all again.
            slots = keys.iter().map(|k| inner.find(k)).collect();
        }
        let found = Found {
            generation: inner.generation,
            slots,
        };
        Ok((out, found))
    }

    /// [`Cache::multi_get`] for an epoch that must not touch the cache (a preview, whose
    /// snapshot may be older than what the cache holds): every key read from `snapshot`.
    pub fn read_uncached(
        snapshot: &Snapshot,
        keys: &[Vec<u8>],
        decode: impl Fn(&[u8]) -> Result<T>,
    ) -> Result<(Vec<Option<T>>, Found)> {
        let read = snapshot.multi_get(keys).map_err(state_err)?;
        let values = read
            .into_iter()
            .map(|v| v.map(|b| decode(&b)).transpose())
            .collect::<Result<_>>()?;
        Ok((values, Found::default()))
    }
}

impl AccCache {
    /// Caches the epoch's new accumulators: `accs[i]` for `found`'s `i`th key, `None` for a
    /// group that is gone (the caller writes the batch). In one pass at the end of the epoch,
    /// so the table's buckets — cold again by now — are fetched back to back, not one between
    /// each group's work. An unshared cached accumulator is overwritten in place: no
    /// allocation, and no free of memory last touched epochs ago (a cache miss each).
    pub fn set_accs(&self, found: &Found, keys: &[Vec<u8>], accs: Vec<Option<Vec<Datum>>>) {
        let mut inner = self.lock();
        for (i, (key, acc)) in keys.iter().zip(accs).enumerate() {
            let Some(acc) = acc else {
                inner.set_found(found, i, key, None);
                continue;
            };
            let rewritten = inner.slot_of(found, i, key).and_then(|at| {
                let slot = inner.table.get_bucket_mut(at)?;
                let cached = Arc::get_mut(slot.value.as_mut()?)?;
                if cached.len() != acc.len() {
                    return None;
                }
                cached.clone_from_slice(&acc);
                Some((at, cost(key, &slot.value)))
            });
            match rewritten {
                Some((at, c)) => inner.recharge(at, c),
                None => inner.set_found(found, i, key, Some(Arc::from(acc))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A budget of `limit` bytes of this test's own.
    fn budget(limit: usize) -> &'static Budget {
        Box::leak(Box::new(Budget::new(limit)))
    }

    fn new() -> Inner<Option<Vec<u8>>> {
        Inner {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            bytes: 0,
            generation: 0,
            held: false,
            budget: budget(64 << 20),
        }
    }

    #[test]
    fn stays_within_budget() {
        let limit = 4 << 20;
        let cache: Cache<Option<Vec<u8>>> = Cache::within(budget(limit));
        for i in 0..200_000u64 {
            cache.insert(i.to_be_bytes().to_vec(), Some(vec![0; 16]));
            assert!(cache.lock().bytes <= limit + 100);
        }
        assert!(cache.lock().table.len() > 0);
        // Overwrites do not inflate the count.
        let mut inner = new();
        for _ in 0..10 {
            inner.insert(b"k".to_vec(), Some(vec![0; 10]));
        }
        assert_eq!(inner.bytes, 1 + 10 + ENTRY_OVERHEAD);
    }

    #[test]
    fn caches_share_one_budget() {
        let limit = 4 << 20;
        let shared = budget(limit);
        let fill = |cache: &Cache<Option<Vec<u8>>>, from: u64, n: u64| {
            for i in from..from + n {
                cache.insert(i.to_be_bytes().to_vec(), Some(vec![0; 16]));
            }
        };
        // Alone, a cache may take the whole budget.
        let a: Cache<Option<Vec<u8>>> = Cache::within(shared);
        fill(&a, 0, 40_000);
        assert!(a.lock().bytes > limit / 2 + limit / 4);
        // A second one grows within its share (the first holds more than its own until
        // trimmed), then both are within the budget.
        let b: Cache<Option<Vec<u8>>> = Cache::within(shared);
        fill(&b, 0, 40_000);
        assert!(b.lock().bytes <= limit / 2 + 100);
        let a_before = a.lock().bytes;
        a.trim();
        assert!(a.lock().bytes < a_before);
        assert!(
            a.lock().bytes >= limit / 4,
            "no more than the excess is given back"
        );
        assert!(shared.used.load(Ordering::Relaxed) <= limit);
        // Entries of a dropped cache leave the count.
        let before = shared.used.load(Ordering::Relaxed);
        let b_bytes = b.lock().bytes;
        drop(b);
        assert_eq!(shared.used.load(Ordering::Relaxed), before - b_bytes);
        assert_eq!(shared.live.load(Ordering::Relaxed), 1);
        a.clear();
        assert_eq!(shared.used.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn found_slots_update_in_place_until_entries_move() {
        let mut inner = new();
        for i in 0..100u8 {
            inner.insert(vec![i], Some(vec![i]));
        }
        let keys: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i]).collect();
        let found = Found {
            generation: inner.generation,
            slots: keys.iter().map(|k| inner.find(k)).collect(),
        };
        for (i, k) in keys.iter().enumerate() {
            inner.set_found(&found, i, k, Some(vec![7; 3]));
        }
        assert!(keys.iter().all(|k| inner.get(k) == Some(&Some(vec![7; 3]))));
        assert_eq!(inner.bytes, 100 * (1 + 3 + ENTRY_OVERHEAD));
        // Entries added since (the table grows and rehashes): the slots are stale, so each
        // write looks its key up again.
        for i in 0..1000u32 {
            inner.insert(i.to_be_bytes().to_vec(), None);
        }
        for (i, k) in keys.iter().enumerate() {
            inner.set_found(&found, i, k, Some(vec![i as u8]));
        }
        assert!(keys
            .iter()
            .enumerate()
            .all(|(i, k)| inner.get(k) == Some(&Some(vec![i as u8]))));
        // A slot of a key found absent inserts it.
        let absent = Found {
            generation: inner.generation,
            slots: vec![None],
        };
        inner.set_found(&absent, 0, b"new", Some(vec![1]));
        assert_eq!(inner.get(b"new"), Some(&Some(vec![1])));
    }

    #[test]
    fn accumulators_are_rewritten_in_place_when_unshared() {
        let cache = AccCache::default();
        let key = b"g1".to_vec();
        cache.insert(key.clone(), Some(Arc::from(vec![Datum::Int64(1)])));
        let found = |cache: &AccCache| {
            let inner = cache.lock();
            Found {
                generation: inner.generation,
                slots: vec![inner.find(&key)],
            }
        };
        let before = cache
            .get(&key)
            .flatten()
            .map(|a| Arc::as_ptr(&a).cast::<Datum>());
        let keys = [key.clone()];
        cache.set_accs(&found(&cache), &keys, vec![Some(vec![Datum::Int64(2)])]);
        let after = cache.get(&key).flatten();
        assert_eq!(after.as_deref(), Some(&[Datum::Int64(2)][..]));
        assert_eq!(
            after.map(|a| Arc::as_ptr(&a).cast::<Datum>()),
            before,
            "the cached accumulator is reused"
        );
        // Someone still reads the old accumulator: it is left alone.
        let held = cache.get(&key).flatten();
        cache.set_accs(&found(&cache), &keys, vec![Some(vec![Datum::Int64(3)])]);
        assert_eq!(held.as_deref(), Some(&[Datum::Int64(2)][..]));
        assert_eq!(
            cache.get(&key).flatten().as_deref(),
            Some(&[Datum::Int64(3)][..])
        );
        // A group that is gone is cached as absent.
        cache.set_accs(&found(&cache), &keys, vec![None]);
        assert_eq!(cache.get(&key), Some(None));
        let inner = cache.lock();
        assert_eq!(
            inner.bytes,
            inner.table.iter().map(|s| s.cost).sum::<usize>()
        );
    }
}
