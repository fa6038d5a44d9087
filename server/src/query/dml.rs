//! DELETE and UPDATE executed by freshet.
//!
//! The statement is bound to a read query (`freshet_sql::dml`); here it runs, under the writer
//! lock, over a snapshot of the latest commit, and the rows it yields become the statement's
//! write set: each target row once (the first match wins, as in PostgreSQL's `UPDATE … FROM`),
//! with its new values for UPDATE. The write set commits as one epoch with the views'
//! changes. Planning writes nothing.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch};
use datafusion::arrow::compute::{can_cast_types, cast_with_options, CastOptions};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use freshet_catalog::TableDef;
use freshet_common::{Datum, PgError, SqlState};
use freshet_sql::df_convert::datum_at;
use freshet_sql::error::map_df_error;
use freshet_sql::{DmlKind, DmlPlan};

use super::insert::Written;
use super::pending::{self, StatementWrites};
use crate::coord::engine::table_schema;
use crate::coord::engine::Engine;

/// The table a DELETE, UPDATE or TRUNCATE changes: a table, or PostgreSQL's errors.
pub fn target_table(engine: &Engine, name: &str, verb: &str) -> Result<Arc<TableDef>, PgError> {
    if let Some(def) = engine.catalog.table(name) {
        return Ok(def);
    }
    if engine.catalog.plain_view(name).is_some() {
        // PostgreSQL writes through simple views; freshet's views are read-only.
        return Err(PgError::not_supported(format!("{verb} view \"{name}\""))
            .with_hint("Views are read-only here: write to the tables the view reads."));
    }
    let kind = if engine.catalog.view(name).is_some() {
        "materialized view"
    } else if engine.catalog.source(name).is_some() {
        "source"
    } else {
        return Err(PgError::new(
            SqlState::UNDEFINED_TABLE,
            format!("relation \"{name}\" does not exist"),
        ));
    };
    Err(PgError::new(
        SqlState::WRONG_OBJECT_TYPE,
        format!("cannot {verb} {kind} \"{name}\""),
    ))
}

/// The table `plan` changes, or PostgreSQL's errors for other relations.
pub fn dml_target(engine: &Engine, plan: &DmlPlan) -> Result<Arc<TableDef>, PgError> {
    let verb = match plan.kind {
        DmlKind::Delete => "delete from",
        DmlKind::Update => "update",
    };
    target_table(engine, &plan.table, verb)
}

/// Plans `plan`'s read query with `state` (its parameters bound).
pub async fn plan_read(
    state: &SessionState,
    plan: &DmlPlan,
    params: Option<ParamValues>,
) -> Result<LogicalPlan, PgError> {
    let mut stmts = freshet_sql::parse(&plan.query)?;
    let stmt = stmts
        .pop()
        .ok_or_else(|| PgError::internal("empty DML read query"))?;
    let mut lp = state
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            stmt,
        )))
        .await
        .map_err(|e| map_df_error(&e))?;
    if let Some(params) = params {
        lp = lp.with_param_values(params).map_err(|e| map_df_error(&e))?;
    }
    Ok(lp)
}

/// Runs a DELETE or UPDATE: reads its write set and commits it, or, inside a transaction
/// block (`block`), stages it. Outside a block the writer lock is held from the read to the
/// commit, so the rows read are the latest committed ones.
pub async fn execute(
    engine: &Arc<Engine>,
    mut state: SessionState,
    plan: &DmlPlan,
    params: Option<ParamValues>,
    block: Option<Arc<StatementWrites>>,
) -> Result<Written, PgError> {
    let def = dml_target(engine, plan)?;
    let assigned = assigned_columns(&def, plan)?;
    let df = |e| map_df_error(&e);
    let lp = plan_read(&state, plan, params).await?;
    let (writer, writes) = pending::for_statement(engine, block, Some(&lp)).await?;
    writes.install(&mut state);
    let batches = DataFrame::new(state.clone(), lp)
        .collect()
        .await
        .map_err(df)?;
    let rows = changed_rows(&def, &assigned, &batches)?;
    // In a block: wait for other blocks changing these rows (row locks).
    let keys: Vec<&[u8]> = rows.iter().map(|(k, _, _)| k.as_slice()).collect();
    writes.lock_rows(engine, &keys).await?;
    writes.check_unchanged(engine, &keys)?;
    let returned = match &plan.returning {
        Some(items) => {
            let shown: Vec<Vec<Datum>> = rows
                .iter()
                .map(|(_, old, new)| match plan.kind {
                    DmlKind::Delete => old.clone(),
                    DmlKind::Update => new.clone(),
                })
                .collect();
            Some(super::rowexpr::returning(
                &state,
                &def,
                &plan.alias,
                items,
                &shown,
            )?)
        }
        None => None,
    };
    // Outside a block the views' input is known here: the rows read under the writer lock.
    let known = match &writer {
        Some(_) if engine.has_dependents(def.id) => {
            let mut changes = freshet_dataflow::EpochChanges::default();
            changes.add(def.id, rows.iter().map(|(_, old, _)| old.clone()), -1);
            if plan.kind == DmlKind::Update {
                changes.add(def.id, rows.iter().map(|(_, _, new)| new.clone()), 1);
            }
            Some(changes)
        }
        Some(_) => Some(freshet_dataflow::EpochChanges::default()),
        None => None,
    };
    let rows = match plan.kind {
        DmlKind::Delete => pending::stage_delete(
            &writes,
            &def,
            rows.into_iter().map(|(k, old, _)| (k, old)).collect(),
        ),
        DmlKind::Update => {
            let values: Vec<Vec<Datum>> = rows.iter().map(|(_, _, new)| new.clone()).collect();
            super::rowexpr::check_constraints(&state, &def, &values)?;
            pending::stage_update(&writes, &def, rows)?
        }
    };
    if let Some(w) = writer {
        pending::commit_writes(engine, w, &writes.take_staged(), known).await?;
    }
    Ok(Written { rows, returned })
}

/// The rows a DML read query selected, each target row once (the first match wins, as in
/// PostgreSQL's `UPDATE … FROM`): store key, row, and the new row (for DELETE, the row).
#[allow(clippy::type_complexity)]
fn changed_rows(
    def: &TableDef,
    assigned: &[usize],
    batches: &[RecordBatch],
) -> Result<Vec<(Vec<u8>, Vec<Datum>, Vec<Datum>)>, PgError> {
    let df = |e| map_df_error(&e);
    let width = def.columns.len();
    let schema = table_schema(def);
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for b in batches {
        let keys = key_column(b, width)?;
        let new_values = assigned
            .iter()
            .enumerate()
            .map(|(i, &col)| {
                let field = schema.field(col);
                assigned_value(b.column(width + 1 + i), field)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            if !seen.insert(keys.value(r)) {
                continue;
            }
            let old = row_at(b, width, r).map_err(df)?;
            let mut new = old.clone();
            for (&col, values) in assigned.iter().zip(&new_values) {
                new[col] = datum_at(values, r).map_err(df)?;
            }
            rows.push((keys.value(r).to_vec(), old, new));
        }
    }
    Ok(rows)
}

/// The table columns an UPDATE assigns, by index, in the read query's order.
fn assigned_columns(def: &TableDef, plan: &DmlPlan) -> Result<Vec<usize>, PgError> {
    plan.assignments
        .iter()
        .map(|name| {
            def.column_index(name).ok_or_else(|| {
                PgError::new(
                    SqlState::UNDEFINED_COLUMN,
                    format!(
                        "column \"{name}\" of relation \"{}\" does not exist",
                        def.name
                    ),
                )
            })
        })
        .collect()
}

fn key_column(b: &RecordBatch, width: usize) -> Result<&BinaryArray, PgError> {
    b.column(width)
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| PgError::internal("DML read query lost its key column"))
}

fn row_at(b: &RecordBatch, width: usize, r: usize) -> datafusion::error::Result<Vec<Datum>> {
    (0..width).map(|c| datum_at(b.column(c), r)).collect()
}

/// An assigned value converted to its column's type: exactly, or an error. Text assigned
/// to a `jsonb` or `uuid` column must be one and is kept in its canonical form.
pub(super) fn assigned_value(
    values: &ArrayRef,
    field: &datafusion::arrow::datatypes::Field,
) -> Result<ArrayRef, PgError> {
    let (to, column) = (field.data_type(), field.name().as_str());
    // Types held as canonical text: checked and canonicalized value by value.
    let canonical: Option<fn(&str) -> Result<String, PgError>> =
        match freshet_sql::types::sql_type_of(field) {
            Some(freshet_common::SqlType::Jsonb) => Some(freshet_sql::pg_jsonb::normalize),
            Some(freshet_common::SqlType::Uuid) => Some(freshet_sql::pg_uuid::canonical),
            _ => None,
        };
    let text = values.as_any().downcast_ref::<datafusion::arrow::array::StringArray>();
    if let (Some(canonical), Some(text)) = (canonical, text) {
        let out = text
            .iter()
            .map(|v| v.map(canonical).transpose())
            .collect::<Result<datafusion::arrow::array::StringArray, PgError>>()?;
        return Ok(Arc::new(out));
    }
    if values.data_type() == to {
        return Ok(Arc::clone(values));
    }
    let mismatch = || {
        PgError::new(
            SqlState::DATATYPE_MISMATCH,
            format!(
                "column \"{column}\" is of type {} but expression is of type {}",
                pg_type_name(to),
                pg_type_name(values.data_type())
            ),
        )
    };
    if !can_cast_types(values.data_type(), to) {
        return Err(mismatch());
    }
    if let Some(parsed) = pg_time_input(values, to) {
        return Ok(parsed);
    }
    if let Some(parsed) = pg_bytea_input(values, to) {
        return parsed;
    }
    if let Some(parsed) = pg_array_input(values, to, column) {
        return parsed;
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(values, to, &options).map_err(|e| {
        let state = match values.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if to.is_temporal() => {
                SqlState("22007") // invalid_datetime_format
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                SqlState::INVALID_TEXT_REPRESENTATION
            }
            _ => SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
        };
        PgError::new(
            state,
            format!("value for column \"{column}\" out of range or invalid: {e}"),
        )
    })
}

/// Text assigned to a `timestamp`, `timestamptz`, `date` or `interval` column, read in
/// PostgreSQL's input forms (`'2026-11-01 10:00'`, `'1 day 02:03:04'`); `None` when a value is
/// in none of them (Arrow's cast then reads it, or says what is wrong).
fn pg_time_input(values: &ArrayRef, to: &DataType) -> Option<ArrayRef> {
    use datafusion::arrow::array::{
        Date32Array, IntervalMonthDayNanoArray, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{IntervalUnit, TimeUnit};
    use freshet_sql::pg_input::{parse_date, parse_timestamp};
    let text = values.as_any().downcast_ref::<StringArray>()?;
    match to {
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let parsed = text
                .iter()
                .map(|s| {
                    s.map(|s| parse_timestamp(s, tz.is_some()).ok_or(()))
                        .transpose()
                })
                .collect::<Result<Vec<_>, ()>>()
                .ok()?;
            Some(Arc::new(
                TimestampMicrosecondArray::from(parsed).with_timezone_opt(tz.clone()),
            ))
        }
        DataType::Date32 => {
            let parsed = text
                .iter()
                .map(|s| s.map(|s| parse_date(s).ok_or(())).transpose())
                .collect::<Result<Vec<_>, ()>>()
                .ok()?;
            Some(Arc::new(Date32Array::from(parsed)))
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let parsed = text
                .iter()
                .map(|s| s.map(|s| freshet_sql::pg_interval_in::parse_arrow(s).ok_or(())).transpose())
                .collect::<Result<Vec<_>, ()>>()
                .ok()?;
            Some(Arc::new(IntervalMonthDayNanoArray::from(parsed)))
        }
        _ => None,
    }
}

/// Text assigned to a `bytea` column, read in PostgreSQL's input forms (`'\xdeadbeef'`,
/// `'a\000b'`); Arrow's cast would store the text's own bytes.
fn pg_bytea_input(values: &ArrayRef, to: &DataType) -> Option<Result<ArrayRef, PgError>> {
    use datafusion::arrow::array::StringArray;
    if *to != DataType::Binary {
        return None;
    }
    let text = values.as_any().downcast_ref::<StringArray>()?;
    Some(
        text.iter()
            .map(|s| s.map(freshet_sql::pg_input::parse_bytea).transpose())
            .collect::<Result<Vec<_>, _>>()
            .map(|v| Arc::new(BinaryArray::from_iter(v)) as ArrayRef),
    )
}

/// Text assigned to an array column, read as PostgreSQL's array literal (`'{1,2}'`,
/// `'{a,"b c",NULL}'`) and its elements cast to the element type (Arrow's cast would read the
/// whole text as one element).
fn pg_array_input(
    values: &ArrayRef,
    to: &DataType,
    column: &str,
) -> Option<Result<ArrayRef, PgError>> {
    use datafusion::arrow::array::{ListBuilder, StringArray, StringBuilder};
    if !freshet_sql::pg_array_in::is_list(to) {
        return None;
    }
    let text = values.as_any().downcast_ref::<StringArray>()?;
    let mut lists = ListBuilder::new(StringBuilder::new());
    for t in text.iter() {
        match t {
            None => lists.append_null(),
            Some(t) => match freshet_sql::pg_array_in::parse(t) {
                Ok(elements) => {
                    for e in elements {
                        lists.values().append_option(e);
                    }
                    lists.append(true);
                }
                Err(e) => return Some(Err(e)),
            },
        }
    }
    let lists: ArrayRef = Arc::new(lists.finish());
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    Some(cast_with_options(&lists, to, &options).map_err(|e| {
        PgError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("value for column \"{column}\" out of range or invalid: {e}"),
        )
    }))
}

fn pg_type_name(dt: &DataType) -> String {
    match freshet_sql::types::sql_type_of(&datafusion::arrow::datatypes::Field::new(
        "x",
        dt.clone(),
        true,
    )) {
        Some(t) => t.pg_name().to_string(),
        None => dt.to_string(),
    }
}
