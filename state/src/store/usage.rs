//! What the store holds: RocksDB's memory against its limits, and the space keys take on disk.

use rocksdb::Range;

use super::{prefix_successor, MemoryUse, Store};
use crate::Result;

impl Store {
    /// RocksDB's memory against its limits.
    pub fn memory_use(&self) -> MemoryUse {
        MemoryUse {
            cache_limit: self.memory.cache_bytes,
            cache_used: self.memory.cache.get_usage(),
            memtable_limit: self.memory.memtable_bytes,
            memtable_used: self.memory.manager.get_usage(),
        }
    }

    /// Where RocksDB's memory is, in bytes (and its table file count), as (name, value):
    /// memtables and table readers (index and filter blocks outside the block cache) summed
    /// over the families; the shared block cache's usage and pinned part.
    pub fn memory_usage(&self) -> Result<Vec<(&'static str, u64)>> {
        let sum = |property: &str| -> Result<u64> {
            let mut total = 0;
            for cf in self.families.handles {
                total += self.db.property_int_value_cf(cf, property)?.unwrap_or(0);
            }
            Ok(total)
        };
        let cache = |property: &str| -> Result<u64> {
            Ok(self
                .db
                .property_int_value_cf(self.families.handles[0], property)?
                .unwrap_or(0))
        };
        Ok(vec![
            (
                "rocksdb_memtable_bytes",
                sum("rocksdb.cur-size-all-mem-tables")?,
            ),
            (
                "rocksdb_table_reader_bytes",
                sum("rocksdb.estimate-table-readers-mem")?,
            ),
            (
                "rocksdb_block_cache_bytes",
                cache("rocksdb.block-cache-usage")?,
            ),
            (
                "rocksdb_block_cache_pinned_bytes",
                cache("rocksdb.block-cache-pinned-usage")?,
            ),
            ("rocksdb_table_files", self.db.live_files()?.len() as u64),
        ])
    }

    /// Approximately how many bytes the keys starting with each of `prefixes` take in the
    /// table files (compressed; what is still only in the memtables is not counted).
    pub fn approximate_disk_size(&self, prefixes: &[Vec<u8>]) -> u64 {
        prefixes
            .iter()
            .map(|prefix| {
                let mut end = prefix.clone();
                let Some(end) = prefix_successor(&mut end).map(<[u8]>::to_vec) else {
                    return 0;
                };
                let cf = self.families.of(prefix);
                self.db
                    .get_approximate_sizes_cf(&cf, &[Range::new(prefix, &end)])
                    .first()
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// The bytes of every table file.
    pub fn disk_size(&self) -> Result<u64> {
        let mut total = 0;
        for cf in self.families.handles {
            total += self
                .db
                .property_int_value_cf(cf, "rocksdb.total-sst-files-size")?
                .unwrap_or(0);
        }
        Ok(total)
    }
}
