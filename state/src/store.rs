//! The RocksDB handle, write batches and read snapshots.

mod group;
mod options;
mod usage;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{
    ColumnFamily, Direction, IteratorMode, Options, ReadOptions, SnapshotWithThreadMode,
    WriteOptions, DB,
};

use crate::{Error, Result};
use options::{
    family_options, memtable_limit, ARENA_BLOCK_BYTES, CONTENTS_LOG_MEMTABLE_BYTES, WAL_BYTES,
};

/// Settings of the state store.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// fsync the write-ahead log on every commit. Off only survives process crashes, not power loss.
    pub sync_commits: bool,
    /// Bytes RocksDB's block cache and memtables share: memtables are charged to the cache
    /// (see [`Store::open`]), so the two together hold about this much.
    pub cache_bytes: usize,
    /// Memtable size of the families written in key order (tables, append-only views); the
    /// write-ahead log preallocates about this much disk per file.
    pub memtable_bytes: usize,
    /// Bytes the contents logs of aggregate views may hold between folds (all views
    /// together; see `contents_log.rs` in freshet-dataflow): their family's memtable is sized
    /// to keep them, so that a folded log is deleted before it is ever written to a file.
    pub contents_log_bytes: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            sync_commits: true,
            cache_bytes: 768 << 20,
            memtable_bytes: 64 << 20,
            contents_log_bytes: 128 << 20,
        }
    }
}

impl StateConfig {
    /// Settings for unit tests: no fsync, small cache and memtables. (A test process keeps
    /// every store it opens — see [`Store`] — so each one's preallocated log stays on disk
    /// until the process exits.)
    pub fn for_test() -> Self {
        Self {
            sync_commits: false,
            cache_bytes: 32 << 20,
            memtable_bytes: 4 << 20,
            contents_log_bytes: 0,
        }
    }
}

/// Entries of data keyspaces (everything but catalog metadata) read so far by this process.
static DATA_ENTRIES_READ: AtomicU64 = AtomicU64::new(0);

/// How many table rows, view rows and operator state entries this process has read from the
/// store: the measure behind "startup reads no rows" (exposed in `freshet_internal.metrics`).
pub fn data_entries_read() -> u64 {
    DATA_ENTRIES_READ.load(Ordering::Relaxed)
}

fn count_read(key: &[u8]) {
    if key.first() != Some(&(crate::Keyspace::Meta as u8)) {
        DATA_ENTRIES_READ.fetch_add(1, Ordering::Relaxed);
    }
}

use crate::batch::WriteBatch;
#[cfg(test)]
use crate::batch::WriteKind;

/// Column families: one per keyspace, so each has its own memtable and files. Sequential
/// keys (table rows by id, append-only view rows) then make non-overlapping files that
/// compaction moves without rewriting, instead of being merged with random operator state.
const FAMILIES: [(u8, &str); 8] = [
    (crate::Keyspace::Meta as u8, "meta"),
    (crate::Keyspace::TableData as u8, "tables"),
    (crate::Keyspace::ViewData as u8, "views"),
    (crate::Keyspace::AggregateViewData as u8, "aggregate_views"),
    (crate::Keyspace::Operator as u8, "operators"),
    (crate::Keyspace::Source as u8, "sources"),
    (crate::Keyspace::ContentsLog as u8, "contents_log"),
    (crate::Keyspace::Changelog as u8, "changelog"),
];

/// The layout version of the data this code reads and writes: bump it with any change to what
/// a key or value means. A data directory of another version is refused at open (there are no
/// migrations yet); one written before versions were recorded counts as version 1.
pub const FORMAT_VERSION: u32 = 3;

/// Where the version is recorded (in the metadata keyspace).
const FORMAT_KEY: &[u8] = b"format_version";

/// The column family handles, by [`FAMILIES`] index; the default family last.
#[derive(Clone, Copy)]
struct Families {
    handles: [&'static ColumnFamily; FAMILIES.len() + 1],
    /// Their ids in RocksDB's write batch format.
    ids: [u32; FAMILIES.len() + 1],
}

impl Families {
    fn new(handles: [&'static ColumnFamily; FAMILIES.len() + 1]) -> Result<Self> {
        let mut ids = [0; FAMILIES.len() + 1];
        for (id, cf) in ids.iter_mut().zip(handles) {
            *id = crate::batch::family_id(cf)?;
        }
        Ok(Families { handles, ids })
    }

    fn index(key: &[u8]) -> usize {
        let first = key.first().copied();
        FAMILIES
            .iter()
            .position(|(b, _)| Some(*b) == first)
            .unwrap_or(FAMILIES.len())
    }

    /// The family holding `key` (by its keyspace byte).
    fn of(&self, key: &[u8]) -> &'static ColumnFamily {
        self.handles[Self::index(key)]
    }

    /// The id of the family holding `key`.
    fn id_of(&self, key: &[u8]) -> u32 {
        self.ids[Self::index(key)]
    }
}

/// The store. Cheap to clone; one per process and data directory.
///
/// The RocksDB handle is leaked on open so that [`Snapshot`]s can be `'static` and shared with
/// query execution; the process owns one store for its whole life, and RocksDB's write-ahead
/// log makes an unclean exit safe.
#[derive(Clone)]
pub struct Store {
    db: &'static DB,
    families: Families,
    sync: bool,
    group: &'static group::GroupSync,
    memory: &'static Memory,
}

/// RocksDB's shared block cache and the manager of its memtables, with their limits.
struct Memory {
    cache: rocksdb::Cache,
    manager: rocksdb::WriteBufferManager,
    cache_bytes: usize,
    memtable_bytes: usize,
}

/// What RocksDB's memory holds and may hold, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct MemoryUse {
    /// The block cache's capacity (memtables are charged to it).
    pub cache_limit: usize,
    /// What the block cache holds, memtables' charges included.
    pub cache_used: usize,
    /// The memtables' limit (a flush starts past it).
    pub memtable_limit: usize,
    /// What the memtables hold.
    pub memtable_used: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

impl Store {
    /// Opens (creating if missing) the store in `dir`.
    pub fn open(dir: &Path, config: &StateConfig) -> Result<Store> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let mut block = rocksdb::BlockBasedOptions::default();
        let cache = rocksdb::Cache::new_lru_cache(config.cache_bytes);
        block.set_block_cache(&cache);
        block.set_bloom_filter(10.0, false);
        // Index and filter blocks live in the block cache, partitioned so that a lookup loads
        // only the partitions it needs; only each file's small top-level index stays pinned.
        // Outside the cache they grow with the number of keys (~20M keys in benchmark (b):
        // peak RSS 402 MB at 10M rows against 321 MB with them in the cache, CPU the same
        // within noise; benchmarks.md, 2026-11-25).
        block.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        block.set_partition_filters(true);
        block.set_metadata_block_size(4096);
        block.set_cache_index_and_filter_blocks(true);
        block.set_cache_index_and_filter_blocks_with_high_priority(true);
        block.set_pin_top_level_index_and_filter(true);
        opts.set_block_based_table_factory(&block);
        // The contents log's memtable keeps a whole log between folds (plus a quarter for
        // the epochs committed while a fold's flush starts): a log written and deleted
        // between two flushes never reaches a file. Before, with 16 MB, the log of benchmark
        // (b) was written to files, read back by compaction and dropped: 1.2 GB per 10M rows.
        let log_memtable = CONTENTS_LOG_MEMTABLE_BYTES
            .min(config.memtable_bytes)
            .max(config.contents_log_bytes + config.contents_log_bytes / 4);
        // Memtables of all families together stay under this, and are charged to the block
        // cache: what they hold is evicted from it, so both stay within `cache_bytes`. No
        // family's memtable is larger than half of it, and each grows in blocks of 1 MB (by
        // default an eighth of its size: nine families reserved ~54 MB while empty).
        let memtables = memtable_limit(config.cache_bytes, log_memtable);
        let manager = rocksdb::WriteBufferManager::new_write_buffer_manager_with_cache(
            memtables,
            false,
            cache.clone(),
        );
        opts.set_write_buffer_manager(&manager);
        opts.set_write_buffer_size(config.memtable_bytes.min(memtables / 2));
        opts.set_arena_block_size(ARENA_BLOCK_BYTES);
        opts.increase_parallelism(2);
        // Most point reads of table writes miss (new rows): a bloom filter over the memtable's
        // keys answers those without searching the skip list (not for the views and the
        // scattered families, below).
        opts.set_memtable_prefix_bloom_ratio(0.1);
        opts.set_memtable_whole_key_filtering(true);
        // Counted entries (view contents, operator multisets) grow by blind merges.
        opts.set_merge_operator_associative("freshet.add_counts", add_counts);
        let memory: &'static Memory = Box::leak(Box::new(Memory {
            cache: cache.clone(),
            manager: manager.clone(),
            cache_bytes: config.cache_bytes,
            memtable_bytes: memtables,
        }));
        // A log file lives until every family's data in it is flushed: past this much log,
        // the families holding the oldest are flushed (the catalog's rare writes would
        // otherwise pin every log written since). The contents log's memtable holds the
        // oldest between folds: everything written since must fit, or it is flushed early.
        opts.set_max_total_wal_size(WAL_BYTES + 2 * config.contents_log_bytes as u64);
        opts.create_missing_column_families(true);
        let descriptors = FAMILIES
            .iter()
            .map(|(_, name)| *name)
            .chain([rocksdb::DEFAULT_COLUMN_FAMILY_NAME])
            .map(|name| {
                let cf = family_options(&opts, name, config, memtables, log_memtable)?;
                Ok(rocksdb::ColumnFamilyDescriptor::new(name, cf))
            })
            .collect::<Result<Vec<_>>>()?;
        let db: &'static DB =
            Box::leak(Box::new(DB::open_cf_descriptors(&opts, dir, descriptors)?));
        let handle = |name: &str| {
            db.cf_handle(name)
                .ok_or_else(|| Error::Corrupt(format!("column family {name} missing")))
        };
        let mut handles = Vec::with_capacity(FAMILIES.len() + 1);
        for (_, name) in FAMILIES {
            handles.push(handle(name)?);
        }
        handles.push(handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)?);
        let families = Families::new(
            handles
                .try_into()
                .map_err(|_| Error::Corrupt("column families".into()))?,
        )?;
        let store = Store {
            db,
            families,
            sync: config.sync_commits,
            group: Box::leak(Box::default()),
            memory,
        };
        store.check_format(dir)?;
        tracing::info!(path = %dir.display(), "state store opened");
        Ok(store)
    }

    /// Refuses a data directory of another layout version; records ours in a new one.
    fn check_format(&self, dir: &Path) -> Result<()> {
        let key = crate::meta_key(FORMAT_KEY);
        let found = match self.get(&key)? {
            Some(v) => v
                .as_slice()
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| Error::Corrupt("format version".into()))?,
            // Written before versions were recorded, or new.
            None if self.last_key_with_prefix(&crate::meta_key(b""))?.is_some() => 1,
            None => {
                let mut b = WriteBatch::default();
                b.put(key, FORMAT_VERSION.to_be_bytes());
                return self.write_opt(b, true);
            }
        };
        if found != FORMAT_VERSION {
            return Err(Error::FormatVersion {
                dir: dir.display().to_string(),
                found,
                expected: FORMAT_VERSION,
            });
        }
        Ok(())
    }

    /// Commits `batch` atomically (and durably when `sync_commits` is on).
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_opt(batch, self.sync)
    }

    /// Commits `batch` atomically without waiting for the disk; it becomes durable with the
    /// next [`Store::sync_wal`] (see there). A crash of the process alone loses nothing
    /// written: the log is in the operating system's hands once this returns.
    pub fn write_grouped(&self, batch: WriteBatch) -> Result<()> {
        self.write_opt(batch, false)
    }

    /// When `sync_commits` is on, makes every write made before this call durable: one
    /// fsync of the write-ahead log serves every caller waiting meanwhile (group commit), so
    /// concurrent committers share fsyncs instead of queueing one each. Blocks.
    pub fn sync_wal(&self) -> Result<()> {
        if !self.sync {
            return Ok(());
        }
        self.group.sync(self.db)
    }

    /// [`Store::write`] without waiting for the write-ahead log to reach the disk, for writes
    /// that only rearrange what is already durable (a power loss may undo them, never part
    /// of them, and never one without the writes before it).
    pub fn write_unsynced(&self, batch: WriteBatch) -> Result<()> {
        self.write_opt(batch, false)
    }

    /// Writes `batch` to the memtables only, not to the write-ahead log: it reaches the disk
    /// when its memtables are flushed ([`Store::flush_all`]), and a crash before that loses
    /// it. For bulk writes that are garbage after a crash (a backfill's steps, under an id no
    /// catalog entry names yet): flush before committing anything that names them.
    pub fn write_unlogged(&self, batch: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.write_with(batch, &wo)
    }

    /// Flushes every family's memtable to table files and waits: everything written before,
    /// through the write-ahead log or not, is then on disk.
    pub fn flush_all(&self) -> Result<()> {
        let mut fo = rocksdb::FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_cfs_opt(&self.families.handles, &fo)?;
        Ok(())
    }

    fn write_opt(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.write_with(batch, &wo)
    }

    fn write_with(&self, mut batch: WriteBatch, wo: &WriteOptions) -> Result<()> {
        let families = self.families;
        let rep = batch.rocksdb_rep(|key| families.id_of(key));
        self.db
            .write_opt(rocksdb::WriteBatch::from_data(&rep), wo)?;
        Ok(())
    }

    /// Starts a flush of the contents log family's memtable and returns: after a fold
    /// committed, the memtable holds the folded entries with their deletions, and the flush
    /// drops both (it writes only the deletions).
    pub fn flush_contents_log(&self) -> Result<()> {
        let mut fo = rocksdb::FlushOptions::default();
        fo.set_wait(false);
        let cf = self.families.of(&[crate::Keyspace::ContentsLog as u8]);
        self.db.flush_cf_opt(cf, &fo)?;
        Ok(())
    }

    /// A consistent read view of everything committed so far.
    pub fn snapshot(&self) -> Snapshot {
        // Read first: every write after it has a higher sequence number.
        let sequence = self.db.latest_sequence_number();
        Snapshot {
            inner: self.db.snapshot(),
            sequence,
            families: self.families,
        }
    }

    /// Reads one key from the latest state.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let v = self.db.get_cf(self.families.of(key), key)?;
        if v.is_some() {
            count_read(key);
        }
        Ok(v)
    }

    /// The last key starting with `prefix`, if any.
    pub fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut upper = prefix.to_vec();
        let Some(end) = prefix_successor(&mut upper) else {
            return Ok(None);
        };
        let mut it = self.db.iterator_cf(
            self.families.of(prefix),
            IteratorMode::From(end, Direction::Reverse),
        );
        match it.next() {
            Some(item) => {
                let (k, _) = item?;
                Ok(k.starts_with(prefix).then(|| k.to_vec()))
            }
            None => Ok(None),
        }
    }

    /// Whether any key lies in `begin..end` (both in one family).
    pub fn any_key_in(&self, begin: &[u8], end: &[u8]) -> Result<bool> {
        let mut it = self.db.iterator_cf(
            self.families.of(begin),
            IteratorMode::From(begin, Direction::Forward),
        );
        match it.next() {
            Some(item) => Ok(item?.0.as_ref() < end),
            None => Ok(false),
        }
    }

    /// Whether any key starts with `prefix`.
    pub fn any_key_with_prefix(&self, prefix: &[u8]) -> Result<bool> {
        let mut upper = prefix.to_vec();
        match prefix_successor(&mut upper) {
            Some(end) => self.any_key_in(prefix, end),
            None => self.any_key_in(prefix, &[0xFFu8; 16][..]),
        }
    }

    /// Adds a delete of every key starting with `prefix` to `batch`.
    pub fn delete_prefix(batch: &mut WriteBatch, prefix: &[u8]) {
        let mut upper = prefix.to_vec();
        match prefix_successor(&mut upper) {
            Some(end) => batch.delete_range(prefix, end),
            None => batch.delete_range(prefix, &[0xFFu8; 16][..]),
        }
    }
}

/// The merge operator of counted entries: values are an i64 BE count followed by a payload
/// that is the same for every write of one key (it is determined by the key). Merging adds
/// the counts and keeps the payload, so a writer can add to a count without reading it.
/// A count never reaches zero through merges: writers that subtract read and put or delete.
fn add_counts(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut total: i64 = 0;
    let mut payload: Option<&[u8]> = None;
    for v in existing.into_iter().chain(operands) {
        let (count, rest) = v.split_at_checked(COUNT_LEN)?;
        total = total.checked_add(i64::from_be_bytes(count.try_into().ok()?))?;
        payload.get_or_insert(rest);
    }
    let payload = payload?;
    let mut out = Vec::with_capacity(COUNT_LEN + payload.len());
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// Bytes of the count at the start of a counted entry.
pub const COUNT_LEN: usize = 8;

/// A counted entry's value: `count` (i64 BE) followed by `payload`; see [`add_counts`].
pub fn counted(count: i64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(COUNT_LEN + payload.len());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_successor(buf: &mut Vec<u8>) -> Option<&[u8]> {
    while let Some(last) = buf.last_mut() {
        if *last < 0xFF {
            *last += 1;
            return Some(buf.as_slice());
        }
        buf.pop();
    }
    None
}

/// Stored entries (key, value), in the order a scan returns them.
pub type Entries = Vec<(Box<[u8]>, Box<[u8]>)>;

/// `upper`, or else the end of `prefix`'s keys (`None`: no end).
fn upper_bound(prefix: &[u8], upper: Option<&[u8]>) -> Option<Vec<u8>> {
    match upper {
        Some(u) => Some(u.to_vec()),
        None => prefix_successor(&mut prefix.to_vec()).map(<[u8]>::to_vec),
    }
}

/// Up to `limit` entries of `it` while their keys start with `prefix`.
fn take_entries(
    it: rocksdb::DBIteratorWithThreadMode<'_, DB>,
    prefix: &[u8],
    limit: usize,
) -> Result<Entries> {
    let mut out = Vec::with_capacity(limit.min(4096));
    for item in it {
        let (k, v) = item.map_err(Error::from)?;
        if !k.starts_with(prefix) {
            break;
        }
        count_read(&k);
        out.push((k, v));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// A consistent point-in-time view of the store, shareable across threads.
pub struct Snapshot {
    inner: SnapshotWithThreadMode<'static, DB>,
    sequence: u64,
    families: Families,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

impl Snapshot {
    /// RocksDB's latest sequence number when the snapshot was taken. A commit made after
    /// reading this snapshot gets a higher one, so commits that each read a fresh snapshot
    /// under the writer lock get distinct numbers (also across restarts).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Reads one key.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let v = self.inner.get_cf(self.families.of(key), key)?;
        if v.is_some() {
            count_read(key);
        }
        Ok(v)
    }

    /// Up to `limit` entries whose keys start with `prefix`, in key order, from `lower`
    /// (inclusive) up to `upper` (exclusive) when given. Returns the entries; callers continue
    /// from the last key with [`next_key`].
    pub fn scan(
        &self,
        prefix: &[u8],
        lower: &[u8],
        upper: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries> {
        let mut ro = ReadOptions::default();
        if let Some(b) = upper_bound(prefix, upper) {
            ro.set_iterate_upper_bound(b);
        }
        let start = if lower > prefix { lower } else { prefix };
        let it = self.inner.iterator_cf_opt(
            self.families.of(prefix),
            ro,
            IteratorMode::From(start, Direction::Forward),
        );
        take_entries(it, prefix, limit)
    }
}

impl Snapshot {
    /// Up to `limit` entries whose keys start with `prefix` and lie below `upper` (exclusive;
    /// `None`: the whole prefix), in descending key order.
    pub fn scan_reverse(
        &self,
        prefix: &[u8],
        upper: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries> {
        self.scan_reverse_from(prefix, prefix, upper, limit)
    }

    /// [`Snapshot::scan_reverse`] stopping at `lower` (inclusive): what lies below, deleted
    /// entries included, is never visited.
    pub fn scan_reverse_from(
        &self,
        prefix: &[u8],
        lower: &[u8],
        upper: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(if lower > prefix { lower } else { prefix }.to_vec());
        if let Some(b) = upper_bound(prefix, upper) {
            ro.set_iterate_upper_bound(b);
        }
        let it = self
            .inner
            .iterator_cf_opt(self.families.of(prefix), ro, IteratorMode::End);
        take_entries(it, prefix, limit)
    }

    /// Every entry under `prefix`, in key order, read in pages.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries> {
        let mut out = Vec::new();
        self.for_each_page(prefix, 4096, |page| {
            out.extend(page);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with successive pages of up to `page` entries under `prefix`.
    pub fn for_each_page<F>(&self, prefix: &[u8], page: usize, mut f: F) -> Result<()>
    where
        F: FnMut(Entries) -> Result<()>,
    {
        let mut lower = prefix.to_vec();
        loop {
            let entries = self.scan(prefix, &lower, None, page)?;
            let Some((last, _)) = entries.last() else {
                return Ok(());
            };
            lower = next_key(last);
            let done = entries.len() < page;
            f(entries)?;
            if done {
                return Ok(());
            }
        }
    }

    /// Every entry under each of `prefixes` (in key order per prefix), read with one iterator
    /// re-seeked per prefix: far cheaper than a scan per prefix when there are many. A prefix
    /// between where the iterator was last sent and where it stands needs no seek (the
    /// iterator already stands at its first key, or past it when it has none): sorted prefixes
    /// of which most are absent cost about one seek per present one.
    pub fn scan_prefixes<P: AsRef<[u8]>>(&self, prefixes: &[P]) -> Result<Vec<Entries>> {
        let mut out = Vec::with_capacity(prefixes.len());
        let Some(first) = prefixes.first() else {
            return Ok(out);
        };
        let cf = self.families.of(first.as_ref());
        let mut it = self.inner.raw_iterator_cf_opt(cf, ReadOptions::default());
        // No key lies in `[from, where the iterator stands)`; `None`: not positioned yet.
        let mut from: Option<Vec<u8>> = None;
        for p in prefixes {
            let p = p.as_ref();
            if !std::ptr::eq(self.families.of(p), cf) {
                // Prefixes of one call share a keyspace; read any other on its own.
                out.push(self.scan_prefix(p)?);
                continue;
            }
            let placed = from.as_deref().is_some_and(|f| {
                f <= p && (!it.valid() || it.key().is_some_and(|k| p <= k))
            });
            if !placed {
                it.seek(p);
                from = Some(p.to_vec());
            }
            let mut entries = Vec::new();
            while it.valid() {
                let (Some(k), Some(v)) = (it.key(), it.value()) else {
                    break;
                };
                if !k.starts_with(p) {
                    break;
                }
                count_read(k);
                entries.push((Box::from(k), Box::from(v)));
                it.next();
            }
            it.status().map_err(Error::from)?;
            if let Some((k, _)) = entries.last() {
                from = Some(next_key(k));
            }
            out.push(entries);
        }
        Ok(out)
    }

    /// Reads many keys at once (one RocksDB MultiGet).
    pub fn multi_get<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
        let values: Vec<Option<Vec<u8>>> = self
            .inner
            .multi_get_cf(keys.iter().map(|k| (self.families.of(k.as_ref()), k)))
            .into_iter()
            .map(|r| r.map_err(Error::from))
            .collect::<Result<_>>()?;
        for (k, v) in keys.iter().zip(&values) {
            if v.is_some() {
                count_read(k.as_ref());
            }
        }
        Ok(values)
    }
}

/// The smallest key after `key`: where a scan resumes.
pub fn next_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

#[cfg(test)]
mod tests;
