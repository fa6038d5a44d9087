//! Memory for a session's statements: the session's own DataFusion pool (`--query-memory-mb`,
//! per statement) that also draws on the server-wide budget of all sessions
//! (`--query-memory-total-mb`). Either running out fails the allocation (DataFusion spills
//! where it can, or the statement fails with 53200).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::common::DataFusionError;
use datafusion::error::Result;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// Bytes reserved by statements of all sessions, and the most they may reserve.
#[derive(Debug)]
pub struct ServerBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ServerBudget {
    pub fn new(limit: usize) -> Arc<ServerBudget> {
        Arc::new(ServerBudget {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok()
    }

    fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    fn give(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Bytes reserved now, all sessions together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A session's pool: `inner` (its own limit) plus the server's budget.
#[derive(Debug)]
pub struct BudgetedPool {
    pub inner: Arc<dyn MemoryPool>,
    pub server: Arc<ServerBudget>,
}

impl std::fmt::Display for BudgetedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} within the server's query memory", self.inner)
    }
}

impl MemoryPool for BudgetedPool {
    fn name(&self) -> &str {
        "budgeted"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.server.take(additional);
        self.inner.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.server.give(shrink);
        self.inner.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        if !self.server.try_take(additional) {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "statements of all sessions together use the server's query memory \
                 ({} MiB, --query-memory-total-mb): could not take {additional} more bytes for {}",
                self.server.limit >> 20,
                reservation.consumer().name()
            )));
        }
        if let Err(e) = self.inner.try_grow(reservation, additional) {
            self.server.give(additional);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}
