//! Time that passes without writes: a view with a temporal filter (`now()` in its WHERE
//! clause) changes when a row's time range begins or ends, whether or not anything is
//! written. Any epoch applies the changes that are due by its time; this task commits an
//! epoch without rows when one is due and no other epoch came first.

use std::sync::{Arc, Weak};
use std::time::Duration;

use freshet_dataflow::epoch::wall_clock;
use freshet_dataflow::EpochChanges;
use freshet_state::WriteBatch;

use crate::coord::engine::Engine;

/// How often the task looks for a change coming due (also how late one can be applied at
/// most, besides the epoch itself), and the least time between two epochs it commits.
const TICK: Duration = Duration::from_millis(100);
/// The wait after an epoch that failed.
const BACKOFF: Duration = Duration::from_secs(1);

/// Starts the task; it ends with the engine.
pub fn start(engine: &Arc<Engine>) {
    tokio::spawn(run(Arc::downgrade(engine)));
}

async fn run(engine: Weak<Engine>) {
    loop {
        let wait = {
            let Some(engine) = engine.upgrade() else {
                return;
            };
            match engine.dataflows.next_due() {
                Some(t) => micros_until(t).min(TICK),
                None => TICK,
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            continue;
        }
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let failed = {
            let mut w = engine.begin_write().await;
            // An epoch committed while this one waited for the lock may have applied it.
            if !engine
                .dataflows
                .next_due()
                .is_some_and(|t| t <= wall_clock())
            {
                continue;
            }
            engine
                .commit(&mut w, WriteBatch::default(), EpochChanges::default())
                .await
                .err()
        };
        drop(engine);
        match failed {
            Some(e) => {
                let msg = freshet_sql::error::map_df_error(&e).to_string();
                tracing::error!(error = %msg, "the epoch applying temporal filters failed");
                tokio::time::sleep(BACKOFF).await;
            }
            None => tokio::time::sleep(TICK).await,
        }
    }
}

/// The time from now until `t` (microseconds since 1970), zero when it has passed.
fn micros_until(t: i64) -> Duration {
    Duration::from_micros(u64::try_from(t.saturating_sub(wall_clock())).unwrap_or(0))
}
