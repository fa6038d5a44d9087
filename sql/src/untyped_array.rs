//! Untyped string literals where an array is expected, read as array literals the way
//! PostgreSQL resolves an `unknown` literal by its context: `polroles = '{0}'`,
//! `CASE … THEN acldefault(…) ELSE '{}' END` (what pg_dump sends). An analyzer rule that runs
//! before DataFusion's type coercion, which would otherwise refuse to compare or unify a
//! list with text. The literal becomes `CAST(pg_array_in('…') AS <the list type>)`, so a
//! malformed one is 22P02 as in PostgreSQL.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::{Case, Cast, ScalarFunction};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

use crate::pg_array_in::{is_list, PgArrayIn};

#[derive(Debug, Default)]
pub struct UntypedArrayLiterals;

impl AnalyzerRule for UntypedArrayLiterals {
    fn name(&self) -> &str {
        "untyped_array_literals"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        crate::plan_rewrite::rewrite_expressions(plan, in_context)
    }
}

/// The literal text of an untyped string literal.
fn untyped(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s),
        _ => None,
    }
}

fn list_type(e: &Expr, schema: &DFSchema) -> Option<DataType> {
    e.get_type(schema).ok().filter(is_list)
}

fn as_array(text: &str, to: &DataType) -> Expr {
    let parsed = Expr::ScalarFunction(ScalarFunction::new_udf(
        PgArrayIn::udf(),
        vec![Expr::Literal(
            ScalarValue::Utf8(Some(text.to_owned())),
            None,
        )],
    ));
    if *to == PgArrayIn::return_type() {
        parsed
    } else {
        Expr::Cast(Cast::new(Box::new(parsed), to.clone()))
    }
}

fn in_context(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if compares(op) => {
            if let (Some(text), Some(to)) = (untyped(&right), list_type(&left, schema)) {
                let right = Box::new(as_array(text, &to));
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                })));
            }
            if let (Some(text), Some(to)) = (untyped(&left), list_type(&right, schema)) {
                let left = Box::new(as_array(text, &to));
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                })));
            }
            Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                left,
                op,
                right,
            })))
        }
        Expr::Case(case) => {
            let results = case
                .when_then_expr
                .iter()
                .map(|(_, t)| t.as_ref())
                .chain(case.else_expr.as_deref());
            let Some(to) = results.clone().find_map(|r| list_type(r, schema)) else {
                return Ok(Transformed::no(Expr::Case(case)));
            };
            if !results.clone().any(|r| untyped(r).is_some()) {
                return Ok(Transformed::no(Expr::Case(case)));
            }
            let fix = |r: Box<Expr>| match untyped(&r) {
                Some(text) => Box::new(as_array(text, &to)),
                None => r,
            };
            let Case {
                expr,
                when_then_expr,
                else_expr,
            } = case;
            Ok(Transformed::yes(Expr::Case(Case {
                expr,
                when_then_expr: when_then_expr
                    .into_iter()
                    .map(|(w, t)| (w, fix(t)))
                    .collect(),
                else_expr: else_expr.map(fix),
            })))
        }
        other => Ok(Transformed::no(other)),
    }
}

fn compares(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
            | Operator::AtArrow
            | Operator::ArrowAt
    )
}

/// The rule, for the session's analyzer: it must run before type coercion.
pub fn rule() -> Arc<dyn AnalyzerRule + Send + Sync> {
    Arc::new(UntypedArrayLiterals)
}
