//! `freshet_internal.memory`: the server's memory budget (`--memory-mb`) and what uses it,
//! next to the statements' budget and the process's resident memory.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::catalog::TableProvider;
use datafusion::error::Result;
use freshet_dataflow::ops::cache;

use super::{clamp, relation};
use crate::coord::engine::Engine;
use crate::memory::ServerBudget;

/// `memory (name, budget_bytes, used_bytes)`, one row per part:
/// - `state`: the whole of `--memory-mb` (the next three together);
/// - `rocksdb_block_cache`: RocksDB's block cache, the memtables' charges included;
/// - `rocksdb_memtables`: the memtables, within the block cache (a flush starts past the
///   budget);
/// - `operator_caches`: the operator caches of every view (evicting past their share);
/// - `statements`: what running statements reserve of `--query-memory-total-mb`;
/// - `process` and `process_peak`: the server's resident memory, now and at its highest;
///   `process_heap_blocks`: what it holds in heap blocks of 512 bytes or more (smaller ones
///   are not counted) — RocksDB's own memory is not on this heap (no budgets).
pub fn memory(engine: &Engine, statements: &ServerBudget) -> Result<Arc<dyn TableProvider>> {
    let rocksdb = engine.store.memory_use();
    let caches = cache::usage();
    let (rss, peak) = resident();
    let rows: [(&str, Option<u64>, u64); 8] = [
        (
            "state",
            Some((rocksdb.cache_limit + caches.budget) as u64),
            (rocksdb.cache_used + caches.used) as u64,
        ),
        (
            "rocksdb_block_cache",
            Some(rocksdb.cache_limit as u64),
            rocksdb.cache_used as u64,
        ),
        (
            "rocksdb_memtables",
            Some(rocksdb.memtable_limit as u64),
            rocksdb.memtable_used as u64,
        ),
        (
            "operator_caches",
            Some(caches.budget as u64),
            caches.used as u64,
        ),
        (
            "statements",
            Some(statements.limit() as u64),
            statements.used() as u64,
        ),
        ("process", None, rss),
        (
            "process_heap_blocks",
            None,
            crate::alloc::large_live() as u64,
        ),
        ("process_peak", None, peak),
    ];
    relation(
        vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("budget_bytes", DataType::Int64, true),
            Field::new("used_bytes", DataType::Int64, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1.map(clamp)))),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| clamp(r.2)),
            )),
        ],
    )
}

/// The process's resident memory now and at its peak, in bytes (`/proc/self/status`; zeros
/// where it cannot be read).
fn resident() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
