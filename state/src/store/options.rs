//! RocksDB options of the store's column families: what each family's keys look like decides
//! its memtable, compression and compaction (see [`super::Store::open`]).

use rocksdb::Options;

use super::StateConfig;
use crate::Result;

/// Memtable size of the families written at scattered keys (operator state, aggregate views'
/// contents).
const SCATTERED_MEMTABLE_BYTES: usize = 4 << 20;

/// Smallest memtable of the contents log family (see `contents_log.rs` in freshet-dataflow).
pub(super) const CONTENTS_LOG_MEMTABLE_BYTES: usize = 16 << 20;

/// Memtables of all families together, besides the contents log's.
const DB_MEMTABLE_BYTES: usize = 192 << 20;

/// The memtables' limit: [`DB_MEMTABLE_BYTES`] and the contents log's, at most half of what
/// the block cache and memtables share.
pub(super) fn memtable_limit(cache_bytes: usize, log_memtable: usize) -> usize {
    (DB_MEMTABLE_BYTES + log_memtable).min(cache_bytes / 2)
}

/// The unit in which memtables take memory.
pub(super) const ARENA_BLOCK_BYTES: usize = 1 << 20;

/// Write-ahead log kept before the families holding its oldest data are flushed, besides
/// twice the contents log's budget (the log's memtable holds up to that much of it).
pub(super) const WAL_BYTES: u64 = 256 << 20;

/// Age before a last-level file is rewritten only to drop what snapshots no longer need.
const BOTTOMMOST_COMPACTION_DELAY_SECS: u32 = 600;

/// Flushed files of a scattered family that wait in level 0 before compaction merges them
/// into level 1. Scattered keys overlap all of level 1, so every such compaction rewrites it:
/// merging many small files at once rewrites it less often. Measured (benchmarks.md history,
/// 2026-11-25): 16 → 64 cut (b)'s server CPU by ~15% and (c)'s by ~8% once MIN/MAX multisets hold
/// millions of entries; point reads and short scans pay a bloom filter check per waiting file
/// (the 1-row update latency went from ~1.5 to ~1.8 ms).
const SCATTERED_L0_FILES: i32 = 64;

/// The options of family `name`: the database's `opts` with what its keys call for. The
/// memtables of all families together stay under `memtables`; the contents log's holds
/// `log_memtable`.
pub(super) fn family_options(
    opts: &Options,
    name: &str,
    config: &StateConfig,
    memtables: usize,
    log_memtable: usize,
) -> Result<Options> {
    let mut cf = opts.clone();
    if matches!(name, "operators" | "aggregate_views" | "views") {
        // Keys not in arrival order (operator state, groups, view rows keyed by row or
        // first column): flushed files overlap and are soon rewritten by compaction, so
        // compressing them at flush would be wasted CPU (Nexmark q0: each flush's view file
        // was merged into the last level). The other families' mostly sequential files are
        // moved down as written, so they are compressed once, at flush. (A view keyed by an
        // ever-growing first column, tweet ids, has its files merged, compressed, instead of
        // moved; its flush is as much cheaper.)
        let mut levels = [rocksdb::DBCompressionType::Lz4; 7];
        levels[0] = rocksdb::DBCompressionType::None;
        cf.set_compression_per_level(&levels);
    }
    if name == "operators" || name == "aggregate_views" {
        // A small memtable: its skip list stays shallow and mostly in CPU cache, so the
        // many scattered inserts of operator state cost fewer cache misses; rewrites of
        // one key (accumulators) collapse at flush.
        cf.set_write_buffer_size(
            SCATTERED_MEMTABLE_BYTES
                .min(config.memtable_bytes)
                .min(memtables / 2),
        );
        cf.set_level_zero_file_num_compaction_trigger(SCATTERED_L0_FILES);
        cf.set_level_zero_slowdown_writes_trigger(SCATTERED_L0_FILES * 3);
        cf.set_level_zero_stop_writes_trigger(SCATTERED_L0_FILES * 4);
    }
    if matches!(name, "operators" | "aggregate_views" | "views") {
        // No memtable bloom filter: its upkeep, a cache miss on every insert, cost
        // more than it saved. Operator state is read through operator caches and by
        // short scans ((b) −5%, (c) −8% server CPU without it; benchmarks.md,
        // 2026-11-25). View contents are written blind (puts, merges) and read by
        // key for rows leaving, which are there; only an ad-hoc point SELECT of an
        // absent key now searches the skip list (Nexmark q0 +18 %, q1 +14 %).
        cf.set_memtable_prefix_bloom_ratio(0.0);
        cf.set_memtable_whole_key_filtering(false);
    }
    if name == "contents_log" {
        // Entries live from their epoch to the next fold, which schedules a flush
        // ([`Store::flush_contents_log`]): the memtable then holds each entry with
        // its deletion, and the flush writes only the deletions. Not compressed:
        // entries reach a file only when a fold comes late (several views' logs
        // past the memtable, a long snapshot), and are read back once.
        cf.set_write_buffer_size(log_memtable.min(memtables / 2));
        cf.set_compression_type(rocksdb::DBCompressionType::None);
    }
    // Each memtable insert starts from where the previous one went (the hint of
    // the family's one-byte prefix) and climbs only as far as it must: a batch
    // arrives in key order, so its scattered keys cost a few skip-list steps
    // each instead of a descent from the top. (No setter in the C API: options
    // string.)
    //
    // A last-level file written while a snapshot was open keeps its sequence
    // numbers, and RocksDB rewrites it once the snapshot is gone only to zero them
    // ("BottommostFiles"): a flushed file that is the family's last level, or a
    // compaction's output while a read runs, was written twice (Nexmark q0: a
    // fifth of its compaction). Delayed, the rewrite is mostly left to the
    // compaction that merges the file anyway; space held under an old snapshot
    // (deleted rows) still comes back, later.
    let cf = cf.get_options_from_string(&format!(
        "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1;\
         bottommost_file_compaction_delay={BOTTOMMOST_COMPACTION_DELAY_SECS}"
    ))?;
    Ok(cf)
}
