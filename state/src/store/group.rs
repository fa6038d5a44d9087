//! Group commit: shared fsyncs of the write-ahead log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rocksdb::DB;

use crate::Result;

/// The highest sequence number known durable, and the lock the one caller syncing for
/// everyone holds.
#[derive(Default)]
pub(super) struct GroupSync {
    synced: AtomicU64,
    leader: Mutex<()>,
}

impl GroupSync {
    /// Makes every write to `db` made before this call durable; callers waiting while one
    /// syncs are served by that sync.
    pub(super) fn sync(&self, db: &DB) -> Result<()> {
        let mine = db.latest_sequence_number();
        if self.synced.load(Ordering::Acquire) >= mine {
            return Ok(());
        }
        let _leader = self
            .leader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.synced.load(Ordering::Acquire) >= mine {
            return Ok(()); // a leader synced for us while we waited
        }
        // Everything with a sequence number up to here is in the log already.
        let upto = db.latest_sequence_number();
        db.flush_wal(true)?;
        self.synced.fetch_max(upto, Ordering::Release);
        Ok(())
    }
}
