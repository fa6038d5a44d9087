//! Backfills in progress, for `freshet_internal.backfills`: each registers while it runs.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use freshet_common::TableId;
use freshet_dataflow::backfill::Progress;

/// One running backfill.
struct Running {
    id: TableId,
    view: String,
    started: Instant,
    progress: Arc<Progress>,
}

/// One backfill as `freshet_internal.backfills` shows it.
pub struct BackfillRow {
    pub view: String,
    pub steps: u64,
    pub rows: u64,
    pub seconds: f64,
}

/// The backfills running now.
#[derive(Default)]
pub struct Backfills {
    running: Mutex<Vec<Running>>,
}

impl std::fmt::Debug for Backfills {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backfills")
    }
}

/// A registered backfill: unregistered when dropped.
pub struct Registered<'a> {
    backfills: &'a Backfills,
    id: TableId,
    pub progress: Arc<Progress>,
}

impl Backfills {
    /// Registers the backfill of view `id`, called `view`.
    pub fn start(&self, id: TableId, view: &str) -> Registered<'_> {
        let progress = Arc::new(Progress::default());
        self.lock().push(Running {
            id,
            view: view.to_owned(),
            started: Instant::now(),
            progress: Arc::clone(&progress),
        });
        Registered {
            backfills: self,
            id,
            progress,
        }
    }

    /// The running backfills, oldest first.
    pub fn rows(&self) -> Vec<BackfillRow> {
        use std::sync::atomic::Ordering;
        self.lock()
            .iter()
            .map(|r| BackfillRow {
                view: r.view.clone(),
                steps: r.progress.steps.load(Ordering::Relaxed),
                rows: r.progress.rows.load(Ordering::Relaxed),
                seconds: r.started.elapsed().as_secs_f64(),
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.backfills.lock().retain(|r| r.id != self.id);
    }
}
