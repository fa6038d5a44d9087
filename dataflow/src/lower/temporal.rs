//! Temporal filters: `now()` in a view's `WHERE` clause, compared with an expression of the
//! row (`ts > now() - INTERVAL '1 hour'`, `ts <= now()`, `now() BETWEEN a AND b`). Each
//! such comparison says from when or until when the row belongs to the view; the operator
//! (`ops/temporal_filter.rs`) schedules the row's arrival and departure at those times and
//! the epochs of passing time apply them: retractions are scheduled, never recomputed.
//!
//! DataFusion folds `now()` into a constant while optimizing. Before that, the calls in
//! filters are replaced by [`NowMarker`], a volatile function of the same name and type
//! that the optimizer leaves in place and keeps out of scans; lowering then takes the
//! comparisons that hold it apart into the times they bound (see [`split`]). `now()`
//! anywhere else in a view stays the stable function and is refused as non-deterministic.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Between, BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::unsupported;

/// `now()` as a view's filters see it: the time of the epoch evaluating them. Never
/// evaluated as a function (lowering takes it apart).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NowMarker {
    signature: Signature,
    output: DataType,
}

impl ScalarUDFImpl for NowMarker {
    fn name(&self) -> &str {
        "now"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.output.clone())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(unsupported("now() outside a comparison with a column"))
    }
}

/// Whether `e` is the marker.
pub fn is_now(e: &Expr) -> bool {
    matches!(e, Expr::ScalarFunction(f) if is_marker(f))
}

/// Whether `f` calls the marker.
pub fn is_marker(f: &ScalarFunction) -> bool {
    let inner: &dyn std::any::Any = f.func.inner().as_ref();
    inner.is::<NowMarker>()
}

/// Whether `e` holds the marker anywhere.
pub fn mentions_now(e: &Expr) -> bool {
    e.exists(|e| Ok(is_now(e))).unwrap_or(false)
}

/// `plan` with the `now()` calls of its filters (`WHERE`, `HAVING`, outside subqueries)
/// replaced by the marker. Run before optimization.
pub fn mark_now(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| {
        let LogicalPlan::Filter(_) = &node else {
            return Ok(Transformed::no(node));
        };
        let schema = Arc::clone(node.schema());
        node.map_expressions(|e| {
            e.transform_up(|e| match &e {
                Expr::ScalarFunction(f) if f.func.name() == "now" && f.args.is_empty() => {
                    Ok(Transformed::yes(marker(e.get_type(&schema)?)))
                }
                _ => Ok(Transformed::no(e)),
            })
        })?
        .map_data(|n| n.recompute_schema())
    })
    .map(|t| t.data)
}

/// A call of the marker, of type `output`.
fn marker(output: DataType) -> Expr {
    let udf = ScalarUDF::new_from_impl(NowMarker {
        signature: Signature::nullary(Volatility::Volatile),
        output,
    });
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(udf), vec![]))
}

/// One end of the time range in which a row belongs to the view: `now()` at or above
/// (`from`) or below (`until`) the value of `expr` for the row, plus one microsecond when
/// `after` (a strict `>` or a non-strict `<=`).
#[derive(Debug, Clone)]
pub struct TimeEdge {
    pub expr: Expr,
    pub after: bool,
}

/// The temporal comparisons of a filter's conjunction.
#[derive(Debug, Default)]
pub struct TimeRange {
    /// `now()` must be at or past each.
    pub from: Vec<TimeEdge>,
    /// `now()` must be before each.
    pub until: Vec<TimeEdge>,
}

/// Splits a filter predicate into the conjuncts without `now()` and the time range the
/// others bound; 0A000 for a use of `now()` that is not such a comparison.
pub fn split(predicate: &Expr) -> Result<(Vec<Expr>, TimeRange)> {
    let mut rest = Vec::new();
    let mut range = TimeRange::default();
    for c in split_conjunction(predicate) {
        if !mentions_now(c) {
            rest.push(c.clone());
            continue;
        }
        match c {
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                let ge =
                    Expr::BinaryExpr(BinaryExpr::new(expr.clone(), Operator::GtEq, low.clone()));
                let le =
                    Expr::BinaryExpr(BinaryExpr::new(expr.clone(), Operator::LtEq, high.clone()));
                comparison(&ge, &mut range)?;
                comparison(&le, &mut range)?;
            }
            other => comparison(other, &mut range)?,
        }
    }
    Ok((rest, range))
}

/// Adds one comparison `a op b` with `now()` on one side to `range`.
fn comparison(c: &Expr, range: &mut TimeRange) -> Result<()> {
    let refused = || {
        unsupported(format!(
            "now() in {c} (a temporal filter compares now(), plus or minus a constant \
             interval, with an expression of the row using <, <=, > or >=)"
        ))
    };
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = c else {
        return Err(refused());
    };
    // Normalised to `now() op other`.
    let (now_side, op, other) = match (mentions_now(left), mentions_now(right)) {
        (true, false) => (left.as_ref(), *op, right.as_ref().clone()),
        (false, true) => (
            right.as_ref(),
            op.swap().ok_or_else(refused)?,
            left.as_ref().clone(),
        ),
        _ => return Err(refused()),
    };
    // `now() + c op other` is `now() op other - c`.
    let mut bound = other;
    let mut side = now_side;
    loop {
        match side {
            Expr::Cast(cast) if is_timestamp(cast.field.data_type()) => side = &cast.expr,
            Expr::TryCast(cast) if is_timestamp(cast.field.data_type()) => side = &cast.expr,
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(op, Operator::Plus | Operator::Minus) && !mentions_now(right) =>
            {
                if !is_constant(right) {
                    return Err(refused());
                }
                let inverse = if *op == Operator::Plus {
                    Operator::Minus
                } else {
                    Operator::Plus
                };
                bound = Expr::BinaryExpr(BinaryExpr::new(Box::new(bound), inverse, right.clone()));
                side = left;
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Plus,
                right,
            }) if !mentions_now(left) && is_constant(left) => {
                bound = Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(bound),
                    Operator::Minus,
                    left.clone(),
                ));
                side = right;
            }
            e if is_now(e) => break,
            _ => return Err(refused()),
        }
    }
    let edge = |after| TimeEdge {
        expr: bound.clone(),
        after,
    };
    match op {
        Operator::Lt => range.until.push(edge(false)),
        Operator::LtEq => range.until.push(edge(true)),
        Operator::Gt => range.from.push(edge(true)),
        Operator::GtEq => range.from.push(edge(false)),
        _ => return Err(refused()),
    }
    Ok(())
}

fn is_timestamp(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(..))
}

/// Whether `e` reads no column (a constant interval, possibly cast).
fn is_constant(e: &Expr) -> bool {
    !e.exists(|e| {
        Ok(matches!(
            e,
            Expr::Column(_) | Expr::OuterReferenceColumn(..)
        ))
    })
    .unwrap_or(true)
        && !mentions_now(e)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::TimeUnit;
    use datafusion::logical_expr::{col, lit};
    use datafusion::scalar::ScalarValue;

    use super::*;

    fn now() -> Expr {
        marker(DataType::Timestamp(
            TimeUnit::Nanosecond,
            Some("+00:00".into()),
        ))
    }

    fn hour() -> Expr {
        lit(ScalarValue::new_interval_mdn(0, 0, 3_600_000_000_000))
    }

    fn ends(edges: &[TimeEdge]) -> Vec<(Expr, bool)> {
        edges.iter().map(|e| (e.expr.clone(), e.after)).collect()
    }

    #[test]
    fn comparisons_become_time_ranges() {
        // ts > now() - 1h: until ts + 1h; ts <= now(): from ts; the rest stays a filter.
        let p = col("ts")
            .gt(now() - hour())
            .and(col("ts").lt_eq(now()))
            .and(col("v").gt(lit(3)));
        let (rest, range) = split(&p).unwrap();
        assert_eq!(rest, vec![col("v").gt(lit(3))]);
        assert_eq!(ends(&range.until), vec![(col("ts") + hour(), false)]);
        assert_eq!(ends(&range.from), vec![(col("ts"), false)]);
        // now() > a: from one microsecond after a; now() <= b: until one after b.
        let (_, range) = split(&now().gt(col("a")).and(now().lt_eq(col("b")))).unwrap();
        assert_eq!(ends(&range.from), vec![(col("a"), true)]);
        assert_eq!(ends(&range.until), vec![(col("b"), true)]);
        // ts BETWEEN now() - 1h AND now().
        let between = Expr::Between(Between::new(
            Box::new(col("ts")),
            false,
            Box::new(now() - hour()),
            Box::new(now()),
        ));
        let (_, range) = split(&between).unwrap();
        assert_eq!(ends(&range.until), vec![(col("ts") + hour(), true)]);
        assert_eq!(ends(&range.from), vec![(col("ts"), false)]);
        // Refused: equality, OR, a shift that reads a column.
        for bad in [
            col("ts").eq(now()),
            col("ts").gt(now()).or(col("v").gt(lit(1))),
            col("ts").gt(now() - col("d")),
        ] {
            assert!(split(&bad).is_err(), "{bad}");
        }
    }
}
