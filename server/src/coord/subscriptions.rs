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

use crate::coord::engine::Engine;

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
    /// For a relation that keeps a changelog: whether the subscriber fell behind and reads
    /// the epochs it missed from the changelog (see [`Lag`]); `None`: it is cut off instead.
    lag: Option<Arc<Mutex<Lag>>>,
}

/// A subscriber that fell behind: epochs `first..=through` were not queued for it (they are
/// in its relation's changelog). Shared between the publisher, which extends `through` while
/// the subscriber is behind, and the subscriber, which reads them from the changelog and
/// rejoins the live feed once it has read through every skipped epoch — both under this
/// lock, so that no epoch falls between the two.
#[derive(Debug, Default)]
pub struct Lag {
    behind: bool,
    first: u64,
    through: u64,
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
                let max = self.max_queued_rows;
                list.retain(|f| {
                    let full = f.queued.load(Ordering::SeqCst) + n > max;
                    match &f.lag {
                        Some(lag) => {
                            let mut lag = lock(lag);
                            if lag.behind {
                                lag.through = epoch;
                                return true;
                            }
                            if full {
                                // The changelog holds this epoch and the next: the subscriber
                                // reads them from there once it has read its queue.
                                *lag = Lag {
                                    behind: true,
                                    first: epoch,
                                    through: epoch,
                                };
                                return true;
                            }
                        }
                        None if full => {
                            *lock(&f.ended) = Some(PgError::new(
                                SqlState::CONFIGURATION_LIMIT_EXCEEDED,
                                format!(
                                    "subscriber fell behind: more than {max} changed rows were waiting to be read"
                                ),
                            )
                            .with_hint("Subscribe to a materialized view created WITH (retain_changes = …): a subscriber that falls behind then reads what it missed from its changelog."));
                            return false;
                        }
                        None => {}
                    }
                    f.queued.fetch_add(n, Ordering::SeqCst);
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

    /// Changed rows queued for subscribers, not yet read (each at most `max_queued_rows`).
    pub fn queued_rows(&self) -> usize {
        self.feeds()
            .values()
            .flatten()
            .map(|f| f.queued.load(Ordering::SeqCst))
            .sum()
    }

    /// Subscribers that fell behind and read what they missed from a changelog.
    pub fn behind(&self) -> usize {
        self.feeds()
            .values()
            .flatten()
            .filter(|f| f.lag.as_ref().is_some_and(|l| lock(l).behind))
            .count()
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
    /// Shared with the feed when the relation keeps a changelog (see [`Lag`]).
    lag: Option<Arc<Mutex<Lag>>>,
    /// While behind: the next epoch to read from the changelog, and epochs read from it not
    /// handed out yet.
    log_next: Option<u64>,
    log_read: std::collections::VecDeque<Arc<EpochRows>>,
}

impl Changes {
    /// Subscribes to `relation`'s changes from the next commit on. Call with the writer lock
    /// held (the guard proves it): every epoch after the caller's snapshot is delivered.
    pub fn register(
        engine: &Arc<Engine>,
        _writer: &mut crate::coord::engine::WriteState,
        relation: TableId,
    ) -> Changes {
        let subs = &engine.subscriptions;
        let (tx, rx) = mpsc::unbounded_channel();
        let id = subs.next_id.fetch_add(1, Ordering::Relaxed);
        let queued = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(Mutex::new(None));
        let lag = engine
            .changelogs
            .since(relation)
            .map(|_| Arc::new(Mutex::new(Lag::default())));
        subs.feeds().entry(relation).or_default().push(Feed {
            id,
            tx,
            queued: Arc::clone(&queued),
            ended: Arc::clone(&ended),
            lag: lag.clone(),
        });
        engine.dataflows.observe(relation, true);
        crate::coord::sources::refresh_columns(engine, relation);
        Changes {
            engine: Arc::clone(engine),
            relation,
            id,
            rx,
            queued,
            ended,
            latest: subs.latest.subscribe(),
            held: None,
            lag,
            log_next: None,
            log_read: Default::default(),
        }
    }

    /// The next queued epoch's changes if its epoch is at most `through`, without waiting
    /// (after falling behind: the next from the changelog).
    pub fn next_through(&mut self, through: u64) -> Result<Option<Arc<EpochRows>>, PgError> {
        let next = match self.held.take() {
            Some(e) => e,
            None => match self.rx.try_recv() {
                Ok(e) => self.taken(e),
                Err(mpsc::error::TryRecvError::Empty) => match self.from_log(through)? {
                    Some(e) => e,
                    None => return Ok(None),
                },
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

    /// Rows a subscriber may have waiting.
    pub fn bound(&self) -> usize {
        self.engine.subscriptions.max_queued_rows
    }

    /// Whether the subscriber fell behind and reads from the changelog.
    pub fn is_behind(&self) -> bool {
        self.log_next.is_some() || self.lag.as_ref().is_some_and(|l| lock(l).behind)
    }

    /// Behind, with the queue read: the next epoch the changelog holds for the subscriber, up
    /// to `through`; rejoins the live feed once every skipped epoch is read.
    fn from_log(&mut self, through: u64) -> Result<Option<Arc<EpochRows>>, PgError> {
        let Some(lag) = self.lag.clone() else {
            return Ok(None);
        };
        loop {
            if let Some(e) = self.log_read.pop_front() {
                return Ok(Some(e));
            }
            let next = match self.log_next {
                Some(n) => n,
                None => {
                    let l = lock(&lag);
                    if !l.behind {
                        return Ok(None);
                    }
                    self.log_next = Some(l.first);
                    l.first
                }
            };
            let to = {
                let mut l = lock(&lag);
                if next > l.through {
                    // Every skipped epoch is read: live again from the next publish on.
                    l.behind = false;
                    self.log_next = None;
                    return Ok(None);
                }
                l.through.min(through)
            };
            if next > to {
                return Ok(None);
            }
            let snapshot = self.engine.store.snapshot();
            let (epochs, done) = super::changelog::read_bounded(
                &snapshot,
                self.relation,
                next,
                to,
                self.engine.subscriptions.max_queued_rows,
            )
            .map_err(|e| PgError::internal(&e))?;
            // Pruned meanwhile? Then what was read may lack epochs: never a silent gap.
            match self.engine.changelogs.since(self.relation) {
                Some(since) if since <= next => {}
                _ => {
                    return Err(PgError::new(
                        SqlState::CONFIGURATION_LIMIT_EXCEEDED,
                        format!(
                            "subscriber fell behind the changelog: epoch {next} is no longer kept"
                        ),
                    )
                    .with_hint("The view keeps its changes for its retain_changes period."))
                }
            }
            self.log_next = Some(done + 1);
            self.log_read.extend(epochs);
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
        if self.is_behind() && self.rx.is_empty() {
            // Nothing more is queued: the next epochs come from the changelog once committed.
            let latest = *self.latest.borrow();
            if let Some(e) = self.from_log(latest)? {
                return Ok(Woke::Rows(e));
            }
            if self.is_behind() {
                let _ = self.latest.changed().await;
                return Ok(Woke::Latest);
            }
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
        crate::coord::sources::refresh_columns(&self.engine, self.relation);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
