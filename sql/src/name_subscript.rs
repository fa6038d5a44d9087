//! Subscripts of `name` values: `typname[0]` is the first character, as PostgreSQL reads a
//! `name` (a fixed array of `"char"` starting at 0). pg_dump asks `typname[0] = '_'` to find
//! array types. Catalog `name` columns are text here, which DataFusion's subscript refuses,
//! so a subscript of a text value is planned as the one-character substring at that
//! zero-based position (empty past the end, as PostgreSQL's zero padding prints).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawFieldAccessExpr};
use datafusion::logical_expr::{lit, Expr, ExprSchemable, GetFieldAccess};

#[derive(Debug, Default)]
pub struct NameSubscript;

impl ExprPlanner for NameSubscript {
    fn plan_field_access(
        &self,
        expr: RawFieldAccessExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawFieldAccessExpr>> {
        let GetFieldAccess::ListIndex { key } = &expr.field_access else {
            return Ok(PlannerResult::Original(expr));
        };
        let is_text = matches!(
            expr.expr.get_type(schema),
            Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        );
        if !is_text {
            return Ok(PlannerResult::Original(expr));
        }
        let start = key.as_ref().clone().cast_to(&DataType::Int64, schema)? + lit(1i64);
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(
                datafusion::functions::unicode::substr(),
                vec![expr.expr, start, lit(1i64)],
            ),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn a_text_subscript_is_the_character_at_a_zero_based_position() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let mut planners = vec![std::sync::Arc::new(NameSubscript) as _];
        planners.extend(state.expr_planners().iter().cloned());
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_expr_planners(planners)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let batches = ctx
            .sql("SELECT n[0] AS a, n[1] AS b, n[9] AS c, [10, 20][1] AS l FROM (VALUES ('_int4')) t(n)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let out = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(out.contains("| _ | i |   | 10 |"), "{out}");
    }
}
