//! Memory for a session's statements: the session's own DataFusion pool (`--query-memory-mb`,
//! per statement) that also draws on the server-wide budget of all sessions
//! (`--query-memory-total-mb`). Either running out fails the allocation (DataFusion spills
//! where it can, or the statement fails with 53200).
//!
//! Both limits hold for what statements really allocate, not only for what DataFusion's
//! operators reserve: each statement runs charged to an [`Account`] of its own
//! (`crate::alloc`), checked whenever an operator asks for more and after every batch of
//! rows.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::Stream;

use crate::alloc::Account;

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

    /// The most all sessions together may reserve.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now, all sessions together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// The account of the statement a session runs now (a session runs one at a time).
#[derive(Debug, Default)]
pub struct StatementAccount(Mutex<Option<Arc<Account>>>);

impl StatementAccount {
    /// A fresh account for the next statement (none when the process has no slot left).
    pub fn begin(&self) -> Option<Arc<Account>> {
        let account = Account::open().map(Arc::new);
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = account.clone();
        account
    }

    fn live(&self) -> Option<usize> {
        let account = self.0.lock().unwrap_or_else(|e| e.into_inner());
        account.as_ref().map(|a| a.live())
    }
}

/// A session's pool: `inner` (its own limit, `limit` bytes) plus the server's budget, both
/// also checked against what the running statement has allocated.
#[derive(Debug)]
pub struct BudgetedPool {
    pub inner: Arc<dyn MemoryPool>,
    pub server: Arc<ServerBudget>,
    pub limit: usize,
    pub statement: Arc<StatementAccount>,
}

impl BudgetedPool {
    /// Refuses `additional` bytes when the statement has allocated more than its limit, or
    /// all statements together more than theirs. Operators ask after growing as often as
    /// before, so what is allocated now is compared, not that plus `additional`; operators
    /// that ask first are held by their reservations (`inner`).
    fn check_allocated(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let consumer = reservation.consumer().name();
        if let Some(live) = self.statement.live() {
            if live > self.limit {
                return Err(over_statement_limit(
                    live,
                    self.limit,
                    Some((additional, consumer)),
                ));
            }
        }
        let all = crate::alloc::all_live();
        if all > self.server.limit {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "statements of all sessions together have allocated {} MiB of the server's \
                 query memory ({} MiB, --query-memory-total-mb): could not take {additional} \
                 more bytes for {consumer}",
                all >> 20,
                self.server.limit >> 20,
            )));
        }
        Ok(())
    }
}

fn over_statement_limit(
    live: usize,
    limit: usize,
    asked: Option<(usize, &str)>,
) -> DataFusionError {
    let asked = asked
        .map(|(n, consumer)| format!(": could not take {n} more bytes for {consumer}"))
        .unwrap_or_default();
    DataFusionError::ResourcesExhausted(format!(
        "the statement has allocated {} MiB, its limit is {} MiB (--query-memory-mb){asked}",
        live >> 20,
        limit >> 20
    ))
}

/// A statement's rows, produced charged to its account; past the statement's limit the
/// stream ends with 53200.
struct ChargedRows {
    inner: SendableRecordBatchStream,
    account: Arc<Account>,
    limit: usize,
    failed: bool,
}

impl Stream for ChargedRows {
    type Item = Result<RecordBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<RecordBatch>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let polled = {
            let _charged = this.account.enter();
            this.inner.as_mut().poll_next(cx)
        };
        let live = this.account.live();
        if matches!(polled, Poll::Ready(Some(Ok(_)))) && live > this.limit {
            this.failed = true;
            return Poll::Ready(Some(Err(over_statement_limit(live, this.limit, None))));
        }
        polled
    }
}

/// Where statements' rows are produced: a runtime of their own, so that what DataFusion
/// spawns (repartitioning, merges, spill reads on blocking threads) runs beside the
/// server's connections and epochs rather than among them, and at most
/// [`QUERY_BLOCKING_THREADS`] spill files are read at once (each blocking thread keeps an
/// allocator heap of its own: a sort merging 40 spill files had 27 of them).
fn query_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .max_blocking_threads(QUERY_BLOCKING_THREADS)
            .thread_name("freshet-query")
            .thread_stack_size(freshet_sql::limits::STATEMENT_STACK_BYTES)
            .enable_all()
            .build()
            .expect("building the query runtime")
    })
}

/// Runs `future` on the query runtime, charged to the account this thread charges now:
/// DataFusion starts some of a plan's tasks when the plan is executed, before its first
/// batch is asked for (`CoalescePartitionsExec`), and they run where they were started.
pub async fn on_query_runtime<T: Send + 'static>(
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let charged = crate::alloc::Charged::current(Box::pin(future));
    match query_runtime().spawn(charged).await {
        Ok(out) => out,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Blocking threads of the query runtime.
pub const QUERY_BLOCKING_THREADS: usize = 4;

/// `inner`'s rows, produced on the query runtime charged to `account` (53200 past `limit`),
/// one batch ahead of the reader; when the reader goes away, so does the statement.
pub fn produce_rows(
    inner: SendableRecordBatchStream,
    account: Arc<Account>,
    limit: usize,
) -> SendableRecordBatchStream {
    use futures::StreamExt;
    let schema = inner.schema();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(1);
    let mut rows = ChargedRows {
        inner,
        account,
        limit,
        failed: false,
    };
    query_runtime().spawn(async move {
        use futures::FutureExt;
        loop {
            // A panic in the plan is the statement's error (XX000), not a quiet end of rows.
            let next = tokio::select! {
                _ = tx.closed() => break,
                next = std::panic::AssertUnwindSafe(rows.next()).catch_unwind() => next,
            };
            let next = match next {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let _ = tx
                        .send(Err(datafusion::error::DataFusionError::Internal(format!(
                            "the statement's plan panicked: {what}"
                        ))))
                        .await;
                    break;
                }
            };
            if tx.send(next).await.is_err() {
                break;
            }
        }
    });
    let received = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, received))
}

impl Drop for ChargedRows {
    fn drop(&mut self) {
        tracing::debug!(
            "statement done: allocated at most {} KiB, {} KiB still live",
            self.account.peak() >> 10,
            self.account.live() >> 10
        );
    }
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
        self.check_allocated(reservation, additional)?;
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
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_panicking_plan_is_an_error_not_an_end_of_rows() {
        let schema = Arc::new(Schema::empty());
        let panicking =
            futures::stream::poll_fn(|_| -> std::task::Poll<Option<Result<RecordBatch>>> {
                panic!("boom")
            });
        let inner: SendableRecordBatchStream = Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, panicking),
        );
        let account = Arc::new(Account::open().expect("a slot"));
        let mut rows = produce_rows(inner, account, usize::MAX);
        let first = rows.next().await.expect("an item, not the end");
        assert!(first.unwrap_err().to_string().contains("panicked: boom"));
        assert!(rows.next().await.is_none());
    }
}
