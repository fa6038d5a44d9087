//! Materialized view lifecycle: CREATE (plan, lower, backfill, commit with the catalog entry),
//! DROP (with dependents: 2BP01 or CASCADE), and rebuilding dataflows at startup from their
//! persisted SQL without reading any data.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use freshet_catalog::{ColumnDef, ViewDef, DEFAULT_SCHEMA};
use freshet_common::{PgError, SqlState, TableId};
use freshet_dataflow::ops::TableKey;
use freshet_dataflow::{check_deterministic, storable, Lowering, MaterializedView, Relations};
use freshet_sql::ast;
use freshet_sql::error::map_df_error;
use freshet_state::WriteBatch;

use crate::coord::engine::table_schema;
use crate::coord::engine::{Engine, WriteState};

impl Relations for Engine {
    fn resolve(&self, name: &str) -> Option<(TableId, SchemaRef)> {
        if let Some(def) = self.catalog.table(name) {
            return Some((def.id, Arc::new(table_schema(&def))));
        }
        if let Some(def) = self.catalog.source(name) {
            return Some((def.id, Arc::new(crate::coord::sources::source_schema(&def))));
        }
        let view = self.catalog.view(name)?;
        self.dataflows
            .get(view.id)
            .map(|v| (v.id, Arc::clone(&v.schema)))
    }

    fn event_time_column(&self, relation: TableId) -> Option<usize> {
        let def = self
            .catalog
            .sources()
            .into_iter()
            .find(|s| s.id == relation)?;
        crate::coord::sources::watermark::column(&def)
    }

    fn stored_keys(&self, relation: TableId) -> Vec<TableKey> {
        let Some(def) = self.catalog.tables().into_iter().find(|t| t.id == relation) else {
            return Vec::new();
        };
        let primary = def.has_primary_key().then(|| TableKey {
            index: None,
            columns: def.primary_key.clone(),
        });
        primary
            .into_iter()
            .chain(def.indexes.iter().map(|i| TableKey {
                index: Some(i.id),
                columns: i.columns.clone(),
            }))
            .collect()
    }
}

/// How a view keeps its state and emits its rows: decided at creation, recorded in its
/// catalog entry, never changed (views created before a layout existed keep the older one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// See [`MaterializedView::with_aggregate_in_contents`].
    pub aggregate_in_contents: bool,
    /// MIN/MAX values as one entry per occurrence: see `Lowering::with_occurrences`.
    pub min_max_occurrences: bool,
    /// `EMIT ON WINDOW CLOSE`: see `Lowering::emit_on_window_close`.
    pub emit_on_window_close: bool,
    /// Joins read table sides from the tables: see `Lowering::with_table_reads`.
    pub joins_read_tables: bool,
    /// Semi joins read their left side from its table and aggregates joined on their group
    /// key are restricted to the joined keys: see `Lowering::with_semi_join_reduction`.
    pub semi_join_reduction: bool,
    /// Joins that only filter made semi joins, selective semi joins pushed below inner
    /// joins (`Lowering::push_semi_joins`), semi joins reading both sides from tables
    /// (`ops::table_sides`).
    pub semi_join_pushdown: bool,
}

impl Layout {
    /// What new views get.
    pub const NEW: Layout = Layout {
        aggregate_in_contents: true,
        min_max_occurrences: true,
        emit_on_window_close: false,
        joins_read_tables: true,
        semi_join_reduction: true,
        semi_join_pushdown: true,
    };

    /// The layout a catalog entry records.
    fn of(def: &ViewDef) -> Layout {
        Layout {
            aggregate_in_contents: def.aggregate_in_contents,
            min_max_occurrences: def.min_max_occurrences,
            emit_on_window_close: def.emit_on_window_close,
            joins_read_tables: def.joins_read_tables,
            semi_join_reduction: def.semi_join_reduction,
            semi_join_pushdown: def.semi_join_pushdown,
        }
    }
}

/// Plans `query` and lowers it into view `id`'s dataflow, with its state kept as `layout` says;
/// also the views (`CREATE VIEW`) whose queries it took in.
pub async fn build(
    engine: &Engine,
    state: &SessionState,
    id: TableId,
    name: &str,
    columns: &[String],
    query: &ast::Query,
    layout: Layout,
    indexes_read: Option<Vec<TableId>>,
) -> Result<(MaterializedView, Vec<TableId>), PgError> {
    let stmt = datafusion::sql::parser::Statement::Statement(Box::new(ast::Statement::Query(
        Box::new(query.clone()),
    )));
    let plan = state
        .statement_to_plan(stmt)
        .await
        .map_err(|e| map_df_error(&e))?;
    if matches!(plan, LogicalPlan::Dml(_) | LogicalPlan::Ddl(_)) {
        return Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            "a materialized view must be defined by a query",
        ));
    }
    let (plan, views_read) = engine
        .definer
        .inline_views(plan)
        .map_err(|e| map_df_error(&e))?;
    let plan = freshet_dataflow::lower::temporal::mark_now(plan).map_err(|e| map_df_error(&e))?;
    check_deterministic(&plan).map_err(|e| map_df_error(&e))?;
    let optimized = state.optimize(&plan).map_err(|e| map_df_error(&e))?;
    let mut lowering = Lowering::new(id, state.execution_props(), engine)
        .with_occurrences(layout.min_max_occurrences)
        .with_table_reads(layout.joins_read_tables, indexes_read)
        .with_semi_join_reduction(layout.semi_join_reduction)
        .with_semi_join_pushdown(layout.semi_join_pushdown);
    let optimized = lowering
        .rewrite(optimized)
        .map_err(|e| map_df_error(&e))?;
    let mut root = lowering
        .lower(&optimized)
        .and_then(storable)
        .map_err(|e| map_df_error(&e))?;
    if layout.emit_on_window_close {
        root = lowering
            .emit_on_window_close(root)
            .map_err(|e| map_df_error(&e))?;
    }
    // Output columns: the query's names, or the ones the statement lists.
    let out = root.schema();
    if !columns.is_empty() && columns.len() != out.fields().len() {
        return Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            "materialized view column list does not match the query's columns",
        ));
    }
    let mut fields = Vec::with_capacity(out.fields().len());
    let mut seen = HashSet::new();
    let names = freshet_sql::names::pg_output_names(&plan);
    for (i, f) in out.fields().iter().enumerate() {
        let fname = columns
            .get(i)
            .cloned()
            .unwrap_or_else(|| names.get(i).cloned().unwrap_or_else(|| f.name().clone()));
        if !seen.insert(fname.clone()) {
            return Err(PgError::new(
                SqlState::DUPLICATE_COLUMN,
                format!("column \"{fname}\" specified more than once"),
            ));
        }
        fields.push(f.as_ref().clone().with_name(fname));
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, out.metadata().clone()));
    let sources: std::collections::HashSet<TableId> =
        engine.catalog.sources().iter().map(|s| s.id).collect();
    let view = MaterializedView::new(id, name.to_owned(), schema, root)
        .with_append_only(&|r| sources.contains(&r))
        .with_aggregate_in_contents(layout.aggregate_in_contents)
        .with_occurrences(layout.min_max_occurrences)
        .with_contents_log(engine.contents_log_bytes > 0);
    Ok((view, views_read))
}

/// The catalog entry for a built view.
fn view_def(
    view: &MaterializedView,
    views_read: Vec<TableId>,
    sql: String,
    retain_changes: Option<std::time::Duration>,
) -> Result<ViewDef, PgError> {
    let mut columns = Vec::with_capacity(view.schema.fields().len());
    for f in view.schema.fields() {
        let ty = freshet_sql::types::sql_type_of(f).ok_or_else(|| {
            PgError::not_supported(format!("a view column of type {}", f.data_type()))
        })?;
        columns.push(ColumnDef::new(f.name().clone(), ty, false));
    }
    Ok(ViewDef {
        id: view.id,
        schema: DEFAULT_SCHEMA.to_owned(),
        name: view.name.clone(),
        sql,
        columns,
        inputs: view.inputs.clone(),
        aggregate_in_contents: view.aggregate_in_contents(),
        min_max_occurrences: view.occurrences(),
        retain_changes_ms: retain_changes.map(|d| d.as_millis() as u64),
        emit_on_window_close: false,
        joins_read_tables: view.reads_tables(),
        semi_join_reduction: false,
        semi_join_pushdown: false,
        indexes_read: view.indexes_read(),
        fingerprint: Some(view.fingerprint()),
        owner: String::new(),
        acl: Vec::new(),
        views_read,
    })
}

/// `CREATE MATERIALIZED VIEW`: under the writer lock, build the dataflow, backfill it from the
/// latest committed state and commit state, contents and catalog entry in one write batch.
/// With `explain`, returns the dataflow instead.
pub async fn create(
    engine: &Arc<Engine>,
    state: &SessionState,
    plan: &freshet_sql::CreateViewPlan,
) -> Result<Option<String>, PgError> {
    let freshet_sql::CreateViewPlan {
        name,
        if_not_exists,
        columns,
        query,
        sql,
        explain,
        retain_changes,
        emit_on_window_close,
    } = plan;
    let (name, if_not_exists, explain) = (name.as_str(), *if_not_exists, *explain);
    let mut w = engine.begin_write().await;
    if !explain && engine.catalog.name_taken(name) {
        if if_not_exists && engine.catalog.view(name).is_some() {
            return Ok(None);
        }
        return Err(PgError::new(
            SqlState::DUPLICATE_TABLE,
            format!("relation \"{name}\" already exists"),
        ));
    }
    let id = engine.catalog.peek_next_id();
    let layout = Layout {
        emit_on_window_close: *emit_on_window_close,
        ..Layout::NEW
    };
    let (view, views_read) = build(engine, state, id, name, columns, query, layout, None).await?;
    if explain {
        return Ok(Some(view.explain()));
    }
    let mut def = view_def(&view, views_read, sql.clone(), *retain_changes)?;
    def.emit_on_window_close = *emit_on_window_close;
    def.semi_join_reduction = layout.semi_join_reduction;
    def.semi_join_pushdown = layout.semi_join_pushdown;
    def.owner = crate::access::StatementIdentity::new_owner(state);
    let mut batch = WriteBatch::default();
    // Its changelog, if it keeps one, is complete from the next epoch on (recorded only
    // while it keeps one: a view that kept none for a while has a gap).
    let since = engine.runner.epoch() + 1;
    let retention = retain_changes.unwrap_or(engine.changelogs.default_retention);
    if !retention.is_zero() {
        batch.put(
            freshet_state::changelog::since_key(view.id),
            since.to_be_bytes(),
        );
    }
    backfill(engine, &mut w, &view, &mut batch, true).await?;
    if let Err(e) = engine.catalog.create_view(def, batch) {
        forget_backfill(engine, view.id);
        return Err(crate::error::user_error(e));
    }
    let inputs = view.inputs.clone();
    let id = view.id;
    engine.dataflows.insert(Arc::new(view));
    engine
        .changelogs
        .retain(&engine.dataflows, id, retention, since);
    for input in inputs {
        crate::coord::sources::refresh_columns(engine, input);
    }
    Ok(None)
}

/// Adds `view`'s initial contents and operator state, from the latest committed state, to
/// `batch` (under the writer lock, which keeps what it reads fixed). `durable`: what the
/// steps before the last wrote is on disk when this returns (for a view whose entry will
/// commit with `batch`; a transient dataflow's state is deleted after a crash anyway).
pub async fn backfill(
    engine: &Arc<Engine>,
    w: &mut WriteState,
    view: &MaterializedView,
    batch: &mut WriteBatch,
    durable: bool,
) -> Result<(), PgError> {
    // Views it reads hold their whole contents in this snapshot.
    let snapshot = engine.fold_for_read(w).map_err(|e| map_df_error(&e))?;
    // Sources: re-read exactly what they have committed.
    let mut changes = freshet_dataflow::EpochChanges::default();
    for &input in &view.inputs {
        if engine.sources.get(input).is_some() && !changes.appends.contains_key(&input) {
            let mut selection = freshet_common::Selection::default();
            view.root.selection_read(input, &mut selection);
            let rows =
                crate::coord::sources::replay_committed(engine, &snapshot, input, Some(selection))
                    .await?;
            changes.appends.insert(input, rows);
        }
    }
    // Steps before the last write straight to the memtables, under an id no catalog entry
    // names yet: not through the write-ahead log (the state of a large view would be written
    // twice), so a crash meanwhile loses them, and the next start deletes what is left. For
    // a view that will outlive a crash, the memtables are flushed before its entry commits.
    let mut unlogged = false;
    let mut flush = |b: WriteBatch| {
        unlogged = true;
        engine
            .store
            .write_unlogged(b)
            .map_err(freshet_dataflow::epoch::state_err)?;
        Ok(engine.store.snapshot())
    };
    let running = engine.backfills.start(view.id, &view.name);
    // Seconds of work: off this worker, so the tasks queued behind it run meanwhile.
    let done = tokio::task::block_in_place(|| {
        engine.dataflows.backfill(
            view,
            &snapshot,
            batch,
            changes,
            &mut flush,
            &running.progress,
        )
    });
    let done = done.and_then(|_| {
        if durable && unlogged {
            tokio::task::block_in_place(|| engine.store.flush_all())
                .map_err(freshet_dataflow::epoch::state_err)?;
        }
        Ok(())
    });
    if let Err(e) = done {
        forget_backfill(engine, view.id);
        return Err(map_df_error(&e));
    }
    Ok(())
}

/// Deletes what the steps of a backfill of view `id` that did not commit wrote to the store.
fn forget_backfill(engine: &Engine, id: TableId) {
    let mut undo = WriteBatch::default();
    freshet_catalog::delete_view_data(&mut undo, id);
    if let Err(e) = engine.store.write_unsynced(undo) {
        tracing::warn!(view = %id, error = %e, "deleting a failed backfill's state failed");
    }
}

/// Drops views (already checked) from the catalog and the running dataflows.
pub fn drop_views(engine: &Engine, defs: &[Arc<ViewDef>]) -> Result<(), PgError> {
    let ids: HashSet<TableId> = defs.iter().map(|d| d.id).collect();
    let sinks: Vec<_> = engine
        .catalog
        .sinks()
        .into_iter()
        .filter(|s| ids.contains(&s.from))
        .collect();
    if !sinks.is_empty() {
        crate::coord::sinks::drop_sinks(engine, &sinks)?;
    }
    let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
    engine
        .catalog
        .drop_views(&names)
        .map_err(crate::error::user_error)?;
    for d in defs {
        let why = dropped("materialized view", &d.name);
        crate::coord::transient::relations_dropped(engine, &[d.id], &why);
        engine.dataflows.remove(d.id);
        engine.changelogs.forget(&engine.dataflows, d.id);
        engine.subscriptions.close(d.id, &why);
    }
    crate::coord::sources::refresh_all_columns(engine);
    Ok(())
}

/// How a subscription to a relation dropped meanwhile ends.
pub fn dropped(kind: &str, name: &str) -> PgError {
    PgError::new(
        freshet_common::SqlState::UNDEFINED_TABLE,
        format!("{kind} \"{name}\" was dropped while subscribed to"),
    )
}

/// Rebuilds every persisted view's dataflow from its SQL. Reads no rows: the views' state and
/// contents are already in the store.
pub async fn load_all(engine: &Arc<Engine>, state: &SessionState) -> anyhow::Result<()> {
    for def in engine.catalog.views() {
        let query = match freshet_sql::parse(&def.sql)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .pop()
        {
            Some(ast::Statement::Query(q)) => q,
            _ => anyhow::bail!("view {} has a corrupt definition", def.name),
        };
        let columns: Vec<String> = def.columns.iter().map(|c| c.name.clone()).collect();
        let (view, _) = build(
            engine,
            state,
            def.id,
            &def.name,
            &columns,
            &query,
            Layout::of(&def),
            Some(def.indexes_read.clone()),
        )
        .await
        .map_err(|e| anyhow::anyhow!("rebuilding materialized view {}: {e}", def.name))?;
        if let Some(stored) = def.fingerprint {
            let now = view.fingerprint();
            anyhow::ensure!(
                view.matches_fingerprint(stored),
                "materialized view {} was stored for a dataflow (fingerprint {stored:016x}) that this \
                 freshet plans differently ({now:016x}): its stored state belongs to other operators. \
                 Start the freshet that created it, or drop and recreate the view there",
                def.name
            );
        }
        anyhow::ensure!(
            view.aggregate_in_contents() == def.aggregate_in_contents,
            "materialized view {} was stored with a layout its query no longer plans to",
            def.name
        );
        engine.dataflows.insert(Arc::new(view));
        let retention = def
            .retain_changes_ms
            .map(std::time::Duration::from_millis)
            .unwrap_or(engine.changelogs.default_retention);
        let key = freshet_state::changelog::since_key(def.id);
        let stored = match engine.store.get(&key)? {
            Some(v) => Some(v.as_slice().try_into().map(u64::from_be_bytes)?),
            None => None,
        };
        if retention.is_zero() {
            // Keeps none from now on: a later start that keeps some again must not trust
            // the old record.
            if stored.is_some() {
                let mut b = WriteBatch::default();
                b.delete(&key);
                engine.store.write(b)?;
            }
        } else {
            // Not recorded: it kept none before, so complete from the next epoch only.
            let since = stored.unwrap_or(engine.latest_epoch() + 1);
            if stored.is_none() {
                let mut b = WriteBatch::default();
                b.put(&key, since.to_be_bytes());
                engine.store.write(b)?;
            }
            engine
                .changelogs
                .retain(&engine.dataflows, def.id, retention, since);
        }
    }
    Ok(())
}
