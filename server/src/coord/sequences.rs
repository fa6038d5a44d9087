//! Sequences of identity columns (`SERIAL`, `GENERATED … AS IDENTITY`), also by the names
//! PostgreSQL gives them (`<table>_<column>_seq`): `nextval`, `currval`, `lastval`, `setval`
//! and `pg_get_serial_sequence`.
//!
//! As in PostgreSQL a sequence is not transactional: values taken by a statement or block
//! that then fails are never handed out again. The next value is stored (`meta/seq/<table>/
//! <column>`) before the values are used, so no value is handed out twice, restarts
//! included. Each session remembers the last value it took of each sequence (`currval`) and
//! of any (`lastval`), identity values its INSERTs took included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Builder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use freshet_catalog::TableDef;
use freshet_common::{PgError, SqlState, TableId};
use freshet_state::{meta_key, Store, WriteBatch};

use crate::coord::engine::Engine;

/// One identity column's sequence.
type SequenceId = (TableId, usize);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn key(id: SequenceId) -> Vec<u8> {
    meta_key(format!("seq/{}/{}", id.0 .0, id.1).as_bytes())
}

/// The server's sequences: the next value of each (read from the store when first used).
#[derive(Debug, Default)]
pub struct Sequences {
    next: Mutex<HashMap<SequenceId, i64>>,
}

impl Sequences {
    /// Takes `n` consecutive values of the sequence of identity column `column` of `table`,
    /// returning the first.
    pub fn take(
        &self,
        store: &Store,
        table: TableId,
        column: usize,
        n: i64,
    ) -> freshet_state::Result<i64> {
        let id = (table, column);
        let mut next = lock(&self.next);
        let first = match next.get(&id) {
            Some(v) => *v,
            None => match store.get(&key(id))? {
                Some(v) => v.as_slice().try_into().map(i64::from_be_bytes).unwrap_or(1),
                None => 1,
            },
        };
        Self::store(store, id, first.saturating_add(n))?;
        next.insert(id, first.saturating_add(n));
        Ok(first)
    }

    /// The value the sequence hands out next.
    fn peek(&self, store: &Store, id: SequenceId) -> freshet_state::Result<i64> {
        if let Some(v) = lock(&self.next).get(&id) {
            return Ok(*v);
        }
        Ok(match store.get(&key(id))? {
            Some(v) => v.as_slice().try_into().map(i64::from_be_bytes).unwrap_or(1),
            None => 1,
        })
    }

    /// Makes `value` the next value the sequence hands out.
    fn set(&self, store: &Store, id: SequenceId, value: i64) -> freshet_state::Result<()> {
        let mut next = lock(&self.next);
        Self::store(store, id, value)?;
        next.insert(id, value);
        Ok(())
    }

    fn store(store: &Store, id: SequenceId, next: i64) -> freshet_state::Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(key(id), next.to_be_bytes());
        store.write_unsynced(batch)
    }
}

/// What one session took of each sequence.
#[derive(Debug, Default)]
pub struct SessionSequences {
    taken: Mutex<(HashMap<SequenceId, i64>, Option<i64>)>,
}

impl SessionSequences {
    /// Records that the session took `value` of the sequence of `column` of `table`.
    pub fn record(&self, table: TableId, column: usize, value: i64) {
        let mut t = lock(&self.taken);
        t.0.insert((table, column), value);
        t.1 = Some(value);
    }

    /// The session's sequences, from a statement's state.
    pub fn of(state: &dyn datafusion::catalog::Session) -> Option<Arc<SessionSequences>> {
        state.config().get_extension::<SessionSequences>()
    }
}

/// PostgreSQL's name of the sequence of `column` of `table`.
pub fn sequence_name(table: &str, column: &str) -> String {
    format!("{table}_{column}_seq")
}

/// The sequence named `name` (as a relation name: already unquoted) read as a relation, as
/// PostgreSQL lets one be read (`SELECT last_value, is_called FROM t_id_seq`: pg_dump does):
/// its one row as of now. `None` when no identity column has a sequence of that name.
pub fn sequence_relation(
    engine: &Engine,
    name: &str,
) -> Option<Result<Arc<dyn datafusion::catalog::TableProvider>>> {
    use datafusion::arrow::array::{BooleanArray, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{Field, Schema};
    let (table, column) = engine.catalog.tables().into_iter().find_map(|t| {
        let c = t
            .columns
            .iter()
            .position(|c| c.identity.is_some() && sequence_name(&t.name, &c.name) == name)?;
        Some((t, c))
    })?;
    let relation = || -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        let next = engine
            .sequences
            .peek(&engine.store, (table.id, column))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        // A sequence starts at 1 by 1: before its first value, last_value is its start.
        let (last, called) = if next > 1 { (next - 1, true) } else { (1, false) };
        let schema = Arc::new(Schema::new(vec![
            Field::new("last_value", DataType::Int64, false),
            Field::new("log_cnt", DataType::Int64, false),
            Field::new("is_called", DataType::Boolean, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![last])),
                Arc::new(Int64Array::from(vec![0])),
                Arc::new(BooleanArray::from(vec![called])),
            ],
        )?;
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?))
    };
    Some(relation())
}

/// The identity column a sequence name (`t_id_seq`, `public.t_id_seq`, `"T_id_seq"`) names.
fn resolve(engine: &Engine, name: &str) -> std::result::Result<(Arc<TableDef>, usize), PgError> {
    let bare = name.strip_prefix("public.").unwrap_or(name);
    let bare = match bare.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => bare.to_lowercase(),
    };
    for t in engine.catalog.tables() {
        if let Some(c) = t
            .columns
            .iter()
            .position(|c| c.identity.is_some() && sequence_name(&t.name, &c.name) == bare)
        {
            return Ok((t, c));
        }
    }
    Err(PgError::new(
        SqlState::UNDEFINED_TABLE,
        format!("relation \"{name}\" does not exist"),
    ))
}

fn pg(e: PgError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Nextval,
    Currval,
    Lastval,
    Setval,
    SerialSequence,
}

/// One of the sequence functions, bound to a session.
#[derive(Debug)]
struct SequenceFn {
    kind: Kind,
    engine: Arc<Engine>,
    session: Arc<SessionSequences>,
    who: crate::access::Identity,
    signature: Signature,
}

impl PartialEq for SequenceFn {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.session, &other.session)
    }
}

impl Eq for SequenceFn {}

impl std::hash::Hash for SequenceFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl SequenceFn {
    /// 42501 unless the session may write the sequence's table (`nextval`, `setval`) or read
    /// it (`currval`).
    fn authorize(&self, name: &str, table: &TableDef, write: bool) -> Result<()> {
        use freshet_catalog::Privileges;
        let Some(access) = self.engine.catalog.object_access(&table.name) else {
            return Ok(());
        };
        let wants: &[Privileges] = if write {
            &[Privileges::INSERT, Privileges::UPDATE]
        } else {
            &[Privileges::SELECT, Privileges::INSERT, Privileges::UPDATE]
        };
        if wants
            .iter()
            .any(|w| self.who.has(&self.engine.catalog, &access, *w))
        {
            return Ok(());
        }
        Err(pg(PgError::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("permission denied for sequence {name}"),
        )))
    }

    fn nextval(&self, name: &str) -> Result<i64> {
        let (t, c) = resolve(&self.engine, name).map_err(pg)?;
        self.authorize(name, &t, true)?;
        let v = self
            .engine
            .sequences
            .take(&self.engine.store, t.id, c, 1)
            .map_err(|e| pg(e.into()))?;
        self.session.record(t.id, c, v);
        Ok(v)
    }

    fn currval(&self, name: &str) -> Result<i64> {
        let (t, c) = resolve(&self.engine, name).map_err(pg)?;
        self.authorize(name, &t, false)?;
        lock(&self.session.taken)
            .0
            .get(&(t.id, c))
            .copied()
            .ok_or_else(|| {
                pg(PgError::new(
                    SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("currval of sequence \"{name}\" is not yet defined in this session"),
                ))
            })
    }

    fn setval(&self, name: &str, value: i64, is_called: bool) -> Result<i64> {
        let (t, c) = resolve(&self.engine, name).map_err(pg)?;
        self.authorize(name, &t, true)?;
        if value < 1 {
            return Err(pg(PgError::new(
                SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
                format!("setval: value {value} is out of bounds for sequence \"{name}\""),
            )));
        }
        let next = if is_called { value + 1 } else { value };
        self.engine
            .sequences
            .set(&self.engine.store, (t.id, c), next)
            .map_err(|e| pg(e.into()))?;
        if is_called {
            self.session.record(t.id, c, value);
        }
        Ok(value)
    }

    fn serial_sequence(&self, table: &str, column: &str) -> Option<String> {
        let table = table
            .strip_prefix("public.")
            .unwrap_or(table)
            .to_lowercase();
        let t = self.engine.catalog.table(&table)?;
        let c = t
            .columns
            .iter()
            .find(|c| c.name == column.to_lowercase() && c.identity.is_some())?;
        Some(format!("public.{}", sequence_name(&t.name, &c.name)))
    }
}

impl ScalarUDFImpl for SequenceFn {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Nextval => "nextval",
            Kind::Currval => "currval",
            Kind::Lastval => "lastval",
            Kind::Setval => "setval",
            Kind::SerialSequence => "pg_get_serial_sequence",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::SerialSequence => DataType::Utf8,
            _ => DataType::Int64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text: Vec<ArrayRef> = arrays
            .iter()
            .map(|a| datafusion::arrow::compute::cast(a, &DataType::Utf8))
            .collect::<std::result::Result<_, _>>()?;
        let arg = |i: usize, row: usize| -> Option<&str> {
            let a = text.get(i)?.as_string::<i32>();
            let row = if a.len() == 1 { 0 } else { row };
            (!a.is_null(row)).then(|| a.value(row))
        };
        if self.kind == Kind::SerialSequence {
            let rows = if scalar { 1 } else { n };
            let mut out = datafusion::arrow::array::StringBuilder::new();
            for row in 0..rows {
                match (arg(0, row), arg(1, row)) {
                    (Some(t), Some(c)) => out.append_option(self.serial_sequence(t, c)),
                    _ => out.append_null(),
                }
            }
            let array: ArrayRef = Arc::new(out.finish());
            return Ok(if scalar {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            });
        }
        // nextval takes a value per row, even of one constant name.
        let rows = if scalar && self.kind != Kind::Nextval {
            1
        } else {
            n
        };
        let mut out = Int64Builder::with_capacity(rows);
        for row in 0..rows {
            let v = match self.kind {
                Kind::Nextval => arg(0, row).map(|s| self.nextval(s)).transpose()?,
                Kind::Currval => arg(0, row).map(|s| self.currval(s)).transpose()?,
                Kind::Lastval => Some(lock(&self.session.taken).1.ok_or_else(|| {
                    pg(PgError::new(
                        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "lastval is not yet defined in this session",
                    ))
                })?),
                Kind::Setval => {
                    let value = arrays
                        .get(1)
                        .map(|a| datafusion::arrow::compute::cast(a, &DataType::Int64))
                        .transpose()?;
                    let value = value.and_then(|a| {
                        let a = a.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                        let r = if a.len() == 1 { 0 } else { row };
                        (!a.is_null(r)).then(|| a.value(r))
                    });
                    let called = arg(2, row).is_none_or(|c| c == "true");
                    match (arg(0, row), value) {
                        (Some(s), Some(v)) => Some(self.setval(s, v, called)?),
                        _ => None,
                    }
                }
                Kind::SerialSequence => unreachable!("answered above"),
            };
            out.append_option(v);
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(if scalar && self.kind != Kind::Nextval {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// Registers the sequence functions of one session acting as `who`.
pub fn register(
    ctx: &SessionContext,
    engine: &Arc<Engine>,
    session: &Arc<SessionSequences>,
    who: &crate::access::Identity,
) {
    let text = || TypeSignature::String(1);
    for (kind, signature) in [
        (
            Kind::Nextval,
            Signature::one_of(vec![text()], Volatility::Volatile),
        ),
        (
            Kind::Currval,
            Signature::one_of(vec![text()], Volatility::Volatile),
        ),
        (Kind::Lastval, Signature::nullary(Volatility::Volatile)),
        (
            Kind::Setval,
            Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Volatile,
            ),
        ),
        (
            Kind::SerialSequence,
            Signature::one_of(vec![TypeSignature::String(2)], Volatility::Stable),
        ),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(SequenceFn {
            kind,
            engine: Arc::clone(engine),
            session: Arc::clone(session),
            who: who.clone(),
            signature,
        }));
    }
}
