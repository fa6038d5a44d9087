//! [`TextCasts`]: an analyzer rule for the casts PostgreSQL spells differently from Arrow,
//! each replaced by a function that reads or writes PostgreSQL's text forms.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

use crate::pg_text::{has_text_form, PgTimestampText};

/// Casts PostgreSQL spells differently from Arrow (names kept): timestamps to text become
/// `pg_timestamp_text`, arrays to text `pg_array_text` ([`crate::pg_array_out`]), text to `bytea` `pg_bytea_in` ([`crate::pg_bytea`]), text to arrays
/// `pg_array_in` ([`crate::pg_array_in`]). (`bytea` to text
/// stays Arrow's: type coercion casts `bytea` to text for `length` and other string
/// functions, where hex would change their answers.)
#[derive(Debug, Default)]
pub struct TextCasts;

impl AnalyzerRule for TextCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        crate::plan_rewrite::rewrite_expressions(plan, text_cast)
    }

    fn name(&self) -> &str {
        "pg_text_casts"
    }
}

/// A cast PostgreSQL spells differently, as the function that reads or writes its text.
fn text_cast(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let (inner, to) = match &e {
        Expr::Cast(Cast { expr, field }) => (expr, field.data_type()),
        Expr::TryCast(TryCast { expr, field }) => (expr, field.data_type()),
        _ => return Ok(Transformed::no(e)),
    };
    let is_text = |t: &DataType| {
        matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
    };
    let from = inner.get_type(schema).ok();
    let Some(from) = from else {
        return Ok(Transformed::no(e));
    };
    let datetime_in = is_text(&from)
        .then(|| crate::pg_datetime_in::PgDateTimeIn::for_target(to))
        .flatten();
    let jsonb = || {
        inner.to_field(schema).is_ok_and(|(_, f)| {
            crate::types::sql_type_of(&f) == Some(freshet_common::SqlType::Jsonb)
        })
    };
    let (udf, gives) = if is_text(to) && has_text_form(&from) {
        (PgTimestampText::udf(), DataType::Utf8)
    } else if is_text(to) && is_text(&from) && jsonb() {
        // jsonb to text: the same text, no longer jsonb on the wire.
        (crate::jsonb_functions::JsonbFn::udf(crate::jsonb_functions::Op::Text), DataType::Utf8)
    } else if is_text(to) && crate::pg_array_in::is_list(&from) {
        (crate::pg_array_out::PgArrayText::udf(), DataType::Utf8)
    } else if *to == DataType::Binary && is_text(&from) {
        (crate::pg_bytea::PgBytea::input(), DataType::Binary)
    } else if from == DataType::Utf8 && crate::pg_array_in::is_list(to) {
        (
            crate::pg_array_in::PgArrayIn::udf(),
            crate::pg_array_in::PgArrayIn::return_type(),
        )
    } else if let Some((udf, gives)) = datetime_in {
        (udf, gives)
    } else {
        return Ok(Transformed::no(e));
    };
    let call = Expr::ScalarFunction(ScalarFunction::new_udf(
        udf,
        vec![inner.as_ref().clone()],
    ));
    Ok(Transformed::yes(if *to == gives {
        call
    } else {
        Expr::Cast(Cast::new(Box::new(call), to.clone()))
    }))
}
