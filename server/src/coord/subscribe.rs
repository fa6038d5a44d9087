//! One `SUBSCRIBE`: the relation's rows as of a starting epoch (the snapshot), then every
//! later epoch's changes, shaped into output rows.
//!
//! Output columns: `freshet_epoch` (the commit's epoch), `freshet_progressed` (only `WITH
//! (PROGRESS)`: true on a progress row, which says every change of an epoch before its
//! `freshet_epoch` has been emitted), `freshet_diff` (how many times the row arrived, negative
//! when it left), then the relation's columns. With `ENVELOPE UPSERT (KEY (…))`:
//! `freshet_epoch`, [`freshet_progressed`], `freshet_state` (`upsert` or `delete`, or
//! `key_violation` when two rows hold one key), the key columns, then the other columns
//! (NULL for a delete).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SessionState;
use freshet_common::{Datum, PgError, SqlState, TableId};
use freshet_dataflow::{decode_contents, read_table_rows, read_view_rows};
use freshet_state::Snapshot;
use freshet_sql::error::map_df_error;
use freshet_sql::SubscribePlan;

use super::subscriptions::{Changes, EpochRows, Woke};
use crate::coord::engine::Engine;

/// A running subscription.
pub struct Subscription {
    /// The output columns.
    pub schema: SchemaRef,
    progress: bool,
    up_to: Option<u64>,
    /// Upsert envelope: the key columns' positions, and the other columns' positions.
    upsert: Option<(Vec<usize>, Vec<usize>)>,
    changes: Changes,
    /// Output rows ready to hand out.
    ready: VecDeque<Vec<Datum>>,
    /// Every change of an epoch before this one has been emitted.
    frontier: u64,
    /// The frontier passed `up_to`: once `ready` is empty, the subscription is over.
    finished: bool,
    /// `AS OF`: changes of earlier epochs are not shown.
    from: u64,
    /// `SUBSCRIBE (query)`: the query's dataflow, removed when the subscription ends (after
    /// `changes`, declared first, unsubscribes).
    _transient: Option<super::transient::TransientView>,
    /// The snapshot of a view or table, still to be handed out a page at a time.
    pages: Option<SnapshotPages>,
}

/// Rows in a snapshot page: the subscriber holds at most about this many of the snapshot's.
const SNAPSHOT_PAGE: usize = 4096;

/// A view's or table's rows at the subscription's start, read a page at a time from the
/// snapshot taken then: a large relation costs the server no more memory than a page.
struct SnapshotPages {
    snapshot: Snapshot,
    prefix: Vec<u8>,
    /// The first key not read yet.
    next: Vec<u8>,
    /// A view's contents entries (multiplicity, row); else a table's rows.
    view: bool,
    epoch: u64,
}

impl SnapshotPages {
    /// The next page of rows; `None` once all are read.
    fn next_page(&mut self) -> Result<Option<Vec<(Vec<Datum>, i64)>>, PgError> {
        let entries = self
            .snapshot
            .scan(&self.prefix, &self.next, None, SNAPSHOT_PAGE)
            .map_err(|e| map_df_error(&freshet_dataflow::epoch::state_err(e)))?;
        let Some((last, _)) = entries.last() else {
            return Ok(None);
        };
        self.next = freshet_state::next_key(last);
        let mut rows = Vec::with_capacity(entries.len());
        for (_, v) in &entries {
            rows.push(if self.view {
                let (n, row) = decode_contents(v).map_err(|e| map_df_error(&e))?;
                (row, n)
            } else {
                let row = freshet_state::row_codec::decode_row(v)
                    .map_err(|e| map_df_error(&freshet_dataflow::epoch::state_err(e)))?;
                (row, 1)
            });
        }
        Ok(Some(rows))
    }
}

impl Subscription {
    /// Starts `plan`: registers for changes and reads the snapshot at one epoch, with no
    /// commit in between. `SUBSCRIBE (query)` starts the query's dataflow first.
    pub async fn start(
        engine: &Arc<Engine>,
        plan: &SubscribePlan,
        state: &SessionState,
    ) -> Result<Subscription, PgError> {
        let mut w = engine.begin_write().await;
        // A view (`CREATE VIEW`) keeps no changes: its query's are maintained for the
        // subscription, as for `SUBSCRIBE (SELECT * FROM view)`.
        let of_view = match &plan.query {
            None if engine.catalog.plain_view(&plan.relation).is_some() => {
                let sql = format!("SELECT * FROM \"{}\"", plan.relation.replace('"', "\"\""));
                Some(view_query(&sql)?)
            }
            _ => None,
        };
        let (relation, fields, transient) = match of_view.as_ref().or(plan.query.as_ref()) {
            Some(query) => {
                if plan.as_of.is_some() {
                    return Err(PgError::not_supported("AS OF on SUBSCRIBE to a query")
                        .with_hint("A query keeps no changelog: subscribe to a materialized view of it created WITH (retain_changes = …)."));
                }
                let t = super::transient::start(engine, &mut w, state, query).await?;
                let fields = t.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                (t.id, fields, Some(t))
            }
            // Under the writer lock, which DDL takes too.
            None => {
                let (relation, fields) = resolve(engine, &plan.relation)?;
                (relation, fields, None)
            }
        };
        let upsert = match &plan.upsert_key {
            Some(key) => Some(upsert_columns(&fields, key)?),
            None => None,
        };
        let snapshot = engine.fold_for_read(&mut w).map_err(|e| map_df_error(&e))?;
        let changes = Changes::register(engine, &mut w, relation);
        // The snapshot holds exactly the epochs published so far.
        let latest = engine.subscriptions.latest();
        let since = engine.changelogs.since(relation);
        drop(w);
        // `AS OF e`: the changes of epochs `e..=latest` come from the changelog.
        let (start, history) = match plan.as_of {
            None => (latest, Vec::new()),
            Some(e) => {
                let since = since.ok_or_else(|| no_changelog(&plan.relation))?;
                if e < since {
                    return Err(PgError::new(
                        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format!(
                            "AS OF {e} is before the oldest change \"{}\" keeps (epoch {since})",
                            plan.relation
                        ),
                    )
                    .with_hint("Its changes are kept for its retain_changes period."));
                }
                if plan.snapshot && e > latest + 1 {
                    return Err(PgError::new(
                        SqlState::INVALID_PARAMETER_VALUE,
                        format!(
                            "AS OF {e} with SNAPSHOT is after the latest epoch ({latest}); use SNAPSHOT = false to wait for it"
                        ),
                    ));
                }
                let history = if e <= latest {
                    super::changelog::read(&snapshot, relation, e, latest)
                        .map_err(|e| map_df_error(&freshet_dataflow::epoch::state_err(e)))?
                } else {
                    Vec::new()
                };
                (e.saturating_sub(1).min(latest), history)
            }
        };
        let mut sub = Subscription {
            schema: output_schema(&fields, plan.progress, upsert.as_ref()),
            progress: plan.progress,
            up_to: plan.up_to,
            upsert,
            changes,
            ready: VecDeque::new(),
            frontier: latest + 1,
            finished: false,
            from: plan.as_of.unwrap_or(0),
            _transient: transient,
            pages: None,
        };
        let is_source = engine.sources.get(relation).is_some();
        if plan.snapshot && history.is_empty() && sub.upsert.is_none() && !is_source {
            // Handed out a page at a time; progress once all of it is out.
            let view = engine.dataflows.get(relation);
            let prefix = match &view {
                Some(v) => v.contents_prefix(),
                None => freshet_state::table_prefix(relation),
            };
            sub.pages = Some(SnapshotPages {
                snapshot,
                next: prefix.clone(),
                prefix,
                view: view.is_some(),
                epoch: start,
            });
            return Ok(sub);
        }
        if plan.snapshot {
            let mut rows = if engine.sources.get(relation).is_some() {
                // A source's rows: what it committed as of the snapshot, re-read.
                let batches =
                    crate::coord::sources::replay_committed(engine, &snapshot, relation, None).await?;
                let mut rows = Vec::new();
                for b in &batches {
                    let decoded = freshet_sql::df_convert::batch_to_rows(b).map_err(|e| map_df_error(&e))?;
                    rows.extend(decoded.into_iter().map(|r| (r, 1)));
                }
                rows
            } else {
                match engine.dataflows.get(relation) {
                    Some(view) => read_view_rows(&snapshot, &view),
                    None => read_table_rows(&snapshot, relation),
                }
                .map_err(|e| map_df_error(&e))?
            };
            // As of the epoch before `AS OF`: the later changes taken back out.
            for e in &history {
                rows.extend(e.rows.iter().map(|(r, w)| (r.clone(), -w)));
            }
            let rows = consolidate(&rows)
                .into_iter()
                .map(|(r, w)| (r.clone(), w))
                .collect();
            sub.emit_at(&EpochRows { epoch: start, rows });
        }
        for e in &history {
            sub.emit(e);
        }
        sub.announce();
        Ok(sub)
    }

    /// Up to `max` output rows as one batch: what is ready, else waits for changes until
    /// `deadline` (forever when `None`; an empty batch when it passes). `None` once the
    /// subscription is over (`UP TO` reached).
    pub async fn next_batch(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<Option<RecordBatch>, PgError> {
        self.take_ready()?;
        while self.ready.is_empty() && !self.finished {
            let wait = self.wait();
            let woke = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), wait).await.ok(),
                None => Some(wait.await),
            };
            match woke {
                Some(r) => r?,
                None => break,
            }
            self.take_ready()?;
        }
        if self.ready.is_empty() && self.finished {
            return Ok(None);
        }
        let n = max.min(self.ready.len());
        let rows: Vec<Vec<Datum>> = self.ready.drain(..n).collect();
        let columns: Vec<usize> = (0..self.schema.fields().len()).collect();
        freshet_sql::df_convert::rows_to_batch(&rows, &self.schema, &columns)
            .map(Some)
            .map_err(|e| map_df_error(&e))
    }

    /// Waits for the next change or, with progress rows, the next committed epoch; queues
    /// what it brings.
    async fn wait(&mut self) -> Result<(), PgError> {
        let latest_too = self.progress || self.up_to.is_some();
        if let Woke::Rows(e) = self.changes.wait(latest_too).await? {
            self.emit(&e);
        }
        Ok(())
    }

    /// Queues every change committed up to the latest epoch, then announces it — after the
    /// snapshot's pages, one at a time.
    fn take_ready(&mut self) -> Result<(), PgError> {
        while let Some(pages) = self.pages.as_mut() {
            match pages.next_page()? {
                Some(rows) => {
                    let epoch = pages.epoch;
                    self.emit_at(&EpochRows { epoch, rows });
                    if self.ready.len() >= SNAPSHOT_PAGE {
                        return Ok(());
                    }
                }
                None => {
                    self.pages = None;
                    self.announce();
                }
            }
        }
        let latest = self.changes.latest();
        while let Some(e) = self.changes.next_through(latest)? {
            self.emit(&e);
            // Behind, the changelog could hand out everything at once: a bounded part per
            // call, and no progress announced until it has all been read.
            if self.changes.is_behind() && self.ready.len() >= self.changes.bound() {
                return Ok(());
            }
        }
        if self.changes.is_behind() {
            return Ok(());
        }
        if latest >= self.frontier {
            self.frontier = latest + 1;
            self.announce();
        }
        Ok(())
    }

    /// Records that every epoch before the frontier is out: a progress row, and the end
    /// once the frontier reaches `UP TO`.
    fn announce(&mut self) {
        if let Some(up_to) = self.up_to {
            if self.frontier >= up_to {
                self.finished = true;
            }
        }
        if self.progress {
            let epoch = match self.up_to {
                Some(u) => self.frontier.min(u),
                None => self.frontier,
            };
            let mut row = vec![Datum::Int64(epoch as i64), Datum::Bool(true)];
            row.resize(self.schema.fields().len(), Datum::Null);
            self.ready.push_back(row);
        }
    }

    /// Shapes one epoch's changes into output rows (consolidated: a row that left and came
    /// back in the same epoch is not shown).
    fn emit(&mut self, e: &EpochRows) {
        if e.epoch < self.from {
            return;
        }
        self.emit_at(e);
    }

    /// [`Subscription::emit`] whatever the epoch (the snapshot, as of the epoch before
    /// `AS OF`).
    fn emit_at(&mut self, e: &EpochRows) {
        if self.up_to.is_some_and(|u| e.epoch >= u) || self.finished {
            return;
        }
        let head = |progress: bool| {
            let mut h = vec![Datum::Int64(e.epoch as i64)];
            if progress {
                h.push(Datum::Bool(false));
            }
            h
        };
        let rows = consolidate(&e.rows);
        match &self.upsert {
            None => {
                for (row, diff) in rows {
                    let mut out = head(self.progress);
                    out.push(Datum::Int64(diff));
                    out.extend(row.iter().cloned());
                    self.ready.push_back(out);
                }
            }
            Some((key, rest)) => {
                // Per key: the rows arriving under it, and whether one left.
                let mut by_key: HashMap<Vec<u8>, (Vec<&Vec<Datum>>, Option<&Vec<Datum>>)> =
                    HashMap::new();
                let mut order = Vec::new();
                for (row, diff) in &rows {
                    let k: Vec<Datum> = key.iter().map(|&i| row[i].clone()).collect();
                    let mut kb = Vec::new();
                    freshet_state::key_codec::encode_key(&k, &mut kb);
                    let slot = by_key.entry(kb.clone()).or_insert_with(|| {
                        order.push(kb);
                        (Vec::new(), None)
                    });
                    if *diff > 0 {
                        for _ in 0..*diff {
                            slot.0.push(row);
                        }
                    } else {
                        slot.1 = Some(row);
                    }
                }
                for kb in order {
                    let (arrived, left) = &by_key[&kb];
                    let (state, row) = match (arrived.as_slice(), left) {
                        ([row], _) => ("upsert", Some(*row)),
                        ([], Some(row)) => ("delete", Some(*row)),
                        ([first, ..], _) => ("key_violation", Some(*first)),
                        ([], None) => continue,
                    };
                    let row = row.expect("a row per state");
                    let mut out = head(self.progress);
                    out.push(Datum::Text(state.to_owned()));
                    out.extend(key.iter().map(|&i| row[i].clone()));
                    if state == "delete" {
                        out.extend(rest.iter().map(|_| Datum::Null));
                    } else {
                        out.extend(rest.iter().map(|&i| row[i].clone()));
                    }
                    self.ready.push_back(out);
                }
            }
        }
    }
}

/// Sums the weights of equal rows (by their key encoding, which is injective), dropping
/// rows whose weights cancel. Keeps the rows' first-seen order.
fn consolidate(rows: &[(Vec<Datum>, i64)]) -> Vec<(&Vec<Datum>, i64)> {
    let mut at: HashMap<Vec<u8>, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<(&Vec<Datum>, i64)> = Vec::with_capacity(rows.len());
    for (row, w) in rows {
        let mut k = Vec::new();
        freshet_state::key_codec::encode_key(row, &mut k);
        match at.get(&k) {
            Some(&i) => out[i].1 += w,
            None => {
                at.insert(k, out.len());
                out.push((row, *w));
            }
        }
    }
    out.retain(|(_, w)| *w != 0);
    out
}

fn no_changelog(name: &str) -> PgError {
    PgError::new(
        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("\"{name}\" keeps no changelog to start AS OF an epoch from"),
    )
    .with_hint(
        "Create the materialized view WITH (retain_changes = '10m'), or start the server with --retain-changes.",
    )
}

/// The view or table called `name`: its id and its columns.
fn resolve(engine: &Engine, name: &str) -> Result<(TableId, Vec<Field>), PgError> {
    if let Some(view) = engine.catalog.view(name) {
        let fields = engine
            .dataflows
            .get(view.id)
            .map(|v| v.schema.fields().iter().map(|f| f.as_ref().clone()).collect())
            .ok_or_else(|| {
                PgError::new(
                    SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("materialized view \"{name}\" is not running"),
                )
            })?;
        return Ok((view.id, fields));
    }
    if let Some(table) = engine.catalog.table(name) {
        let schema = crate::coord::engine::table_schema(&table);
        return Ok((table.id, schema.fields().iter().map(|f| f.as_ref().clone()).collect()));
    }
    if let Some(source) = engine.catalog.source(name) {
        let rt = engine.sources.get(source.id).ok_or_else(|| {
            PgError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("source \"{name}\" is not running"),
            )
        })?;
        if let Some(f) = rt.schema.fields().iter().find(|f| {
            matches!(
                f.data_type(),
                DataType::Struct(_) | DataType::Map(..) | DataType::Union(..)
            )
        }) {
            return Err(PgError::not_supported(format!(
                "SUBSCRIBE to source \"{name}\", whose column \"{}\" is a STRUCT; subscribe to a \
                 materialized view that selects its fields",
                f.name()
            )));
        }
        return Ok((source.id, rt.schema.fields().iter().map(|f| f.as_ref().clone()).collect()));
    }
    Err(PgError::new(
        SqlState::UNDEFINED_TABLE,
        format!("relation \"{name}\" does not exist"),
    ))
}

/// The upsert envelope's key positions and the other columns' positions.
fn upsert_columns(fields: &[Field], key: &[String]) -> Result<(Vec<usize>, Vec<usize>), PgError> {
    let mut at = Vec::with_capacity(key.len());
    for k in key {
        let i = fields.iter().position(|f| f.name() == k).ok_or_else(|| {
            PgError::new(
                SqlState::UNDEFINED_COLUMN,
                format!("column \"{k}\" does not exist"),
            )
        })?;
        if at.contains(&i) {
            return Err(PgError::new(
                SqlState::DUPLICATE_COLUMN,
                format!("column \"{k}\" appears twice in the upsert key"),
            ));
        }
        at.push(i);
    }
    let rest = (0..fields.len()).filter(|i| !at.contains(i)).collect();
    Ok((at, rest))
}

fn output_schema(
    fields: &[Field],
    progress: bool,
    upsert: Option<&(Vec<usize>, Vec<usize>)>,
) -> SchemaRef {
    let mut out = vec![Field::new("freshet_epoch", DataType::Int64, false)];
    if progress {
        out.push(Field::new("freshet_progressed", DataType::Boolean, false));
    }
    let nullable = |f: &Field| f.clone().with_nullable(true);
    match upsert {
        None => {
            out.push(Field::new("freshet_diff", DataType::Int64, true));
            out.extend(fields.iter().map(nullable));
        }
        Some((key, rest)) => {
            out.push(Field::new("freshet_state", DataType::Utf8, true));
            out.extend(key.iter().map(|&i| nullable(&fields[i])));
            out.extend(rest.iter().map(|&i| nullable(&fields[i])));
        }
    }
    Arc::new(Schema::new(out))
}

/// The query of `SUBSCRIBE view` for a view (`CREATE VIEW`).
fn view_query(sql: &str) -> Result<Box<freshet_sql::ast::Query>, PgError> {
    match freshet_sql::parse(sql)?.pop() {
        Some(freshet_sql::ast::Statement::Query(q)) => Ok(q),
        _ => Err(PgError::internal(format!("not a query: {sql}"))),
    }
}
