//! DataFusion errors → PostgreSQL errors with SQLSTATEs.
//!
//! A user mistake must never surface as `XX000`: only [`DataFusionError::Internal`] and errors we
//! cannot classify as the user's are reported as internal.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use freshet_common::{PgError, SqlState};

/// Maps a DataFusion error to the error the client sees.
pub fn map_df_error(err: &DataFusionError) -> PgError {
    match err {
        DataFusionError::Context(_, inner) => map_df_error(inner),
        DataFusionError::Diagnostic(_, inner) => map_df_error(inner),
        DataFusionError::Shared(inner) => map_df_error(inner),
        DataFusionError::Collection(errs) => match errs.first() {
            Some(e) => map_df_error(e),
            None => PgError::internal("empty error collection"),
        },
        DataFusionError::External(e) => map_external(e.as_ref()),
        DataFusionError::SQL(e, _) => {
            PgError::new(SqlState::SYNTAX_ERROR, format!("syntax error: {e}"))
        }
        DataFusionError::NotImplemented(msg) => {
            PgError::new(SqlState::FEATURE_NOT_SUPPORTED, tidy(msg))
        }
        DataFusionError::SchemaError(e, _) => map_schema_error(e),
        DataFusionError::Plan(msg) => map_plan_message(msg),
        DataFusionError::ArrowError(e, _) => map_arrow_error(e),
        DataFusionError::Execution(msg) => map_execution_message(msg),
        DataFusionError::ResourcesExhausted(msg) => PgError::new(SqlState("53200"), tidy(msg)),
        DataFusionError::Configuration(msg) => {
            PgError::new(SqlState::INVALID_PARAMETER_VALUE, tidy(msg))
        }
        DataFusionError::IoError(e) => PgError::new(SqlState::IO_ERROR, e.to_string()),
        other => PgError::internal(other.to_string()),
    }
}

fn map_external(e: &(dyn std::error::Error + Send + Sync + 'static)) -> PgError {
    if let Some(pg) = e.downcast_ref::<PgError>() {
        return pg.clone();
    }
    if let Some(df) = e.downcast_ref::<DataFusionError>() {
        return map_df_error(df);
    }
    if let Some(arrow) = e.downcast_ref::<ArrowError>() {
        return map_arrow_error(arrow);
    }
    known_message(&e.to_string()).unwrap_or_else(|| PgError::internal(e.to_string()))
}

fn map_schema_error(e: &SchemaError) -> PgError {
    match e {
        SchemaError::FieldNotFound { field, .. } => PgError::new(
            SqlState::UNDEFINED_COLUMN,
            format!("column \"{}\" does not exist", field.name),
        ),
        SchemaError::AmbiguousReference { field } => PgError::new(
            SqlState::AMBIGUOUS_COLUMN,
            format!("column reference \"{}\" is ambiguous", field.name),
        ),
        SchemaError::DuplicateQualifiedField { name, .. }
        | SchemaError::DuplicateUnqualifiedField { name } => PgError::new(
            SqlState::DUPLICATE_COLUMN,
            format!("column \"{name}\" specified more than once"),
        ),
    }
}

/// PostgreSQL's code for a message DataFusion or arrow words its own way, when we know it.
fn known_message(m: &str) -> Option<PgError> {
    let lower = m.to_ascii_lowercase();
    let state = if m.contains("Regular expression did not compile") || m.contains("regex parse error") {
        SqlState::INVALID_REGULAR_EXPRESSION
    } else if m.contains("square root of a negative number")
        || m.contains("raised to a negative power")
        || m.contains("raised to a non-integer power")
    {
        SqlState::INVALID_ARGUMENT_FOR_POWER_FUNCTION
    } else if m.contains("logarithm of zero") || m.contains("logarithm of a negative number") {
        SqlState::INVALID_ARGUMENT_FOR_LOGARITHM
    } else if m.contains("negative substring length") || m.contains("negative count not allowed") {
        return Some(PgError::new(
            SqlState::SUBSTRING_ERROR,
            "negative substring length not allowed",
        ));
    } else if lower.contains("step cannot be zero") || lower.contains("step size cannot equal zero") {
        SqlState::INVALID_PARAMETER_VALUE
    } else if m.contains("calls cannot be nested") {
        SqlState::GROUPING_ERROR
    } else if m.starts_with("LIMIT must be >= 0") {
        return Some(PgError::new(
            SqlState::INVALID_ROW_COUNT_IN_LIMIT,
            "LIMIT must not be negative",
        ));
    } else if m.starts_with("OFFSET must be >=0") {
        return Some(PgError::new(
            SqlState::INVALID_ROW_COUNT_IN_OFFSET,
            "OFFSET must not be negative",
        ));
    } else if m.contains("Can't cast value") || m.contains("Overflowing on") {
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE
    } else {
        return None;
    };
    Some(PgError::new(state, m))
}

fn map_plan_message(msg: &str) -> PgError {
    let m = tidy(msg);
    if let Some(e) = known_message(&m) {
        return e;
    }
    if let Some(name) = between(&m, "table '", "' not found") {
        let short = name.rsplit('.').next().unwrap_or(name);
        return PgError::new(
            SqlState::UNDEFINED_TABLE,
            format!("relation \"{short}\" does not exist"),
        );
    }
    if let Some(name) = between(&m, "column '", "' not found") {
        return PgError::new(
            SqlState::UNDEFINED_COLUMN,
            format!("column \"{name}\" does not exist"),
        );
    }
    if let Some(name) = between(&m, "table function '", "' not found") {
        return PgError::new(
            SqlState::UNDEFINED_FUNCTION,
            format!("function {name} does not exist"),
        );
    }
    if m.contains("Invalid function")
        || m.contains("function not found")
        || m.contains("No function matches")
    {
        return PgError::new(SqlState::UNDEFINED_FUNCTION, m);
    }
    if m.contains("GROUP BY") || m.contains("must appear in the GROUP BY") {
        return PgError::new(SqlState::GROUPING_ERROR, m);
    }
    if m.contains("No field named") {
        return PgError::new(SqlState::UNDEFINED_COLUMN, m);
    }
    if m.contains("Cannot infer common")
        || m.contains("Cannot coerce")
        || m.contains("type_coercion")
        || m.contains("Unsupported CAST")
        || m.contains("does not support") && m.contains("type")
    {
        return PgError::new(SqlState::DATATYPE_MISMATCH, m);
    }
    if m.contains("placeholder") || m.contains("Placeholder") {
        return PgError::new(SqlState::UNDEFINED_PARAMETER, m);
    }
    if m.contains("not supported") || m.contains("Unsupported") || m.contains("unsupported") {
        return PgError::new(SqlState::FEATURE_NOT_SUPPORTED, m);
    }
    PgError::new(SqlState("42000"), m)
}

fn map_arrow_error(e: &ArrowError) -> PgError {
    if let Some(known) = known_message(&e.to_string()) {
        return PgError::new(known.sqlstate, tidy(&known.message.replace("Compute error: ", "")));
    }
    match e {
        ArrowError::DivideByZero => PgError::new(SqlState::DIVISION_BY_ZERO, "division by zero"),
        ArrowError::CastError(m) | ArrowError::ParseError(m) => {
            PgError::new(SqlState::INVALID_TEXT_REPRESENTATION, tidy(m))
        }
        ArrowError::ArithmeticOverflow(m) => {
            PgError::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, tidy(m))
        }
        ArrowError::ComputeError(m) if m.contains("overflow") => {
            PgError::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, tidy(m))
        }
        ArrowError::ComputeError(m) | ArrowError::InvalidArgumentError(m) => {
            PgError::new(SqlState::DATA_EXCEPTION, tidy(m))
        }
        ArrowError::ExternalError(inner) => map_external(inner.as_ref()),
        other => PgError::new(SqlState::DATA_EXCEPTION, other.to_string()),
    }
}

fn map_execution_message(msg: &str) -> PgError {
    let m = tidy(msg);
    if let Some(e) = known_message(&m) {
        e
    } else if m.contains("Divide by zero") || m.contains("division by zero") {
        PgError::new(SqlState::DIVISION_BY_ZERO, "division by zero")
    } else if m.contains("non-nullable") || m.contains("is not nullable") {
        PgError::new(SqlState::NOT_NULL_VIOLATION, m)
    } else if m.contains("Cannot cast") || m.contains("Cast error") || m.contains("cannot be cast")
    {
        PgError::new(SqlState::INVALID_TEXT_REPRESENTATION, m)
    } else if m.contains("overflow") {
        PgError::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, m)
    } else {
        PgError::new(SqlState::DATA_EXCEPTION, m)
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

/// Drops DataFusion's category prefixes and trailing backtrace notes.
fn tidy(msg: &str) -> String {
    let mut m = msg.trim();
    for p in [
        "Error during planning: ",
        "Execution error: ",
        "This feature is not implemented: ",
        "Cast error: ",
        "Parser error: ",
        "Compute error: ",
    ] {
        if let Some(rest) = m.strip_prefix(p) {
            m = rest;
        }
    }
    m.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_not_found_is_42p01() {
        let e = DataFusionError::Plan("table 'freshet.public.nope' not found".into());
        let pg = map_df_error(&e);
        assert_eq!(pg.sqlstate, SqlState::UNDEFINED_TABLE);
        assert_eq!(pg.message, "relation \"nope\" does not exist");
    }

    #[test]
    fn external_pg_error_survives_wrapping() {
        let inner = PgError::new(
            SqlState::UNIQUE_VIOLATION,
            "duplicate key value violates unique constraint",
        );
        let e = DataFusionError::Context(
            "x".into(),
            Box::new(DataFusionError::External(Box::new(inner.clone()))),
        );
        assert_eq!(map_df_error(&e), inner);
    }
}
