//! The walk analyzer rules share: every expression of every plan node (subqueries' too),
//! bottom up, rewritten by a function that sees the node's input schema; rewritten
//! expressions keep their names.

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// `plan` with each expression rewritten by `f`.
pub(crate) fn rewrite_expressions(
    plan: LogicalPlan,
    f: impl Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|p| {
        let inputs = p.inputs();
        let mut schema = DFSchema::empty();
        for i in &inputs {
            schema.merge(i.schema());
        }
        let names = NamePreserver::new(&p);
        p.map_expressions(|e| {
            let saved = names.save(&e);
            let rewritten = e.transform_up(|e| f(e, &schema))?;
            Ok(if rewritten.transformed {
                rewritten.update_data(|e| saved.restore(e))
            } else {
                rewritten
            })
        })
    })
    .data()
}
