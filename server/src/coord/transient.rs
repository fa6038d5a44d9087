//! The dataflows of `SUBSCRIBE (query)`: a materialized view without a catalog entry, built
//! and backfilled like any view when the subscription starts, maintained by every epoch
//! while it lasts, and removed with its state when it ends (or when a relation it reads is
//! dropped, which ends it). Their ids lie past any catalog object's; a restart deletes what
//! such dataflows left in the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SessionState;
use freshet_common::{PgError, TableId};
use freshet_sql::ast;
use freshet_state::WriteBatch;

use crate::coord::engine::{Engine, WriteState};
use crate::coord::views::Layout;

/// The first id of a transient dataflow (catalog ids count up from 1 and never get here).
const FIRST_ID: u64 = 1 << 62;

static NEXT_ID: AtomicU64 = AtomicU64::new(FIRST_ID);

/// A running transient dataflow; dropping it removes the dataflow and its state.
pub struct TransientView {
    engine: Arc<Engine>,
    pub id: TableId,
    pub schema: SchemaRef,
}

/// Builds and backfills the dataflow of `query` under the writer lock, and starts it.
pub async fn start(
    engine: &Arc<Engine>,
    w: &mut WriteState,
    state: &SessionState,
    query: &ast::Query,
) -> Result<TransientView, PgError> {
    let id = TableId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    // Its joins read tables by primary key only: nothing stops a DROP INDEX while it runs.
    let by_primary_key = Some(Vec::new());
    let view = crate::coord::views::build(
        engine,
        state,
        id,
        "subscribe",
        &[],
        query,
        Layout::NEW,
        by_primary_key,
    )
    .await?
    .0;
    let mut batch = WriteBatch::default();
    crate::coord::views::backfill(engine, w, &view, &mut batch, false).await?;
    // Unsynced: nothing of it outlives the process that runs it.
    engine
        .store
        .write_unsynced(batch)
        .map_err(|e| freshet_sql::error::map_df_error(&freshet_dataflow::epoch::state_err(e)))?;
    let (schema, inputs) = (Arc::clone(&view.schema), view.inputs.clone());
    engine.dataflows.insert(Arc::new(view));
    for input in inputs {
        crate::coord::sources::refresh_columns(engine, input);
    }
    Ok(TransientView {
        engine: Arc::clone(engine),
        id,
        schema,
    })
}

impl Drop for TransientView {
    fn drop(&mut self) {
        let (engine, id) = (Arc::clone(&self.engine), self.id);
        // Removing it takes the writer lock, which a destructor cannot wait for. Without a
        // runtime (the server is ending), the next start deletes what it left.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _w = engine.begin_write().await;
                remove(&engine, id);
            });
        }
    }
}

/// Removes transient dataflow `id` and deletes its state (under the writer lock).
fn remove(engine: &Engine, id: TableId) {
    let Some(view) = engine.dataflows.get(id) else {
        return;
    };
    engine.dataflows.remove(id);
    let mut batch = WriteBatch::default();
    freshet_catalog::delete_view_data(&mut batch, id);
    if let Err(e) = engine.store.write_unsynced(batch) {
        tracing::warn!(error = %e, "deleting a subscription's dataflow state failed");
    }
    for &input in &view.inputs {
        crate::coord::sources::refresh_columns(engine, input);
    }
}

/// Ends the transient dataflows that read any of `dropped` (under the writer lock, as the
/// relations are dropped): their subscribers get `why`.
pub fn relations_dropped(engine: &Engine, dropped: &[TableId], why: &PgError) {
    let ids: Vec<TableId> = engine
        .dataflows
        .ids_from(TableId(FIRST_ID))
        .into_iter()
        .filter(|&id| {
            engine
                .dataflows
                .get(id)
                .is_some_and(|v| v.inputs.iter().any(|i| dropped.contains(i)))
        })
        .collect();
    for id in ids {
        engine.subscriptions.close(id, why);
        remove(engine, id);
    }
}

/// At start: deletes what transient dataflows of an earlier run left in the store, and
/// what a view's backfill or an index's build wrote before a crash cut it short (under ids
/// no catalog entry names: the next id on).
pub fn delete_leftovers(engine: &Engine) -> freshet_state::Result<()> {
    let next = engine.catalog.peek_next_id();
    let mut ranges = freshet_catalog::view_ranges_from(next);
    let mut end = freshet_state::table_prefix(TableId(u64::MAX));
    end.extend_from_slice(&[0xFF; 16]);
    ranges.push((freshet_state::table_prefix(next), end));
    // Only ranges that hold something: a range deletion stays in its family's memtable until
    // the next flush, and every key flushed or compacted with it is checked against it.
    let mut batch = WriteBatch::default();
    for (begin, end) in ranges {
        if engine.store.any_key_in(&begin, &end)? {
            batch.delete_range(begin, end);
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    engine.store.write_unsynced(batch)
}
