//! Row locks of transaction blocks: an UPDATE or DELETE in a block locks each row it changes
//! until the block ends, so a second block changing the same row waits for the first to commit
//! or roll back — as PostgreSQL's row locks do — instead of both running on and one failing at
//! COMMIT. A wait that would close a cycle of blocks waiting for each other fails with 40P01
//! (`deadlock detected`), as in PostgreSQL; the waiter's statement fails, its locks stay until
//! its block ends.
//!
//! Locks are in memory only: they protect blocks that are open, which a restart ends anyway.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use freshet_common::{PgError, SqlState};

/// The row locks of all open blocks.
#[derive(Debug, Default)]
pub struct RowLocks {
    table: Mutex<Table>,
    released: tokio::sync::Notify,
    next_owner: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    /// Locked store key → the block holding it.
    held: HashMap<Vec<u8>, u64>,
    /// Each block's locked keys.
    owned: HashMap<u64, Vec<Vec<u8>>>,
    /// Waiting block → the block it waits for.
    waits: HashMap<u64, u64>,
}

impl RowLocks {
    /// A new lock owner (one per transaction block).
    pub fn new_owner(&self) -> u64 {
        self.next_owner.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Locks `keys` for `owner`, in key order, waiting while another block holds one.
    pub async fn lock(&self, owner: u64, keys: &[&[u8]]) -> Result<(), PgError> {
        let mut sorted: Vec<&[u8]> = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for key in sorted {
            self.lock_one(owner, key).await?;
        }
        Ok(())
    }

    async fn lock_one(&self, owner: u64, key: &[u8]) -> Result<(), PgError> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut t = self.table();
                match t.held.get(key) {
                    None => {
                        t.held.insert(key.to_vec(), owner);
                        t.owned.entry(owner).or_default().push(key.to_vec());
                        t.waits.remove(&owner);
                        return Ok(());
                    }
                    Some(&h) if h == owner => {
                        t.waits.remove(&owner);
                        return Ok(());
                    }
                    Some(&holder) => {
                        if t.waits_for(holder, owner) {
                            t.waits.remove(&owner);
                            return Err(PgError::new(SqlState("40P01"), "deadlock detected")
                                .with_detail("Two transaction blocks each wait for a row the other has changed.")
                                .with_hint("See server log for query details."));
                        }
                        t.waits.insert(owner, holder);
                    }
                }
            }
            // Woken by a release; the timeout only bounds a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(200), released).await;
        }
    }

    /// Releases every lock of `owner` (its block ended).
    pub fn release(&self, owner: u64) {
        let had = {
            let mut t = self.table();
            t.waits.remove(&owner);
            match t.owned.remove(&owner) {
                Some(keys) => {
                    for k in keys {
                        t.held.remove(&k);
                    }
                    true
                }
                None => false,
            }
        };
        if had {
            self.released.notify_waiters();
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Table {
    /// Whether `from`, following the blocks each waits for, reaches `to`.
    fn waits_for(&self, mut from: u64, to: u64) -> bool {
        let mut seen = HashSet::new();
        loop {
            if from == to {
                return true;
            }
            if !seen.insert(from) {
                return false;
            }
            match self.waits.get(&from) {
                Some(&next) => from = next,
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_second_block_waits_and_a_cycle_is_a_deadlock() {
        let locks = Arc::new(RowLocks::default());
        let (a, b) = (locks.new_owner(), locks.new_owner());
        locks.lock(a, &[b"k1"]).await.unwrap();
        locks.lock(b, &[b"k2"]).await.unwrap();
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move { locks.lock(b, &[b"k1"]).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "b must wait for a's lock");
        let err = locks.lock(a, &[b"k2"]).await.unwrap_err();
        assert_eq!(err.sqlstate, SqlState("40P01"));
        locks.release(a);
        waiter.await.unwrap().unwrap();
        locks.lock(a, &[b"k3"]).await.unwrap();
        locks.release(b);
        locks.release(a);
    }
}
