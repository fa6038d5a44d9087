//! Retained changelogs: each epoch's changes of every view that keeps them, written in the
//! epoch's own batch and deleted once past the view's retention, so that a subscriber can
//! start `AS OF` a past epoch — after a disconnect or a restart — and miss nothing.
//! The byte layout is `freshet_state::changelog`'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use freshet_common::TableId;
use freshet_dataflow::{Dataflows, EpochChanges};
use freshet_state::changelog::{
    changelog_key, changelog_prefix, decode_entry, encode_entry, entry_time, epoch_of, since_key,
};
use freshet_state::{Snapshot, Store, WriteBatch};

use super::subscriptions::EpochRows;

/// How often expired entries are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// The views that keep changelogs.
#[derive(Debug)]
pub struct Changelogs {
    views: Mutex<HashMap<TableId, Retained>>,
    last_prune: Mutex<Instant>,
    /// Retention of views created without `retain_changes`.
    pub default_retention: Duration,
}

#[derive(Debug, Clone)]
struct Retained {
    /// Zero when only sinks keep the view's changes.
    retention: Duration,
    /// Every change of an epoch from this one on is kept.
    since: u64,
    /// Sinks reading the changes, each with the last epoch it committed: later entries stay
    /// whatever the retention.
    pins: HashMap<TableId, u64>,
}

impl Changelogs {
    pub fn new(default_retention: Duration) -> Self {
        Self {
            views: Mutex::new(HashMap::new()),
            last_prune: Mutex::new(Instant::now()),
            default_retention,
        }
    }

    fn views(&self) -> std::sync::MutexGuard<'_, HashMap<TableId, Retained>> {
        self.views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `view`'s changes for `retention` (nothing when zero), complete from epoch `since`.
    pub fn retain(&self, dataflows: &Dataflows, view: TableId, retention: Duration, since: u64) {
        if retention.is_zero() {
            return;
        }
        let mut views = self.views();
        match views.get_mut(&view) {
            Some(r) => r.retention = retention,
            None => {
                views.insert(
                    view,
                    Retained {
                        retention,
                        since,
                        pins: HashMap::new(),
                    },
                );
                // Its epochs must produce its changes even when nothing reads it.
                dataflows.observe(view, true);
            }
        }
    }

    /// Keeps `view`'s changes after epoch `committed` for sink `sink`, whatever the view's
    /// retention, until [`Changelogs::unpin`]; `since` as for [`Changelogs::retain`].
    pub fn pin(&self, dataflows: &Dataflows, view: TableId, sink: TableId, committed: u64, since: u64) {
        let mut views = self.views();
        let r = views.entry(view).or_insert_with(|| {
            dataflows.observe(view, true);
            Retained {
                retention: Duration::ZERO,
                since,
                pins: HashMap::new(),
            }
        });
        r.pins.insert(sink, committed);
    }

    /// Sink `sink` no longer needs `view`'s changes.
    pub fn unpin(&self, dataflows: &Dataflows, view: TableId, sink: TableId) {
        let mut views = self.views();
        if let Some(r) = views.get_mut(&view) {
            r.pins.remove(&sink);
            if r.retention.is_zero() && r.pins.is_empty() {
                views.remove(&view);
                dataflows.observe(view, false);
            }
        }
    }

    /// Stops keeping `view`'s changes (dropped; its entries go with its other keys).
    pub fn forget(&self, dataflows: &Dataflows, view: TableId) {
        if self.views().remove(&view).is_some() {
            dataflows.observe(view, false);
        }
    }

    /// The first epoch from which `view`'s changes are all kept; `None` when it keeps none.
    pub fn since(&self, view: TableId) -> Option<u64> {
        self.views().get(&view).map(|r| r.since)
    }

    /// Adds epoch `epoch`'s changes of every retaining view to the epoch's `batch`.
    pub fn write(&self, epoch: u64, changes: &EpochChanges, batch: &mut WriteBatch) {
        let views = self.views();
        if views.is_empty() {
            return;
        }
        let now = now_micros();
        for view in views.keys() {
            if let Some(rows) = changes.tables.get(view).filter(|r| !r.is_empty()) {
                batch.put(changelog_key(*view, epoch), encode_entry(now, rows));
            }
        }
    }

    /// Deletes the entries past their view's retention, at most once per [`PRUNE_EVERY`]:
    /// reads only the expired entries (and one more per view), then one range deletion per
    /// view, with the view's new `since`, in a batch of its own.
    pub fn prune(&self, store: &Store) -> freshet_state::Result<()> {
        {
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() < PRUNE_EVERY {
                return Ok(());
            }
            *last = Instant::now();
        }
        let views: Vec<(TableId, Retained)> =
            self.views().iter().map(|(v, r)| (*v, r.clone())).collect();
        if views.is_empty() {
            return Ok(());
        }
        let snapshot = store.snapshot();
        let now = now_micros();
        let mut batch = WriteBatch::default();
        let mut moved = Vec::new();
        for (view, r) in views {
            let cutoff = now - r.retention.as_micros().min(i64::MAX as u128) as i64;
            // Entries a sink has not committed yet stay.
            let pinned = r.pins.values().min().copied().unwrap_or(u64::MAX);
            let prefix = changelog_prefix(view);
            let mut last_expired = None;
            let mut lower = prefix.clone();
            'scan: loop {
                let page = snapshot.scan(&prefix, &lower, None, 64)?;
                let full = page.len() == 64;
                for (k, v) in &page {
                    let epoch = epoch_of(k)?;
                    if entry_time(v)? >= cutoff || epoch > pinned {
                        break 'scan;
                    }
                    last_expired = Some(epoch);
                }
                match page.last() {
                    Some((k, _)) if full => lower = freshet_state::next_key(k),
                    _ => break,
                }
            }
            if let Some(e) = last_expired {
                batch.delete_range(&prefix, changelog_key(view, e + 1));
                batch.put(since_key(view), (e + 1).to_be_bytes());
                moved.push((view, e + 1));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        store.write_unsynced(batch)?;
        let mut views = self.views();
        for (view, since) in moved {
            if let Some(r) = views.get_mut(&view) {
                r.since = r.since.max(since);
            }
        }
        Ok(())
    }
}

/// `view`'s kept changes of epochs `from..=through`, in epoch order, as of `snapshot`.
pub fn read(
    snapshot: &Snapshot,
    view: TableId,
    from: u64,
    through: u64,
) -> freshet_state::Result<Vec<Arc<EpochRows>>> {
    Ok(read_bounded(snapshot, view, from, through, usize::MAX)?.0)
}

/// [`read`], stopping after the first epoch that brings the rows read to `max_rows`: the
/// epochs read, and the last epoch whose changes they hold completely (`through` when it did
/// not stop early).
pub fn read_bounded(
    snapshot: &Snapshot,
    view: TableId,
    from: u64,
    through: u64,
    max_rows: usize,
) -> freshet_state::Result<(Vec<Arc<EpochRows>>, u64)> {
    let prefix = changelog_prefix(view);
    let upper = changelog_key(view, through.saturating_add(1));
    let mut lower = changelog_key(view, from);
    let mut out = Vec::new();
    let mut rows_read = 0usize;
    loop {
        let page = snapshot.scan(&prefix, &lower, Some(&upper), 256)?;
        let full = page.len() == 256;
        for (k, v) in &page {
            let (_, rows) = decode_entry(v)?;
            let epoch = epoch_of(k)?;
            rows_read += rows.len();
            out.push(Arc::new(EpochRows { epoch, rows }));
            if rows_read >= max_rows && epoch < through {
                return Ok((out, epoch));
            }
        }
        match page.last() {
            Some((k, _)) if full => lower = freshet_state::next_key(k),
            _ => return Ok((out, through)),
        }
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
