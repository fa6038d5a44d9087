//! Point statements: a SELECT, UPDATE or DELETE that names its rows by key is answered by a
//! direct store lookup, without planning a query (shapes recognized by `freshet_sql::point`).
//!
//! Each function binds the shape against the catalog and returns `None` when it does not fit
//! — the relation is not one of ours, the conditions do not cover the key, a value's type does
//! not match its column exactly, the table has CHECK constraints — and the caller takes the
//! general path, which gives the same answer at a higher cost (and every error message).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use freshet_catalog::{Privileges, TableDef};
use freshet_common::{Datum, PgError, SqlState, SqlType};
use freshet_dataflow::{decode_contents, EpochChanges, MaterializedView};
use freshet_sql::df_convert::rows_to_batch;
use freshet_sql::point::{ArithOp, InsertValue, PointExpr, PointSelect, PointValue, PointWrite};
use freshet_sql::{DmlKind, DmlPlan, InsertPlan};
use freshet_state::{key_codec, next_key, row_codec, table_prefix, Snapshot};

use super::insert::Written;
use super::pending::{self, StatementWrites};
use super::scan::successor;
use crate::coord::engine::table_schema;
use crate::access::Identity;
use crate::coord::engine::Engine;

/// Rows per page read from a view.
const PAGE_ROWS: usize = 4096;

/// A point SELECT's rows, or `None` to take the general path. `block`: the running
/// statement's transaction block, whose pending writes the read sees (for tables).
pub async fn select(
    engine: &Engine,
    identity: &Identity,
    block: Option<&StatementWrites>,
    shape: &PointSelect,
    params: Option<&ParamValues>,
) -> Result<Option<(SchemaRef, RecordBatch)>, PgError> {
    if let Some(def) = engine.catalog.table(&shape.relation) {
        let schema = table_schema(&def);
        let Some(key) = table_key(&def, &schema, &shape.conditions, params) else {
            return Ok(None);
        };
        let Some((out, columns)) = output(&schema, shape) else {
            return Ok(None);
        };
        identity.require(&engine.catalog, &def.name, Privileges::SELECT)?;
        let stored = match block {
            Some(b) => match b.block.get(&key) {
                Some(p) => p.row.clone(),
                None => b.snapshot.get(&key).map_err(PgError::internal)?,
            },
            None => engine.store.get(&key).map_err(PgError::internal)?,
        };
        let rows = match stored {
            Some(bytes) => vec![row_codec::decode_row(&bytes).map_err(PgError::internal)?],
            None => Vec::new(),
        };
        return batch(out, &rows, &columns).map(Some);
    }
    let view = engine
        .catalog
        .view(&shape.relation)
        .and_then(|def| engine.dataflows.get(def.id));
    let Some(view) = view else {
        return Ok(None);
    };
    if block.is_some_and(|b| super::view::block_touches(engine, &view, b)) {
        // Its rows over the block's writes come from a preview epoch (query/view.rs).
        return Ok(None);
    }
    let Some((out, columns)) = output(&view.schema, shape) else {
        return Ok(None);
    };
    let Some(filter) = view_filter(&view.schema, &shape.conditions, params) else {
        return Ok(None);
    };
    identity.require(&engine.catalog, &view.name, Privileges::SELECT)?;
    let snapshot = match block {
        Some(b) => Arc::clone(&b.snapshot),
        None if view.has_contents_log() => Arc::new(
            engine
                .read_snapshot()
                .await
                .map_err(|e| freshet_sql::error::map_df_error(&e))?,
        ),
        None => Arc::new(engine.store.snapshot()),
    };
    let rows = view_rows(&snapshot, &view, &filter)?;
    batch(out, &rows, &columns).map(Some)
}

/// Runs a point UPDATE or DELETE (`plan.point`), or returns `None` for the general path.
/// Outside a block it commits at once, under the writer lock held since its read.
pub async fn write(
    engine: &Engine,
    block: Option<Arc<StatementWrites>>,
    plan: &DmlPlan,
    params: Option<&ParamValues>,
) -> Result<Option<Written>, PgError> {
    let Some(shape) = &plan.point else {
        return Ok(None);
    };
    if plan.returning.is_some() {
        return Ok(None);
    }
    let Some(def) = engine.catalog.table(&shape.table) else {
        return Ok(None);
    };
    if !def.checks.is_empty() {
        return Ok(None);
    }
    let schema = table_schema(&def);
    let Some(key) = table_key(&def, &schema, &shape.conditions, params) else {
        return Ok(None);
    };
    let Some(assignments) = bind_assignments(&def, shape, params) else {
        return Ok(None);
    };
    let (writer, writes) = pending::for_statement(engine, block, None).await?;
    writes.lock_rows(engine, &[&key]).await?;
    let old = {
        let staged = writes.lock();
        writes.locked_row(engine, &staged, &key)?
    };
    let Some(old) = old else {
        return Ok(Some(Written {
            rows: 0,
            returned: None,
        }));
    };
    let old = row_codec::decode_row(&old).map_err(PgError::internal)?;
    let new = match plan.kind {
        DmlKind::Delete => None,
        DmlKind::Update => Some(assign(&def, &old, &assignments)?),
    };
    let known = writer.as_ref().map(|_| {
        let mut changes = EpochChanges::default();
        if engine.has_dependents(def.id) {
            changes.add(def.id, [old.clone()], -1);
            if let Some(new) = &new {
                changes.add(def.id, [new.clone()], 1);
            }
        }
        changes
    });
    let rows = match new {
        None => pending::stage_delete(&writes, &def, vec![(key, old)]),
        Some(new) => pending::stage_update(&writes, &def, vec![(key, old, new)])?,
    };
    if let Some(w) = writer {
        pending::commit_writes(engine, w, &writes.take_staged(), known).await?;
    }
    Ok(Some(Written {
        rows,
        returned: None,
    }))
}

/// An INSERT's VALUES rows converted without planning (see `freshet_sql::point::insert_values`):
/// full rows of `def` (NULL where not targeted) and the (row, column) places of the current
/// time, which [`fill_now`] sets once the statement has started. `None`: plan the source.
/// `utc`: the session's time zone is UTC (a `timestamp` column then takes the time as is).
pub fn insert_rows(
    def: &TableDef,
    targets: &[usize],
    plan: &InsertPlan,
    params: Option<&ParamValues>,
    utc: bool,
) -> Option<(Vec<Vec<Datum>>, Vec<(usize, usize)>)> {
    let values = freshet_sql::point::insert_values(plan.source.as_ref()?)?;
    let schema = table_schema(def);
    let mut rows = Vec::with_capacity(values.len());
    let mut now = Vec::new();
    for (r, row) in values.iter().enumerate() {
        if row.len() != targets.len() {
            return None;
        }
        let mut full = vec![Datum::Null; def.columns.len()];
        for (v, &c) in row.iter().zip(targets) {
            let ty = &def.columns[c].ty;
            full[c] = match v {
                InsertValue::Null => Datum::Null,
                InsertValue::Now => {
                    match ty {
                        SqlType::TimestampTz => {}
                        SqlType::Timestamp if utc => {}
                        _ => return None,
                    }
                    now.push((r, c));
                    Datum::Null
                }
                InsertValue::Value(PointValue::Param(i)) if param(params, *i)?.is_null() => {
                    Datum::Null
                }
                InsertValue::Value(v) => {
                    if !plain_type(ty) {
                        return None;
                    }
                    bind_value(v, schema.field(c).data_type(), params)?
                }
            };
        }
        rows.push(full);
    }
    Some((rows, now))
}

/// Sets the current-time places of [`insert_rows`] to `start` (the statement's start).
pub fn fill_now(rows: &mut [Vec<Datum>], places: &[(usize, usize)], start: Option<chrono::DateTime<chrono::Utc>>) {
    let start = start.unwrap_or_else(chrono::Utc::now).timestamp_micros();
    for &(r, c) in places {
        rows[r][c] = Datum::Timestamp(start);
    }
}

/// The store key of the one row `conditions` name: they must cover the primary key exactly.
fn table_key(
    def: &TableDef,
    schema: &Schema,
    conditions: &[(String, PointValue)],
    params: Option<&ParamValues>,
) -> Option<Vec<u8>> {
    if def.primary_key.is_empty() || conditions.len() != def.primary_key.len() {
        return None;
    }
    let mut pk = Vec::with_capacity(def.primary_key.len());
    for &c in &def.primary_key {
        let column = &def.columns[c];
        let (_, v) = conditions.iter().find(|(n, _)| n == &column.name)?;
        if !plain_type(&column.ty) {
            return None;
        }
        pk.push(bind_value(v, schema.field(c).data_type(), params)?);
    }
    let mut key = table_prefix(def.id);
    key_codec::encode_key(&pk, &mut key);
    Some(key)
}

/// Column types whose equality is their key encoding's (no padding, no float zeros).
fn plain_type(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Bool
            | SqlType::Int2
            | SqlType::Int4
            | SqlType::Int8
            | SqlType::Text
            | SqlType::Varchar(_)
    )
}

/// `v` as a value of type `dt`, when it is one exactly (a literal of another type, a NULL or
/// a parameter of another type: `None`).
fn bind_value(v: &PointValue, dt: &DataType, params: Option<&ParamValues>) -> Option<Datum> {
    match (v, dt) {
        (PointValue::Number(n), DataType::Int16) => n.parse().ok().map(Datum::Int16),
        (PointValue::Number(n), DataType::Int32) => n.parse().ok().map(Datum::Int32),
        (PointValue::Number(n), DataType::Int64) => n.parse().ok().map(Datum::Int64),
        (PointValue::Text(s), DataType::Utf8) => Some(Datum::Text(s.clone())),
        (PointValue::Bool(b), DataType::Boolean) => Some(Datum::Bool(*b)),
        (PointValue::Param(i), _) => bind_scalar(param(params, *i)?, dt),
        _ => None,
    }
}

fn param(params: Option<&ParamValues>, i: usize) -> Option<&ScalarValue> {
    match params? {
        ParamValues::List(list) => list.get(i).map(|p| &p.value),
        ParamValues::Map(_) => None,
    }
}

fn bind_scalar(v: &ScalarValue, dt: &DataType) -> Option<Datum> {
    let int = || -> Option<i128> {
        Some(match v {
            ScalarValue::Int8(x) => (*x)?.into(),
            ScalarValue::Int16(x) => (*x)?.into(),
            ScalarValue::Int32(x) => (*x)?.into(),
            ScalarValue::Int64(x) => (*x)?.into(),
            ScalarValue::UInt8(x) => (*x)?.into(),
            ScalarValue::UInt16(x) => (*x)?.into(),
            ScalarValue::UInt32(x) => (*x)?.into(),
            ScalarValue::UInt64(x) => (*x)?.into(),
            _ => return None,
        })
    };
    match dt {
        DataType::Int16 => i16::try_from(int()?).ok().map(Datum::Int16),
        DataType::Int32 => i32::try_from(int()?).ok().map(Datum::Int32),
        DataType::Int64 => i64::try_from(int()?).ok().map(Datum::Int64),
        DataType::Utf8 => match v {
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
                Some(Datum::Text(s.clone()))
            }
            _ => None,
        },
        DataType::Boolean => match v {
            ScalarValue::Boolean(Some(b)) => Some(Datum::Bool(*b)),
            _ => None,
        },
        _ => None,
    }
}

/// The result's schema (PostgreSQL's column names) and the relation columns feeding it.
fn output(schema: &Schema, shape: &PointSelect) -> Option<(SchemaRef, Vec<usize>)> {
    let Some(cols) = &shape.columns else {
        return Some((Arc::new(schema.clone()), (0..schema.fields().len()).collect()));
    };
    let mut fields = Vec::with_capacity(cols.len());
    let mut columns = Vec::with_capacity(cols.len());
    for (name, shown) in cols {
        let (i, f) = schema.column_with_name(name)?;
        fields.push(f.as_ref().clone().with_name(shown));
        columns.push(i);
    }
    Some((Arc::new(Schema::new(fields)), columns))
}

fn batch(schema: SchemaRef, rows: &[Vec<Datum>], columns: &[usize]) -> Result<(SchemaRef, RecordBatch), PgError> {
    let b = rows_to_batch(rows, &schema, columns).map_err(|e| freshet_sql::error::map_df_error(&e))?;
    Ok((schema, b))
}

/// A view's point read: the value its first column must have (its contents are ordered by
/// it in every layout), and every condition to check on the rows found.
struct ViewFilter {
    first: Datum,
    equal: Vec<(usize, Datum)>,
}

fn view_filter(
    schema: &Schema,
    conditions: &[(String, PointValue)],
    params: Option<&ParamValues>,
) -> Option<ViewFilter> {
    let mut equal = Vec::with_capacity(conditions.len());
    for (name, v) in conditions {
        let (i, f) = schema.column_with_name(name)?;
        equal.push((i, bind_value(v, f.data_type(), params)?));
    }
    let first = equal.iter().find(|(i, _)| *i == 0)?.1.clone();
    Some(ViewFilter { first, equal })
}

/// The view's rows (each as often as it occurs) whose first column is `filter.first` and
/// that meet every condition.
fn view_rows(
    snapshot: &Snapshot,
    view: &MaterializedView,
    filter: &ViewFilter,
) -> Result<Vec<Vec<Datum>>, PgError> {
    let prefix = view.contents_prefix();
    let mut lower = prefix.clone();
    key_codec::encode_key(std::slice::from_ref(&filter.first), &mut lower);
    let upper = successor(&lower);
    let mut rows = Vec::new();
    loop {
        let page = snapshot
            .scan(&prefix, &lower, upper.as_deref(), PAGE_ROWS)
            .map_err(PgError::internal)?;
        for (_, v) in &page {
            let (n, row) = decode_contents(v).map_err(|e| freshet_sql::error::map_df_error(&e))?;
            if filter.equal.iter().all(|(i, d)| &row[*i] == d) {
                for _ in 0..n {
                    rows.push(row.clone());
                }
            }
        }
        match page.last() {
            Some((k, _)) if page.len() == PAGE_ROWS => lower = next_key(k),
            _ => return Ok(rows),
        }
    }
}

/// An UPDATE's assignments bound to the table: (column, value) with the columns and
/// parameters resolved, or `None` when one falls outside what [`assign`] evaluates.
fn bind_assignments(
    def: &TableDef,
    shape: &PointWrite,
    params: Option<&ParamValues>,
) -> Option<Vec<(usize, Bound)>> {
    let schema = table_schema(def);
    shape
        .assignments
        .iter()
        .map(|(name, e)| {
            let c = def.column_index(name)?;
            if def.primary_key.contains(&c) {
                return None;
            }
            let ty = &def.columns[c].ty;
            let bound = match e {
                PointExpr::Value(v) => {
                    if !plain_type(ty) {
                        return None;
                    }
                    Bound::Datum(bind_value(v, schema.field(c).data_type(), params)?)
                }
                e => {
                    let (b, _) = bind_int(def, e, params)?;
                    if int_width(ty).is_none() {
                        return None;
                    }
                    b
                }
            };
            Some((c, bound))
        })
        .collect()
}

/// A bound assigned value.
enum Bound {
    Datum(Datum),
    Column(usize),
    Int(i128),
    Arith(Box<Bound>, ArithOp, Box<Bound>, IntWidth),
}

/// PostgreSQL's integer types, in order of width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum IntWidth {
    Small,
    Int,
    Big,
}

fn int_width(ty: &SqlType) -> Option<IntWidth> {
    match ty {
        SqlType::Int2 => Some(IntWidth::Small),
        SqlType::Int4 => Some(IntWidth::Int),
        SqlType::Int8 => Some(IntWidth::Big),
        _ => None,
    }
}

impl IntWidth {
    fn range(self) -> (i128, i128, &'static str) {
        match self {
            IntWidth::Small => (i16::MIN.into(), i16::MAX.into(), "smallint out of range"),
            IntWidth::Int => (i32::MIN.into(), i32::MAX.into(), "integer out of range"),
            IntWidth::Big => (i64::MIN.into(), i64::MAX.into(), "bigint out of range"),
        }
    }

    fn check(self, v: i128) -> Result<i128, PgError> {
        let (lo, hi, msg) = self.range();
        if v < lo || v > hi {
            return Err(PgError::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, msg));
        }
        Ok(v)
    }
}

/// Integer arithmetic typed as PostgreSQL types it: a literal is `integer` when it fits,
/// else `bigint`; an operator's result has its wider operand's type.
fn bind_int(def: &TableDef, e: &PointExpr, params: Option<&ParamValues>) -> Option<(Bound, IntWidth)> {
    match e {
        PointExpr::Column(name) => {
            let c = def.column_index(name)?;
            Some((Bound::Column(c), int_width(&def.columns[c].ty)?))
        }
        PointExpr::Value(PointValue::Number(n)) => {
            let v: i64 = n.parse().ok()?;
            let w = if i32::try_from(v).is_ok() {
                IntWidth::Int
            } else {
                IntWidth::Big
            };
            Some((Bound::Int(v.into()), w))
        }
        PointExpr::Value(PointValue::Param(i)) => {
            let v = param(params, *i)?;
            let w = match v {
                ScalarValue::Int16(_) => IntWidth::Small,
                ScalarValue::Int32(_) => IntWidth::Int,
                ScalarValue::Int64(_) => IntWidth::Big,
                _ => return None,
            };
            match bind_scalar(v, &DataType::Int64)? {
                Datum::Int64(x) => Some((Bound::Int(x.into()), w)),
                _ => None,
            }
        }
        PointExpr::Value(_) => None,
        PointExpr::Arith(l, op, r) => {
            let (l, lw) = bind_int(def, l, params)?;
            let (r, rw) = bind_int(def, r, params)?;
            let w = lw.max(rw);
            Some((Bound::Arith(Box::new(l), *op, Box::new(r), w), w))
        }
    }
}

/// The row `old` becomes under `assignments` (all evaluated over `old`).
fn assign(def: &TableDef, old: &[Datum], assignments: &[(usize, Bound)]) -> Result<Vec<Datum>, PgError> {
    let mut new = old.to_vec();
    for (c, b) in assignments {
        new[*c] = match b {
            Bound::Datum(d) => d.clone(),
            b => {
                let w = int_width(&def.columns[*c].ty).expect("bound as an integer column");
                match eval(b, old)? {
                    None => Datum::Null,
                    Some(v) => match w {
                        IntWidth::Small => Datum::Int16(w.check(v)? as i16),
                        IntWidth::Int => Datum::Int32(w.check(v)? as i32),
                        IntWidth::Big => Datum::Int64(w.check(v)? as i64),
                    },
                }
            }
        };
    }
    Ok(new)
}

/// An integer expression over `row`; `None` for NULL.
fn eval(b: &Bound, row: &[Datum]) -> Result<Option<i128>, PgError> {
    Ok(match b {
        Bound::Datum(_) => unreachable!("values are assigned, not evaluated"),
        Bound::Column(c) => match &row[*c] {
            Datum::Int16(v) => Some((*v).into()),
            Datum::Int32(v) => Some((*v).into()),
            Datum::Int64(v) => Some((*v).into()),
            _ => None,
        },
        Bound::Int(v) => Some(*v),
        Bound::Arith(l, op, r, w) => match (eval(l, row)?, eval(r, row)?) {
            (Some(l), Some(r)) => Some(w.check(match op {
                ArithOp::Add => l + r,
                ArithOp::Sub => l - r,
                ArithOp::Mul => l * r,
            })?),
            _ => None,
        },
    })
}
