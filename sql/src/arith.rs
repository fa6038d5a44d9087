//! Arithmetic as PostgreSQL does it. DataFusion's `+`, `-` and `*` wrap around on integer
//! overflow and its floating-point division by zero gives ±inf or NaN; PostgreSQL fails with
//! 22003 and 22012. [`pg_expr`] rewrites a physical expression to fail the same way; views
//! apply it when they are lowered, ad-hoc queries through [`PgArithmetic`] (a physical
//! optimizer rule) and [`FoldConstants`] (an analyzer rule that folds constant arithmetic
//! before DataFusion's own folding could wrap it), so a view and its query agree.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{BinaryExpr as LogicalBinary, ColumnarValue, Expr, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::ExecutionPlan;

/// `e` with PostgreSQL's overflow and division-by-zero errors.
pub fn pg_expr(e: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
    e.transform_up(|node| {
        let Some(b) = node.downcast_ref::<BinaryExpr>() else {
            return Ok(Transformed::no(node));
        };
        let (l, op, r) = (Arc::clone(b.left()), *b.op(), Arc::clone(b.right()));
        let new: Arc<dyn PhysicalExpr> = match op {
            Operator::Plus | Operator::Minus | Operator::Multiply => {
                Arc::new(BinaryExpr::new(l, op, r).with_fail_on_overflow(true))
            }
            Operator::Divide | Operator::Modulo if !r.is::<NonZero>() => {
                let divisor = Arc::new(NonZero {
                    divisor: r,
                    dividend: Arc::clone(&l),
                });
                Arc::new(BinaryExpr::new(l, op, divisor))
            }
            _ => return Ok(Transformed::no(node)),
        };
        Ok(Transformed::yes(new))
    })
    .data()
}

/// A divisor: its value, or 22012 when it is zero where the dividend is not NULL (integer
/// division fails that way already; floating point and decimals would not). The dividend is
/// evaluated again only when some divisor is zero.
#[derive(Debug)]
pub struct NonZero {
    divisor: Arc<dyn PhysicalExpr>,
    dividend: Arc<dyn PhysicalExpr>,
}

// By hand, as DataFusion's own expressions do (rust-lang/rust#78808).
impl PartialEq for NonZero {
    fn eq(&self, other: &Self) -> bool {
        self.divisor.eq(&other.divisor) && self.dividend.eq(&other.dividend)
    }
}

impl Eq for NonZero {}

impl Hash for NonZero {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.divisor.hash(state);
        self.dividend.hash(state);
    }
}

impl fmt::Display for NonZero {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.divisor)
    }
}

/// Rows where `a` is zero, when there are any.
fn zeros(a: &ArrayRef) -> Result<Option<BooleanArray>> {
    if !a.data_type().is_numeric() {
        return Ok(None);
    }
    let zero = ScalarValue::new_zero(a.data_type())?.to_scalar()?;
    let hits = eq(a, &zero)?;
    Ok((hits.true_count() > 0).then_some(hits))
}

fn to_array(v: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    v.clone().into_array(rows)
}

impl PhysicalExpr for NonZero {
    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.divisor.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.divisor.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let v = self.divisor.evaluate(batch)?;
        let rows = batch.num_rows();
        if let Some(hits) = zeros(&to_array(&v, rows.max(1))?)? {
            let dividend = to_array(&self.dividend.evaluate(batch)?, rows.max(1))?;
            let fails = (0..hits.len()).any(|i| {
                hits.is_valid(i)
                    && hits.value(i)
                    && dividend.is_valid(if dividend.len() == 1 { 0 } else { i })
            });
            if fails {
                return Err(DataFusionError::ArrowError(
                    Box::new(ArrowError::DivideByZero),
                    None,
                ));
            }
        }
        Ok(v)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.divisor, &self.dividend]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [divisor, dividend]: [Arc<dyn PhysicalExpr>; 2] = children
            .try_into()
            .map_err(|_| DataFusionError::Internal("NonZero takes two children".into()))?;
        Ok(Arc::new(NonZero { divisor, dividend }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.divisor.fmt_sql(f)
    }
}

/// Applies [`pg_expr`] to the expressions of projections, filters and aggregates' arguments.
#[derive(Debug, Default)]
pub struct PgArithmetic;

impl PhysicalOptimizerRule for PgArithmetic {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(p) = node.downcast_ref::<ProjectionExec>() {
                let exprs = p
                    .expr()
                    .iter()
                    .map(|e| {
                        Ok(ProjectionExpr {
                            expr: pg_expr(Arc::clone(&e.expr))?,
                            alias: e.alias.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let new = ProjectionExec::try_new(exprs, Arc::clone(p.input()))?;
                return Ok(Transformed::yes(Arc::new(new) as Arc<dyn ExecutionPlan>));
            }
            if let Some(f) = node.downcast_ref::<FilterExec>() {
                let new = FilterExecBuilder::from(f)
                    .with_predicate(pg_expr(Arc::clone(f.predicate()))?)
                    .build()?;
                return Ok(Transformed::yes(Arc::new(new) as Arc<dyn ExecutionPlan>));
            }
            if let Some(a) = node.downcast_ref::<AggregateExec>() {
                let mut aggs = Vec::with_capacity(a.aggr_expr().len());
                for agg in a.aggr_expr() {
                    let args = agg
                        .expressions()
                        .into_iter()
                        .map(pg_expr)
                        .collect::<Result<Vec<_>>>()?;
                    let order = agg
                        .order_bys()
                        .iter()
                        .map(|s| Arc::clone(&s.expr))
                        .collect();
                    match agg.with_new_expressions(args, order) {
                        Some(n) => aggs.push(Arc::new(n)),
                        None => aggs.push(Arc::clone(agg)),
                    }
                }
                let new = a.with_new_aggr_exprs(aggs);
                return Ok(Transformed::yes(Arc::new(new) as Arc<dyn ExecutionPlan>));
            }
            Ok(Transformed::no(node))
        })
        .data()
    }

    fn name(&self) -> &str {
        "pg_arithmetic"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Folds arithmetic over constants the way [`pg_expr`] evaluates it, before DataFusion's
/// simplifier folds it with wrapping arithmetic: `9223372036854775807 + 1` fails (22003) and
/// `1.0 / 0.0` fails (22012) when the statement is planned, as in PostgreSQL.
#[derive(Debug, Default)]
pub struct FoldConstants;

impl AnalyzerRule for FoldConstants {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            // Folding renames an expression (`1 + 1` → `2`): keep the names the plan's schema
            // has.
            let names = NamePreserver::new(&p);
            p.map_expressions(|e| {
                let saved = names.save(&e);
                let folded = e.transform_up(fold)?;
                Ok(if folded.transformed {
                    folded.update_data(|e| saved.restore(e))
                } else {
                    folded
                })
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "pg_fold_constants"
    }
}

fn fold(e: Expr) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(LogicalBinary { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    let arithmetic = matches!(
        op,
        Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo
    );
    if !arithmetic
        || !matches!(left.as_ref(), Expr::Literal(..))
        || !matches!(right.as_ref(), Expr::Literal(..))
    {
        return Ok(Transformed::no(e));
    }
    let schema = DFSchema::empty();
    let Ok(physical) = create_physical_expr(
        &e,
        &schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    ) else {
        return Ok(Transformed::no(e));
    };
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    match pg_expr(physical)?.evaluate(&batch)? {
        ColumnarValue::Scalar(s) => Ok(Transformed::yes(Expr::Literal(s, None))),
        ColumnarValue::Array(a) => Ok(Transformed::yes(Expr::Literal(
            ScalarValue::try_from_array(&a, 0)?,
            None,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::lit;

    fn folded(e: Expr) -> Result<Expr> {
        e.transform_up(fold).data()
    }

    #[test]
    fn constant_overflow_and_division_by_zero_fail() {
        let e = folded(lit(i64::MAX) + lit(1i64)).unwrap_err();
        assert!(e.to_string().to_lowercase().contains("overflow"), "{e}");
        assert!(folded(lit(i64::MIN) - lit(1i64)).is_err());
        assert!(folded(lit(i64::MAX) * lit(2i64)).is_err());
        let e = folded(lit(1.0f64) / lit(0.0f64)).unwrap_err();
        assert!(e.to_string().to_lowercase().contains("divide by zero"), "{e}");
        assert!(folded(lit(1.0f64) % lit(0.0f64)).is_err());
        assert_eq!(folded(lit(2i64) + lit(3i64)).unwrap(), lit(5i64));
        assert_eq!(folded(lit(1.0f64) / lit(4.0f64)).unwrap(), lit(0.25f64));
        // NULL arithmetic stays NULL.
        assert_eq!(
            folded(lit(ScalarValue::Int64(None)) / lit(0i64)).unwrap(),
            lit(ScalarValue::Int64(None))
        );
    }
}
