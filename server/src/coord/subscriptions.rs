//! The subscription registry: after each epoch commits, the changes of every relation someone
//! subscribes to are handed to its subscribers (the post-commit publish point).
//!
//! Publishing never blocks the committer: each subscriber has an unbounded queue whose rows
//! are counted, and a subscriber with more than [`Subscriptions::max_queued_rows`] rows
//! waiting is cut off (it sees [`Changes::recv`] fail with 53400) rather than holding memory
//! without bound or slowing ingest. The latest committed epoch is published too, so that
//! subscribers can announce progress while their relation does not change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use freshet_common::{Datum, PgError, SqlState, TableId};
use freshet_dataflow::EpochChanges;
use tokio::sync::{mpsc, watch};

use crate::engine::Engine;

/// One epoch's changes to one relation: (row, weight) pairs, as committed at `epoch`.
#[derive(Debug)]
pub struct EpochRows {
    pub epoch: u64,
    pub rows: Vec<(Vec<Datum>, i64)>,
}

/// Every subscriber's queue, by the relation it watches.
#[derive(Debug)]
pub struct Subscriptions {
    feeds: Mutex<HashMap<TableId, Vec<Feed>>>,
    latest: watch::Sender<u64>,
    next_id: AtomicU64,
    /// Rows one subscriber may have waiting before it is cut off.
    pub max_queued_rows: usize,
}

#[derive(Debug)]
struct Feed {
    id: u64,
    tx: mpsc::UnboundedSender<Arc<EpochRows>>,
    queued: Arc<AtomicUsize>,
    /// Why the feed was ended by the server, if it was.
    ended: Arc<Mutex<Option<PgError>>>,
}

/// The rows an epoch appends to `relation` (a source), each once; `None` when none.
fn appended_rows(
    changes: &EpochChanges,
    relation: TableId,
) -> datafusion::error::Result<Option<Vec<(Vec<Datum>, i64)>>> {
    let Some(batches) = changes.appends.get(&relation) else {
        return Ok(None);
    };
    let mut rows = Vec::new();
    for b in batches {
        rows.extend(
            freshet_sql::df_convert::batch_to_rows(b)?
                .into_iter()
                .map(|r| (r, 1)),
        );
    }
    Ok((!rows.is_empty()).then_some(rows))
}

impl Subscriptions {
    /// A registry whose latest committed epoch is `latest` (the store's at start).
    pub fn new(max_queued_rows: usize, latest: u64) -> Self {
        Self {
            feeds: Mutex::new(HashMap::new()),
            latest: watch::channel(latest).0,
            next_id: AtomicU64::new(1),
            max_queued_rows,
        }
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<TableId, Vec<Feed>>> {
        lock(&self.feeds)
    }

    /// Hands epoch `epoch`'s committed `changes` to the subscribers of each relation they
    /// touch, then announces `epoch` as the latest. Call after the epoch's commit, in commit
    /// order (under the writer lock).
    pub fn publish(&self, epoch: u64, changes: &EpochChanges) {
        {
            let mut feeds = self.feeds();
            for (relation, list) in feeds.iter_mut() {
                let rows = match changes.tables.get(relation).filter(|r| !r.is_empty()) {
                    Some(rows) => rows.clone(),
                    // A source's rows arrive as Arrow batches: each once.
                    None => match appended_rows(changes, *relation) {
                        Ok(Some(rows)) => rows,
                        Ok(None) => continue,
                        Err(e) => {
                            // Never a silent gap: its subscribers end with the error.
                            for f in list.drain(..) {
                                *lock(&f.ended) = Some(PgError::internal(&e));
                            }
                            continue;
                        }
                    },
                };
                let n = rows.len();
                let msg = Arc::new(EpochRows { epoch, rows });
                list.retain(|f| {
                    if f.queued.fetch_add(n, Ordering::SeqCst) + n > self.max_queued_rows {
                        *lock(&f.ended) = Some(PgError::new(
                            SqlState::CONFIGURATION_LIMIT_EXCEEDED,
                            format!(
                                "subscriber fell behind: more than {} changed rows were waiting to be read",
                                self.max_queued_rows
                            ),
                        ));
                        return false;
                    }
                    f.tx.send(Arc::clone(&msg)).is_ok()
                });
            }
        }
        self.latest.send_replace(epoch);
    }

    /// The latest epoch published. Under the writer lock, a snapshot holds exactly the
    /// epochs up to it.
    pub fn latest(&self) -> u64 {
        *self.latest.borrow()
    }

    /// A receiver of the latest published epoch.
    pub fn watch_latest(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Subscribers right now, for `freshet_internal` and tests.
    pub fn count(&self) -> usize {
        self.feeds().values().map(Vec::len).sum()
    }

    /// Ends every subscription to `relation` (dropped) with `why`.
    pub fn close(&self, relation: TableId, why: &PgError) {
        if let Some(list) = self.feeds().remove(&relation) {
            for f in list {
                *lock(&f.ended) = Some(why.clone());
            }
        }
    }

    fn remove(&self, relation: TableId, id: u64) {
        let mut feeds = self.feeds();
        if let Some(list) = feeds.get_mut(&relation) {
            list.retain(|f| f.id != id);
            if list.is_empty() {
                feeds.remove(&relation);
            }
        }
    }
}

/// What [`Changes::wait`] woke for.
pub enum Woke {
    Rows(Arc<EpochRows>),
    Latest,
}

/// One subscriber's end: the epochs after its start that changed its relation, in order.
/// Dropping it unsubscribes.
pub struct Changes {
    engine: Arc<Engine>,
    relation: TableId,
    id: u64,
    rx: mpsc::UnboundedReceiver<Arc<EpochRows>>,
    queued: Arc<AtomicUsize>,
    ended: Arc<Mutex<Option<PgError>>>,
    latest: watch::Receiver<u64>,
    /// An epoch taken from the queue but not handed out yet (see [`Changes::next_through`]).
    held: Option<Arc<EpochRows>>,
}

impl Changes {
    /// Subscribes to `relation`'s changes from the next commit on. Call with the writer lock
    /// held (the guard proves it): every epoch after the caller's snapshot is delivered.
    pub fn register(
        engine: &Arc<Engine>,
        _writer: &mut crate::engine::WriteState,
        relation: TableId,
    ) -> Changes {
        let subs = &engine.subscriptions;
        let (tx, rx) = mpsc::unbounded_channel();
        let id = subs.next_id.fetch_add(1, Ordering::Relaxed);
        let queued = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(Mutex::new(None));
        subs.feeds().entry(relation).or_default().push(Feed {
            id,
            tx,
            queued: Arc::clone(&queued),
            ended: Arc::clone(&ended),
        });
        engine.dataflows.observe(relation, true);
        crate::sources::refresh_columns(engine, relation);
        Changes {
            engine: Arc::clone(engine),
            relation,
            id,
            rx,
            queued,
            ended,
            latest: subs.latest.subscribe(),
            held: None,
        }
    }

    /// The next queued epoch's changes if its epoch is at most `through`, without waiting.
    pub fn next_through(&mut self, through: u64) -> Result<Option<Arc<EpochRows>>, PgError> {
        let next = match self.held.take() {
            Some(e) => e,
            None => match self.rx.try_recv() {
                Ok(e) => self.taken(e),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(None),
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(self.ended()),
            },
        };
        if next.epoch <= through {
            Ok(Some(next))
        } else {
            self.held = Some(next);
            Ok(None)
        }
    }

    /// The latest committed epoch (later [`Changes::wait`]s wake only for a newer one).
    pub fn latest(&mut self) -> u64 {
        *self.latest.borrow_and_update()
    }

    /// Waits for the next epoch's changes or, with `latest_too`, for a newer latest epoch
    /// than [`Changes::latest`] last returned.
    pub async fn wait(&mut self, latest_too: bool) -> Result<Woke, PgError> {
        if let Some(e) = self.held.take() {
            return Ok(Woke::Rows(e));
        }
        let got = if latest_too {
            tokio::select! {
                r = self.rx.recv() => r,
                // The sender lives as long as the engine, which `self` holds.
                _ = self.latest.changed() => return Ok(Woke::Latest),
            }
        } else {
            self.rx.recv().await
        };
        match got {
            Some(e) => Ok(Woke::Rows(self.taken(e))),
            None => Err(self.ended()),
        }
    }

    fn taken(&self, e: Arc<EpochRows>) -> Arc<EpochRows> {
        self.queued.fetch_sub(e.rows.len(), Ordering::SeqCst);
        e
    }

    fn ended(&self) -> PgError {
        lock(&self.ended).clone().unwrap_or_else(|| {
            PgError::new(SqlState::INTERNAL_ERROR, "subscription ended unexpectedly")
        })
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.engine.subscriptions.remove(self.relation, self.id);
        self.engine.dataflows.observe(self.relation, false);
        // A source's reader goes back to the columns its views read (a batch decoded with
        // the wider set meanwhile is decoded again at commit).
        crate::sources::refresh_columns(&self.engine, self.relation);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
