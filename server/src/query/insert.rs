//! INSERT executed by freshet: `ON CONFLICT`, `RETURNING`, inside and outside blocks.
//!
//! The statement's source (VALUES or a query) runs as a read over the statement's snapshot;
//! its columns are converted to the target columns' types and completed with NULLs; each row
//! is then checked against the rows the statement sees (the block's writes over its snapshot,
//! and its own earlier rows) and staged as an insertion, skipped (`DO NOTHING`), or turned
//! into an update of the row it conflicts with (`DO UPDATE`). Outside a block the staged
//! writes commit at once as one epoch, under the writer lock held since the read.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use freshet_catalog::{Identity, TableDef};
use freshet_common::{Datum, PgError, SqlState, SqlType};
use freshet_dataflow::EpochChanges;
use freshet_sql::df_convert::datum_at;
use freshet_sql::error::map_df_error;
use freshet_sql::{ConflictAction, InsertPlan};
use freshet_state::{key_codec, row_codec, table_row_key};

use super::dml::{assigned_value, target_table};
use super::pending::{self, put, Pending, StatementWrites};
use super::rowexpr::{self, Qualified};
use crate::coord::engine::table_schema;
use super::indexes;
use super::write::{row_key, unique_violation, validate_row};
use crate::coord::engine::{Engine, WriteState};
use tokio::sync::MutexGuard;

/// What an INSERT (or a DELETE or UPDATE) did: rows changed, and its `RETURNING` rows.
pub struct Written {
    pub rows: u64,
    pub returned: Option<(SchemaRef, RecordBatch)>,
}

/// The columns `RETURNING items` gives over rows of `def`.
pub fn returning_schema(
    state: &SessionState,
    def: &TableDef,
    alias: &str,
    items: &[freshet_sql::ReturningItem],
) -> Result<SchemaRef, PgError> {
    Ok(rowexpr::returning(state, def, alias, items, &[])?.0)
}

/// Runs an INSERT; inside a transaction block (`block`) its writes are staged there.
pub async fn execute(
    engine: &Arc<Engine>,
    mut state: SessionState,
    plan: &InsertPlan,
    params: Option<ParamValues>,
    block: Option<Arc<StatementWrites>>,
) -> Result<Written, PgError> {
    let def = target_table(engine, &plan.table, "insert into")?;
    let mut targets = match &plan.source {
        Some(_) => target_columns(&def, &plan.columns)?,
        None => Vec::new(), // DEFAULT VALUES
    };
    // Without a column list, a source narrower than the table fills its first columns.
    if plan.columns.is_empty() {
        if let Some(width) = plan.source.as_deref().and_then(freshet_sql::point::values_width) {
            targets.truncate(width);
        }
    }
    Arbiter::of(&def, plan)?;
    let utc = state.config().options().execution.time_zone.as_deref() == Some("+00:00");
    let plain = super::point::insert_rows(&def, &targets, plan, params.as_ref(), utc);
    let source = match plain {
        Some(_) => None,
        None => plan_source(&state, plan, targets.len(), params).await?,
    };
    if let Some(lp) = &source {
        targets.truncate(lp.schema().fields().len());
    }
    let (writer, writes) = pending::for_statement(engine, block, source.as_ref()).await?;
    writes.install(&mut state);
    let rows = match plain {
        Some((mut rows, now)) => {
            super::point::fill_now(&mut rows, &now, state.execution_props().query_execution_start_time);
            rows
        }
        None => source_rows(&state, &def, &targets, source).await?,
    };
    write(engine, &state, &def, plan, &targets, rows, writer, &writes).await
}

/// `COPY … FROM`: `rows` of `def` with the `targets` columns filled, the others taking their
/// defaults; inside a transaction block (`block`) they are staged there. Returns how many.
pub async fn copy_rows(
    engine: &Arc<Engine>,
    mut state: SessionState,
    def: &TableDef,
    targets: &[usize],
    rows: Vec<Vec<Datum>>,
    block: Option<Arc<StatementWrites>>,
) -> Result<u64, PgError> {
    let (writer, writes) = pending::for_statement(engine, block, None).await?;
    writes.install(&mut state);
    let plan = InsertPlan {
        table: def.name.clone(),
        alias: def.name.clone(),
        columns: Vec::new(),
        source: None,
        defaults: Vec::new(),
        on_conflict: None,
        returning: None,
    };
    let written = write(engine, &state, def, &plan, targets, rows, writer, &writes).await?;
    Ok(written.rows)
}

/// Completes, checks and stages `rows` (the `targets` columns filled); outside a block
/// (`writer` held) commits them.
#[allow(clippy::too_many_arguments)]
async fn write(
    engine: &Engine,
    state: &SessionState,
    def: &TableDef,
    plan: &InsertPlan,
    targets: &[usize],
    mut rows: Vec<Vec<Datum>>,
    mut writer: Option<MutexGuard<'_, WriteState>>,
    writes: &StatementWrites,
) -> Result<Written, PgError> {
    complete_rows(
        engine,
        state,
        def,
        targets,
        &plan.defaults,
        &mut rows,
    )
    .await?;
    for row in &mut rows {
        validate_row(def, row)?;
    }
    rowexpr::check_constraints(state, def, &rows)?;
    let row_ids = if def.has_primary_key() {
        None
    } else {
        let n = rows.len() as u64;
        Some(
            match writer.as_mut() {
                Some(w) => w.allocate_row_ids(&engine.store, def.id, n),
                None => engine
                    .begin_write()
                    .await
                    .allocate_row_ids(&engine.store, def.id, n),
            }
            .map_err(PgError::internal)?,
        )
    };
    // Outside a block the views' input is known here (the rows staged under the writer lock).
    let track = writer.is_some() && engine.has_dependents(def.id);
    let (written, changes) = stage(state, def, plan, writes, rows, row_ids, track)?;
    if let Some(w) = writer {
        pending::commit_writes(engine, w, &writes.take_staged(), Some(changes)).await?;
    }
    Ok(written)
}

/// Fills what the statement leaves to the table: every column not among `targets`, and
/// the `DEFAULT`s (row, position in `targets`) of a VALUES list, from the column's identity
/// sequence, its `DEFAULT` expression (evaluated for each row), or NULL.
async fn complete_rows(
    engine: &Engine,
    state: &SessionState,
    def: &TableDef,
    targets: &[usize],
    defaults: &[(usize, usize)],
    rows: &mut [Vec<Datum>],
) -> Result<(), PgError> {
    let schema = table_schema(def);
    let df = |e| map_df_error(&e);
    // Before any sequence value is taken, as in PostgreSQL.
    for (c, col) in def.columns.iter().enumerate() {
        let Some(p) = targets.iter().position(|&t| t == c) else {
            continue;
        };
        let defaulted = defaults.iter().filter(|(_, q)| *q == p).count();
        if col.identity == Some(Identity::Always) && defaulted < rows.len() {
            return Err(PgError::new(
                SqlState("428C9"),
                format!(
                    "cannot insert a non-DEFAULT value into column \"{}\"",
                    col.name
                ),
            )
            .with_detail(format!(
                "Column \"{}\" is an identity column defined as GENERATED ALWAYS.",
                col.name
            )));
        }
    }
    for (c, col) in def.columns.iter().enumerate() {
        let position = targets.iter().position(|&t| t == c);
        let needing: Vec<usize> = match position {
            None => (0..rows.len()).collect(),
            Some(p) => defaults
                .iter()
                .filter(|&&(r, q)| q == p && r < rows.len())
                .map(|(r, _)| *r)
                .collect(),
        };
        if needing.is_empty() {
            continue;
        }
        if col.identity.is_some() {
            let n = needing.len() as i64;
            let first = engine.sequences.take(&engine.store, def.id, c, n)
            .map_err(PgError::internal)?;
            if let Some(taken) = crate::coord::sequences::SessionSequences::of(state) {
                taken.record(def.id, c, first + n - 1);
            }
            for (i, &r) in needing.iter().enumerate() {
                rows[r][c] = sequence_datum(&col.ty, first + i as i64, &col.name)?;
            }
        } else if let Some(expr) = &col.default {
            let values = rowexpr::evaluate(state, &[], &[expr.as_str()], needing.len())?;
            let field = schema.field(c);
            let values = assigned_value(&values[0], field)?;
            for (i, &r) in needing.iter().enumerate() {
                rows[r][c] = datum_at(&values, i).map_err(df)?;
            }
        }
    }
    Ok(())
}

/// A sequence value as the identity column's type.
fn sequence_datum(ty: &SqlType, v: i64, column: &str) -> Result<Datum, PgError> {
    let out_of_range = || {
        PgError::new(
            SqlState("2200H"),
            format!("nextval: reached maximum value of sequence for column \"{column}\""),
        )
    };
    Ok(match ty {
        SqlType::Int2 => Datum::Int16(i16::try_from(v).map_err(|_| out_of_range())?),
        SqlType::Int4 => Datum::Int32(i32::try_from(v).map_err(|_| out_of_range())?),
        _ => Datum::Int64(v),
    })
}

/// Checks rows against what the statement sees and stages them: inserted, skipped, or
/// updating the row they conflict with.
fn stage(
    state: &SessionState,
    def: &TableDef,
    plan: &InsertPlan,
    writes: &StatementWrites,
    rows: Vec<Vec<Datum>>,
    row_ids: Option<u64>,
    track: bool,
) -> Result<(Written, EpochChanges), PgError> {
    let mut changes = EpochChanges::default();
    let action = plan.on_conflict.as_ref().map(|c| &c.action);
    let arbiter = Arbiter::of(def, plan)?;
    let mut staged = writes.lock();
    let mut mine = HashSet::new();
    let mut inserted = Vec::new();
    let mut conflicts: Vec<Conflict> = Vec::new();
    let keys: Vec<Vec<u8>> = match row_ids {
        Some(first) => (0..rows.len())
            .map(|i| table_row_key(def.id, &key_codec::encode_row_id(first + i as u64)))
            .collect(),
        None => rows.iter().map(|row| row_key(def, row)).collect(),
    };
    // Fresh row ids hold nothing; primary keys are looked up in one read.
    let in_snapshot = match row_ids {
        Some(_) => vec![None; keys.len()],
        None => writes.snapshot_rows(&keys).map_err(|e| map_df_error(&e))?,
    };
    for (i, ((row, key), in_snapshot)) in rows.into_iter().zip(keys).zip(&in_snapshot).enumerate() {
        let existing = writes.visible_row_in(&staged, &key, in_snapshot);
        match (existing, action) {
            (None, _) => {
                if let Some(u) = indexes::conflict(writes, &staged, def, &key, &row)? {
                    if action.is_some() && arbiter.covers(&u.columns) {
                        continue; // DO NOTHING (DO UPDATE only arbitrates on the key)
                    }
                    return Err(indexes::violation(def, u, &row));
                }
                mine.insert(key.clone());
                indexes::stage(&mut staged, def, &key, None, Some(&row));
                staged.insert(key, put(def.id, &row));
                inserted.push((i, row));
            }
            (Some(_), Some(_)) if !arbiter.covers(&def.primary_key) => {
                return Err(unique_violation(def, &row))
            }
            (Some(_), None) => return Err(unique_violation(def, &row)),
            (Some(_), Some(ConflictAction::Nothing)) => {}
            (Some(old), Some(ConflictAction::Update { .. })) => {
                // A row this statement inserted: PostgreSQL's error (a row it only would
                // update is checked once the updates' WHERE is known).
                if mine.contains(&key) {
                    return Err(affect_twice());
                }
                let old = row_codec::decode_row(&old).map_err(PgError::internal)?;
                conflicts.push(Conflict {
                    order: i,
                    key,
                    old,
                    excluded: row,
                });
            }
        }
    }
    let mut changed = inserted;
    if let Some(ConflictAction::Update {
        assignments,
        selection,
    }) = action
    {
        let updated = conflict_updates(
            state,
            def,
            plan,
            assignments,
            selection.as_deref(),
            conflicts,
        )?;
        // As in PostgreSQL: a row already updated by the statement is an error, whatever
        // the later proposal's WHERE says.
        let mut updated_keys = HashSet::new();
        let mut to_write = Vec::with_capacity(updated.len());
        for (i, key, new) in updated {
            if updated_keys.contains(&key) {
                return Err(affect_twice());
            }
            if let Some(new) = new {
                updated_keys.insert(key.clone());
                to_write.push((i, key, new));
            }
        }
        let new_rows: Vec<Vec<Datum>> = to_write.iter().map(|(_, _, r)| r.clone()).collect();
        rowexpr::check_constraints(state, def, &new_rows)?;
        for (i, key, mut new) in to_write {
            validate_row(def, &mut new)?;
            let old = writes
                .visible_row(&staged, &key)
                .map_err(|e| map_df_error(&e))?
                .map(|b| row_codec::decode_row(&b))
                .transpose()
                .map_err(PgError::internal)?;
            indexes::stage(&mut staged, def, &key, old.as_deref(), None);
            if track {
                changes.add(def.id, old.into_iter(), -1);
            }
            let new_key = row_key(def, &new);
            if let Some(u) = indexes::conflict(writes, &staged, def, &new_key, &new)? {
                return Err(indexes::violation(def, u, &new));
            }
            indexes::stage(&mut staged, def, &new_key, None, Some(&new));
            if new_key != key {
                let taken = writes
                    .visible_row(&staged, &new_key)
                    .map_err(|e| map_df_error(&e))?
                    .is_some();
                if taken || !mine.insert(new_key.clone()) {
                    return Err(unique_violation(def, &new));
                }
                staged.insert(
                    key,
                    Pending {
                        table: def.id,
                        row: None,
                    },
                );
            }
            staged.insert(new_key, put(def.id, &new));
            changed.push((i, new));
        }
    }
    drop(staged);
    // In the order the source gave them, as PostgreSQL returns them.
    changed.sort_by_key(|(i, _)| *i);
    let changed: Vec<Vec<Datum>> = changed.into_iter().map(|(_, row)| row).collect();
    let n = changed.len() as u64;
    let returned = match &plan.returning {
        Some(items) => Some(rowexpr::returning(
            state,
            def,
            &plan.alias,
            items,
            &changed,
        )?),
        None => None,
    };
    if track {
        changes.add(def.id, changed, 1);
    }
    Ok((Written { rows: n, returned }, changes))
}

fn affect_twice() -> PgError {
    PgError::new(
        SqlState::CARDINALITY_VIOLATION,
        "ON CONFLICT DO UPDATE command cannot affect row a second time",
    )
    .with_hint(
        "Ensure that no rows proposed for insertion within the same command have duplicate \
         constrained values.",
    )
}

/// A proposed row whose key is taken, for `DO UPDATE`.
struct Conflict {
    /// Its position in the source.
    order: usize,
    key: Vec<u8>,
    /// The row holding the key.
    old: Vec<Datum>,
    /// The proposed row.
    excluded: Vec<Datum>,
}

/// `DO UPDATE`: for each conflicting row, in order, its new row, or `None` where the
/// `WHERE` does not hold.
fn conflict_updates(
    state: &SessionState,
    def: &TableDef,
    plan: &InsertPlan,
    assignments: &[(String, String)],
    selection: Option<&str>,
    conflicts: Vec<Conflict>,
) -> Result<Vec<(usize, Vec<u8>, Option<Vec<Datum>>)>, PgError> {
    if conflicts.is_empty() {
        return Ok(Vec::new());
    }
    let columns = assignments
        .iter()
        .map(|(c, _)| column_index(def, c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut exprs: Vec<&str> = assignments.iter().map(|(_, e)| e.as_str()).collect();
    exprs.extend(selection);
    let mut keys = Vec::with_capacity(conflicts.len());
    let mut old = Vec::with_capacity(conflicts.len());
    let mut excluded = Vec::with_capacity(conflicts.len());
    for c in conflicts {
        keys.push((c.order, c.key));
        old.push(c.old);
        excluded.push(c.excluded);
    }
    let values = rowexpr::evaluate(
        state,
        &[
            Qualified {
                qualifier: &plan.alias,
                def,
                rows: &old,
            },
            Qualified {
                qualifier: "excluded",
                def,
                rows: &excluded,
            },
        ],
        &exprs,
        keys.len(),
    )?;
    let schema = table_schema(def);
    let assigned = columns
        .iter()
        .zip(&values)
        .map(|(&c, v)| {
            let field = schema.field(c);
            assigned_value(v, field)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keep = match selection {
        Some(_) => Some(
            values[assignments.len()]
                .as_any()
                .downcast_ref::<datafusion::arrow::array::BooleanArray>()
                .cloned()
                .ok_or_else(|| {
                    PgError::new(
                        SqlState::DATATYPE_MISMATCH,
                        "argument of WHERE must be type boolean",
                    )
                })?,
        ),
        None => None,
    };
    let df = |e| map_df_error(&e);
    let mut out = Vec::with_capacity(keys.len());
    for (r, ((order, key), mut row)) in keys.into_iter().zip(old).enumerate() {
        if let Some(k) = &keep {
            if !k.is_valid(r) || !k.value(r) {
                out.push((order, key, None));
                continue;
            }
        }
        for (&c, a) in columns.iter().zip(&assigned) {
            row[c] = datum_at(a, r).map_err(df)?;
        }
        out.push((order, key, Some(row)));
    }
    Ok(out)
}

/// The source's plan (`None` for `DEFAULT VALUES`), yielding one column per target column.
async fn plan_source(
    state: &SessionState,
    plan: &InsertPlan,
    targets: usize,
    params: Option<ParamValues>,
) -> Result<Option<LogicalPlan>, PgError> {
    let df = |e| map_df_error(&e);
    let Some(source) = &plan.source else {
        return Ok(None);
    };
    let stmt = datafusion::sql::sqlparser::ast::Statement::Query(source.clone());
    let mut lp = super::plan_statement(state, stmt).await?;
    if let Some(params) = params {
        lp = lp.with_param_values(params).map_err(df)?;
    }
    let width = lp.schema().fields().len();
    // Without a column list a narrower source fills the table's first columns.
    if width > targets || (width < targets && !plan.columns.is_empty()) {
        return Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            if width > targets {
                "INSERT has more expressions than target columns"
            } else {
                "INSERT has more target columns than expressions"
            },
        ));
    }
    Ok(Some(lp))
}

/// The rows `source` yields, as full rows of `def` (NULL in columns not targeted).
async fn source_rows(
    state: &SessionState,
    def: &TableDef,
    targets: &[usize],
    source: Option<LogicalPlan>,
) -> Result<Vec<Vec<Datum>>, PgError> {
    let df = |e| map_df_error(&e);
    let Some(lp) = source else {
        return Ok(vec![vec![Datum::Null; def.columns.len()]]);
    };
    let batches = DataFrame::new(state.clone(), lp)
        .collect()
        .await
        .map_err(df)?;
    let schema = table_schema(def);
    let mut rows = Vec::new();
    for b in &batches {
        let columns = targets
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let field = schema.field(c);
                assigned_value(b.column(i), field)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            let mut row = vec![Datum::Null; def.columns.len()];
            for (&c, a) in targets.iter().zip(&columns) {
                row[c] = datum_at(a, r).map_err(df)?;
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The target columns' indexes: those named, or every column.
fn target_columns(def: &TableDef, names: &[String]) -> Result<Vec<usize>, PgError> {
    if names.is_empty() {
        return Ok((0..def.columns.len()).collect());
    }
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let i = column_index(def, n)?;
        if out.contains(&i) {
            return Err(PgError::new(
                SqlState("42701"),
                format!("column \"{n}\" specified more than once"),
            ));
        }
        out.push(i);
    }
    Ok(out)
}

fn column_index(def: &TableDef, name: &str) -> Result<usize, PgError> {
    def.column_index(name).ok_or_else(|| {
        PgError::new(
            SqlState::UNDEFINED_COLUMN,
            format!(
                "column \"{name}\" of relation \"{}\" does not exist",
                def.name
            ),
        )
    })
}

/// Which constraints `ON CONFLICT` arbitrates on: every one when it names none, else the one
/// whose columns it names (42P10 when none matches).
struct Arbiter {
    /// The named columns, sorted; `None`: every constraint.
    columns: Option<Vec<usize>>,
}

impl Arbiter {
    fn of(def: &TableDef, plan: &InsertPlan) -> Result<Arbiter, PgError> {
        let Some(c) = &plan.on_conflict else {
            return Ok(Arbiter { columns: None });
        };
        if c.target.is_empty() {
            return Ok(Arbiter { columns: None });
        }
        let mut named = c
            .target
            .iter()
            .map(|n| column_index(def, n))
            .collect::<Result<Vec<_>, _>>()?;
        named.sort_unstable();
        let arbiter = Arbiter {
            columns: Some(named),
        };
        if arbiter.covers(&def.primary_key) && !def.primary_key.is_empty() {
            return Ok(arbiter);
        }
        if def.uniques.iter().any(|u| arbiter.covers(&u.columns)) {
            if matches!(c.action, ConflictAction::Update { .. }) {
                return Err(PgError::not_supported(
                    "ON CONFLICT … DO UPDATE on a UNIQUE constraint other than the primary key",
                ));
            }
            return Ok(arbiter);
        }
        Err(PgError::new(
            SqlState("42P10"),
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
        ))
    }

    /// Whether a conflict on `columns` is arbitrated (skipped or updated, not an error).
    fn covers(&self, columns: &[usize]) -> bool {
        match &self.columns {
            None => true,
            Some(named) => {
                let mut c = columns.to_vec();
                c.sort_unstable();
                *named == c
            }
        }
    }
}
