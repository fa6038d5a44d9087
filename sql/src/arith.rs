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
use datafusion::logical_expr::{
    BinaryExpr as LogicalBinary, ColumnarValue, Expr, LogicalPlan, Operator,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::{
    create_physical_expr, LexOrdering, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::ExecutionPlan;

use crate::numeric_div::RoundedDivide;

/// `e` with PostgreSQL's overflow and division-by-zero errors.
pub fn pg_expr(e: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
    e.transform_up(|node| {
        if let Some(d) = node.downcast_ref::<RoundedDivide>() {
            // Applied twice: as below.
            if d.inner().is::<FloatRange>() {
                return Ok(Transformed::yes(Arc::clone(d.inner())));
            }
        }
        if let Some(f) = node.downcast_ref::<FloatRange>() {
            // Applied twice: the inner operation has been wrapped again.
            if f.inner.is::<FloatRange>() {
                return Ok(Transformed::yes(Arc::clone(&f.inner)));
            }
        }
        let Some(b) = node.downcast_ref::<BinaryExpr>() else {
            return Ok(Transformed::no(node));
        };
        let (l, op, r) = (Arc::clone(b.left()), *b.op(), Arc::clone(b.right()));
        let new: Arc<dyn PhysicalExpr> = match op {
            Operator::Plus | Operator::Minus | Operator::Multiply => {
                Arc::new(BinaryExpr::new(l, op, r).with_fail_on_overflow(true))
            }
            Operator::Divide | Operator::Modulo => {
                let divisor: Arc<dyn PhysicalExpr> = if r.is::<NonZero>() {
                    r
                } else {
                    Arc::new(NonZero {
                        divisor: r,
                        dividend: Arc::clone(&l),
                    })
                };
                let e = Arc::new(BinaryExpr::new(l, op, divisor));
                if op == Operator::Modulo {
                    return Ok(Transformed::yes(e)); // no float range to keep
                }
                Arc::new(RoundedDivide::new(e))
            }
            _ => return Ok(Transformed::no(node)),
        };
        Ok(Transformed::yes(Arc::new(FloatRange { inner: new })))
    })
    .data()
}

/// A floating-point `+`, `-`, `*` or `/` whose result must stay in range, as PostgreSQL's
/// `float8` and `float4` do: infinity from finite operands fails with 22003 "value out of
/// range: overflow", and zero from a product or quotient of non-zero (finite) operands with
/// "value out of range: underflow". NaN and infinite operands pass through. The operands are
/// evaluated again only when a result is infinite or zero; other types pass untouched.
#[derive(Debug)]
pub struct FloatRange {
    inner: Arc<dyn PhysicalExpr>,
}

impl PartialEq for FloatRange {
    fn eq(&self, other: &Self) -> bool {
        self.inner.eq(&other.inner)
    }
}

impl Eq for FloatRange {}

impl Hash for FloatRange {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl fmt::Display for FloatRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

/// Positions of infinite and of zero results, when there are any.
/// Zero results are looked for only when `zeros` (products and quotients: a zero sum or
/// difference is no underflow).
fn suspects(a: &ArrayRef, zeros: bool) -> Option<(Vec<usize>, Vec<usize>)> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float32Type, Float64Type};
    fn scan<T: Copy>(
        values: &[T],
        valid: impl Fn(usize) -> bool,
        inf: impl Fn(T) -> bool,
        zero: impl Fn(T) -> bool,
    ) -> Option<(Vec<usize>, Vec<usize>)> {
        if !values.iter().any(|&v| inf(v) || zero(v)) {
            return None;
        }
        let pick = |f: &dyn Fn(T) -> bool| {
            (0..values.len())
                .filter(|&i| valid(i) && f(values[i]))
                .collect::<Vec<_>>()
        };
        Some((pick(&inf), pick(&zero)))
    }
    match a.data_type() {
        DataType::Float64 => {
            let a = a.as_primitive::<Float64Type>();
            scan(
                a.values(),
                |i| a.is_valid(i),
                f64::is_infinite,
                move |v| zeros && v == 0.0,
            )
        }
        DataType::Float32 => {
            let a = a.as_primitive::<Float32Type>();
            scan(
                a.values(),
                |i| a.is_valid(i),
                f32::is_infinite,
                move |v| zeros && v == 0.0,
            )
        }
        _ => None,
    }
}

/// A float operand's value at row `i` as f64 (a one-row operand is a constant).
fn operand(a: &ArrayRef, i: usize) -> Option<f64> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float32Type, Float64Type, Int64Type};
    let i = if a.len() == 1 { 0 } else { i };
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Float64 => Some(a.as_primitive::<Float64Type>().value(i)),
        DataType::Float32 => Some(f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Int64 => Some(a.as_primitive::<Int64Type>().value(i) as f64),
        _ => datafusion::arrow::compute::cast(&a.slice(i, 1), &DataType::Float64)
            .ok()
            .map(|c| c.as_primitive::<Float64Type>().value(0)),
    }
}

fn out_of_range(what: &str) -> DataFusionError {
    DataFusionError::ArrowError(
        Box::new(ArrowError::ArithmeticOverflow(format!(
            "value out of range: {what}"
        ))),
        None,
    )
}

impl FloatRange {
    /// The checked operation.
    pub fn inner(&self) -> &Arc<dyn PhysicalExpr> {
        &self.inner
    }

    fn check(&self, batch: &RecordBatch, result: &ArrayRef) -> Result<()> {
        let inner = match self.inner.downcast_ref::<RoundedDivide>() {
            Some(d) => d.inner(),
            None => &self.inner,
        };
        let Some(b) = inner.downcast_ref::<BinaryExpr>() else {
            return Ok(());
        };
        let products = matches!(b.op(), Operator::Multiply | Operator::Divide);
        let Some((infinite, zero)) = suspects(result, products) else {
            return Ok(());
        };
        let rows = batch.num_rows().max(1);
        let l = to_array(&b.left().evaluate(batch)?, rows)?;
        let r = to_array(&b.right().evaluate(batch)?, rows)?;
        for i in infinite {
            if let (Some(x), Some(y)) = (operand(&l, i), operand(&r, i)) {
                if x.is_finite() && y.is_finite() {
                    return Err(out_of_range("overflow"));
                }
            }
        }
        if !products {
            return Ok(());
        }
        for i in zero {
            if let (Some(x), Some(y)) = (operand(&l, i), operand(&r, i)) {
                let underflow = match b.op() {
                    Operator::Multiply => x != 0.0 && y != 0.0,
                    _ => x != 0.0 && !y.is_infinite(),
                };
                if underflow {
                    return Err(out_of_range("underflow"));
                }
            }
        }
        Ok(())
    }
}

impl PhysicalExpr for FloatRange {
    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.inner.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.inner.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let v = self.inner.evaluate(batch)?;
        match &v {
            ColumnarValue::Array(a) => self.check(batch, a)?,
            ColumnarValue::Scalar(s) => {
                if matches!(s.data_type(), DataType::Float64 | DataType::Float32) {
                    self.check(batch, &s.to_array()?)?;
                }
            }
        }
        Ok(v)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [inner]: [Arc<dyn PhysicalExpr>; 1] = children
            .try_into()
            .map_err(|_| DataFusionError::Internal("FloatRange takes one child".into()))?;
        Ok(Arc::new(FloatRange { inner }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
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

/// Applies [`pg_expr`] to the expressions of projections, filters, sort keys and aggregates'
/// arguments.
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
            if let Some(sort) = node.downcast_ref::<SortExec>() {
                let keys = sort
                    .expr()
                    .iter()
                    .map(|k| {
                        Ok(PhysicalSortExpr::new(
                            pg_expr(Arc::clone(&k.expr))?,
                            k.options,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let same = keys
                    .iter()
                    .zip(sort.expr().iter())
                    .all(|(a, b)| Arc::ptr_eq(&a.expr, &b.expr));
                if same {
                    return Ok(Transformed::no(node));
                }
                let Some(keys) = LexOrdering::new(keys) else {
                    return Ok(Transformed::no(node));
                };
                let new = SortExec::new(keys, Arc::clone(sort.input()))
                    .with_preserve_partitioning(sort.preserve_partitioning())
                    .with_fetch(sort.fetch());
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

/// A literal, or casts of one (type coercion casts `1e308::float8 * 10`'s `10`).
fn constant(e: &Expr) -> bool {
    match e {
        Expr::Literal(..) => true,
        Expr::Cast(c) => constant(&c.expr),
        Expr::TryCast(c) => constant(&c.expr),
        Expr::Negative(inner) => constant(inner),
        _ => false,
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
    if !arithmetic || !constant(left) || !constant(right) {
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
    use datafusion::prelude::{cast, lit};

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
        assert!(
            e.to_string().to_lowercase().contains("divide by zero"),
            "{e}"
        );
        assert!(folded(lit(1.0f64) % lit(0.0f64)).is_err());
        assert_eq!(folded(lit(2i64) + lit(3i64)).unwrap(), lit(5i64));
        assert_eq!(folded(lit(1.0f64) / lit(4.0f64)).unwrap(), lit(0.25f64));
        let e = folded(lit(1e308f64) * cast(lit(10i64), DataType::Float64)).unwrap_err();
        assert!(
            e.to_string().contains("value out of range: overflow"),
            "{e}"
        );
        assert!(folded(lit(f64::MAX) + lit(f64::MAX)).is_err());
        assert!(folded(lit(-f64::MAX) - lit(f64::MAX)).is_err());
        assert!(folded(lit(1e308f64) / lit(0.1f64)).is_err());
        let e = folded(lit(1e-300f64) * lit(1e-300f64)).unwrap_err();
        assert!(
            e.to_string().contains("value out of range: underflow"),
            "{e}"
        );
        assert!(folded(lit(1e-300f64) / lit(1e300f64)).is_err());
        // Infinite and NaN operands are values, as in PostgreSQL.
        assert_eq!(
            folded(lit(f64::INFINITY) + lit(1.0f64)).unwrap(),
            lit(f64::INFINITY)
        );
        assert_eq!(
            folded(lit(1.0f64) / lit(f64::INFINITY)).unwrap(),
            lit(0.0f64)
        );
        assert_eq!(folded(lit(0.0f64) * lit(5.0f64)).unwrap(), lit(0.0f64));
        assert!(folded(lit(3.0e38f32) * lit(10.0f32)).is_err());
        // Applied twice, the check wraps once.
        let e = create_physical_expr(
            &(lit(2.0f64) * lit(3.0f64)),
            &DFSchema::empty(),
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )
        .unwrap();
        let once = pg_expr(e).unwrap();
        let twice = pg_expr(Arc::clone(&once)).unwrap();
        assert_eq!(format!("{once:?}"), format!("{twice:?}"));
        // NULL arithmetic stays NULL.
        assert_eq!(
            folded(lit(ScalarValue::Int64(None)) / lit(0i64)).unwrap(),
            lit(ScalarValue::Int64(None))
        );
    }
}
