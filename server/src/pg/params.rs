//! A portal's parameters as DataFusion takes them, decoded as PostgreSQL reads them where
//! arrow-pg's decoder does not: timestamps, dates and intervals sent as text in PostgreSQL's
//! input forms (`'2026-11-01 10:00+02'`, `'1 day 02:03:04'`), `json`/`jsonb` (binary jsonb has a
//! version byte), `uuid` (held as its canonical text), numbers sent typed where text is
//! expected.

use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use datafusion::arrow::datatypes::{DataType, IntervalUnit};
use datafusion::common::{ParamValues, ScalarValue};
use freshet_common::{PgError, SqlState};
use pgwire::api::portal::Portal;
use pgwire::api::Type;
use pgwire::error::PgWireResult;

use super::extended::{param_error, Prepared};
use super::to_wire_error;

/// The parameters of `portal`, `None` when it has none.
pub fn decode(portal: &Portal<Arc<Prepared>>) -> PgWireResult<Option<ParamValues>> {
    // JSON parameters arrive as text: arrow-pg cannot decode them (binary jsonb has a
    // version byte first).
    let json_as_text = json_params_as_text(portal).map_err(to_wire_error)?;
    let portal = json_as_text.as_ref().unwrap_or(portal);
    let prepared = &portal.statement.statement;
    // A parameter whose type nothing determines is text (as described to the client):
    // decoded as anything else, or left untyped, arrow-pg drops a NULL of it from the
    // list, shifting every later parameter.
    let text = DataType::Utf8;
    let mut inferred: Vec<Option<&DataType>> = prepared
        .described
        .params
        .iter()
        .map(|p| match p {
            Some(dt) if !is_uuid_param(dt) => Some(dt),
            _ => Some(&text),
        })
        .collect();
    // A number, boolean, date or timestamp the client sent typed (psycopg 3 sends a Python int as int2,
    // int4 or int8 by its size) where we expect text: decoded as the client's type, then
    // cast to text, instead of refused.
    let natively: Vec<usize> = (0..inferred.len())
        .filter(|&i| {
            inferred[i] == Some(&text)
                && portal
                    .statement
                    .parameter_types
                    .get(i)
                    .and_then(|t| t.as_ref())
                    .is_some_and(|t| {
                        matches!(
                            *t,
                            Type::INT2
                                | Type::INT4
                                | Type::INT8
                                | Type::FLOAT4
                                | Type::FLOAT8
                                | Type::NUMERIC
                                | Type::BOOL
                                | Type::DATE
                                | Type::TIMESTAMP
                                | Type::TIMESTAMPTZ
                        )
                    })
        })
        .collect();
    for &i in &natively {
        inferred[i] = None;
    }
    // Timestamps, dates and intervals sent as text: read as PostgreSQL reads them.
    let as_text: Vec<(usize, DataType)> = (0..inferred.len())
        .filter(|&i| {
            portal.parameter_format.format_for(i) == pgwire::api::results::FieldFormat::Text
        })
        .filter_map(|i| inferred[i].filter(|t| reads(t)).map(|t| (i, t.clone())))
        .collect();
    for (i, _) in &as_text {
        inferred[*i] = Some(&text);
    }
    Ok(if portal.parameter_len() > 0 {
        let mut values = deserialize_parameters(portal, &inferred).map_err(param_error)?;
        if let ParamValues::List(list) = &mut values {
            for &i in &natively {
                if let Some(p) = list.get_mut(i) {
                    p.value = p
                        .value
                        .cast_to(&text)
                        .map_err(|e| to_wire_error(freshet_sql::error::map_df_error(&e)))?;
                }
            }
            for (i, ty) in &as_text {
                if let Some(p) = list.get_mut(*i) {
                    p.value = read(&p.value, ty).map_err(to_wire_error)?;
                }
            }
        }
        let decoded = match &values {
            ParamValues::List(l) => l.len(),
            ParamValues::Map(m) => m.len(),
        };
        if decoded != portal.parameter_len() {
            return Err(to_wire_error(
                PgError::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    "a parameter of this type cannot be NULL here",
                )
                .with_hint("Give the parameter a type the server knows, e.g. text."),
            ));
        }
        Some(values)
    } else {
        None
    })
}

/// `portal` with its `json` / `jsonb` and `uuid` parameters as text (binary jsonb without its
/// version byte, uuid as its canonical text, from its 16 bytes or any text form), if it has
/// any; `22P02` for a uuid that is none.
fn json_params_as_text(
    portal: &Portal<Arc<Prepared>>,
) -> Result<Option<Portal<Arc<Prepared>>>, PgError> {
    let types = &portal.statement.parameter_types;
    let described = &portal.statement.statement.described.params;
    let json = |t: &Option<Type>| matches!(t, Some(t) if *t == Type::JSON || *t == Type::JSONB);
    let uuid = |i: usize| {
        matches!(types.get(i), Some(Some(t)) if *t == Type::UUID)
            || described
                .get(i)
                .is_some_and(|d| d.as_ref().is_some_and(is_uuid_param))
    };
    let textual = |i: usize| types.get(i).is_some_and(json) || uuid(i);
    let count = types.len().max(described.len());
    if !(0..count).any(textual) {
        return Ok(None);
    }
    let mut parameters = portal.parameters.clone();
    let mut text_types = types.clone();
    text_types.resize(count, None);
    for i in (0..count).filter(|&i| textual(i)) {
        let binary =
            portal.parameter_format.format_for(i) == pgwire::api::results::FieldFormat::Binary;
        if let Some(Some(raw)) = parameters.get_mut(i) {
            if uuid(i) {
                let text = if binary && raw.len() == 16 {
                    raw.iter().map(|b| format!("{b:02x}")).collect()
                } else {
                    String::from_utf8_lossy(raw).into_owned()
                };
                *raw = bytes::Bytes::from(freshet_sql::pg_uuid::canonical(&text)?);
            } else if binary && text_types[i] == Some(Type::JSONB) && raw.first() == Some(&1) {
                *raw = raw.slice(1..);
            }
        }
        text_types[i] = Some(Type::TEXT);
    }
    let mut out = Portal::default();
    out.name = portal.name.clone();
    out.statement = Arc::new(pgwire::api::stmt::StoredStatement::new(
        portal.statement.id.clone(),
        Arc::clone(&portal.statement.statement),
        text_types,
    ));
    out.parameter_format = portal.parameter_format.clone();
    out.parameters = parameters;
    out.result_column_format = portal.result_column_format.clone();
    Ok(Some(out))
}

/// How a `uuid` parameter is described among a statement's parameter types (see
/// `session/params.rs`): it is held as text.
pub(crate) fn is_uuid_param(t: &datafusion::arrow::datatypes::DataType) -> bool {
    *t == datafusion::arrow::datatypes::DataType::FixedSizeBinary(16)
}

/// Whether a text parameter of type `ty` is read by [`read`] (decoded as text first).
fn reads(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Timestamp(_, _)
            | DataType::Date32
            | DataType::Interval(IntervalUnit::MonthDayNano)
    )
}

/// `value` (the parameter's text) as a value of `ty`.
fn read(value: &ScalarValue, ty: &DataType) -> Result<ScalarValue, PgError> {
    let text = match value {
        ScalarValue::Utf8(Some(t)) => t,
        ScalarValue::Utf8(None) | ScalarValue::Null => {
            return ScalarValue::try_from(ty).map_err(|e| freshet_sql::error::map_df_error(&e))
        }
        other => return Ok(other.clone()),
    };
    let invalid = |name: &str| {
        PgError::new(
            SqlState::INVALID_DATETIME_FORMAT,
            format!("invalid input syntax for type {name}: \"{text}\""),
        )
    };
    use freshet_sql::pg_input::{parse_date, parse_timestamp};
    Ok(match ty {
        DataType::Timestamp(_, tz) => {
            let name = if tz.is_some() {
                "timestamp with time zone"
            } else {
                "timestamp without time zone"
            };
            let micros = parse_timestamp(text, tz.is_some()).ok_or_else(|| invalid(name))?;
            ScalarValue::TimestampMicrosecond(Some(micros), tz.clone())
                .cast_to(ty)
                .map_err(|_| invalid(name))?
        }
        DataType::Date32 => {
            ScalarValue::Date32(Some(parse_date(text).ok_or_else(|| invalid("date"))?))
        }
        _ => ScalarValue::IntervalMonthDayNano(Some(
            freshet_sql::pg_interval_in::parse_arrow(text).ok_or_else(|| invalid("interval"))?,
        )),
    })
}
