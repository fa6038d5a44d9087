//! Event time that passes without messages: while a source with a watermark receives
//! nothing, its watermark still moves (idle partitions stop holding it back; once every
//! partition is idle, the wall clock carries it on), and views closing windows on it
//! (`EMIT ON WINDOW CLOSE`) must see it move. The ingest task waits for the reader's next
//! batch at most one tick; at each tick without one, a watermark that moved commits as an
//! epoch of its own, carrying no rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_dataflow::EpochChanges;
use freshet_state::WriteBatch;
use tokio::sync::mpsc;

use super::{lock, SourceBatch, SourceRuntime};
use crate::coord::engine::Engine;

/// The longest a moved watermark waits to commit while no message arrives.
const MAX_TICK: Duration = Duration::from_secs(1);
const MIN_TICK: Duration = Duration::from_millis(100);

/// The reader's next batch (`None` once it is gone), committing watermark moves meanwhile.
pub(super) async fn next(
    engine: &Arc<Engine>,
    rt: &Arc<SourceRuntime>,
    rx: &mut mpsc::Receiver<SourceBatch>,
) -> Option<SourceBatch> {
    loop {
        let idle = lock(&rt.watermarks).as_ref().map(|m| m.idle());
        let Some(idle) = idle else {
            return rx.recv().await;
        };
        let tick = idle.map_or(MAX_TICK, |i| (i / 4).clamp(MIN_TICK, MAX_TICK));
        match tokio::time::timeout(tick, rx.recv()).await {
            Ok(next) => return next,
            // Only views that close windows care between messages.
            Err(_) if engine.dataflows.clocked_by(rt.def.id) => advance(engine, rt).await,
            Err(_) => {}
        }
    }
}

/// Commits the watermark `rt` has now, when it moved past the committed one.
async fn advance(engine: &Arc<Engine>, rt: &Arc<SourceRuntime>) {
    let id = rt.def.id;
    let mut w = engine.begin_write().await;
    if engine.sources.get(id).is_none_or(|r| !Arc::ptr_eq(&r, rt)) {
        return;
    }
    let mut marks = lock(&rt.watermarks).clone();
    let Some(m) = marks.as_mut() else {
        return;
    };
    let Some(watermark) = m.advance(Instant::now()) else {
        return;
    };
    let mut batch = WriteBatch::default();
    m.stage(id, &[], &mut batch);
    let mut changes = EpochChanges::default();
    changes.watermarks.insert(id, watermark);
    match engine.commit(&mut w, batch, changes).await {
        Ok(()) => *lock(&rt.watermarks) = marks,
        Err(e) => {
            // Nothing committed: the next tick (or message) tries again.
            let msg = freshet_sql::error::map_df_error(&e).to_string();
            tracing::error!(source = %rt.def.name, error = %msg, "watermark epoch failed");
        }
    }
}
