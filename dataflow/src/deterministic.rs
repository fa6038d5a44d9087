//! Which view queries are functions of their input rows alone.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, Volatility};

use crate::lower::unsupported;

/// Refuses expressions whose value is not a function of the row: a view maintained from
/// them would drift from its query (`random()`, `now()` …). Run on the plan before
/// optimization, which folds `now()` into a constant.
pub fn check_deterministic(plan: &LogicalPlan) -> Result<()> {
    let mut bad: Option<String> = None;
    plan.apply_with_subqueries(|node| {
        let schema = expression_schema(node);
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if !of_the_row(f, &schema) {
                        bad = Some(f.func.name().to_owned());
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if bad.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    match bad {
        Some(name) => Err(unsupported(format!("non-deterministic function {name}()"))),
        None => Ok(()),
    }
}

/// The columns a node's expressions see: its input's (a join's own schema holds both sides).
fn expression_schema(node: &LogicalPlan) -> DFSchema {
    match node.inputs().as_slice() {
        [input] => input.schema().as_ref().clone(),
        _ => node.schema().as_ref().clone(),
    }
}

/// Whether a call's value depends on its arguments alone. `to_char` is stable only for its
/// `timestamptz` form, whose text follows the session's time zone; of a `timestamp` or a
/// `date` it is a function of the value.
fn of_the_row(f: &ScalarFunction, schema: &DFSchema) -> bool {
    if f.func.signature().volatility == Volatility::Immutable {
        return true;
    }
    // `now()` in a filter, taken apart by lowering (see `crate::temporal`).
    if crate::lower::temporal::is_marker(f) {
        return true;
    }
    f.func.name() == "to_char"
        && f.args.first().is_some_and(|a| {
            matches!(
                a.get_type(schema),
                Ok(DataType::Timestamp(_, None) | DataType::Date32 | DataType::Date64)
            )
        })
}
