//! `interval * number`, `number * interval` and `interval / number`, which DataFusion does
//! not plan: [`IntervalArithmetic`] plans them as `pg_interval_mul` / `pg_interval_div`, which
//! compute as PostgreSQL's `interval_mul` and `interval_div` do — months, days and time
//! scaled apart, each fraction of a month carried into days (30 to a month) and each
//! fraction of a day into time, rounded to the microsecond.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{
    DataType, Float64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit,
};
use datafusion::common::{DFSchema, DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use freshet_common::{PgError, SqlState};

const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);

/// Plans `*` and `/` between an interval and a number.
#[derive(Debug)]
pub struct IntervalArithmetic;

impl ExprPlanner for IntervalArithmetic {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let interval = |e: &Expr| matches!(e.get_type(schema), Ok(DataType::Interval(_)));
        let number = |e: &Expr| e.get_type(schema).is_ok_and(|t| t.is_numeric());
        let (op, span, factor) = match expr.op {
            BinaryOperator::Multiply if interval(&expr.left) && number(&expr.right) => {
                (Op::Mul, expr.left, expr.right)
            }
            BinaryOperator::Multiply if number(&expr.left) && interval(&expr.right) => {
                (Op::Mul, expr.right, expr.left)
            }
            BinaryOperator::Divide if interval(&expr.left) && number(&expr.right) => {
                (Op::Div, expr.left, expr.right)
            }
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let args = vec![
            span.cast_to(&INTERVAL, schema)?,
            factor.cast_to(&DataType::Float64, schema)?,
        ];
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(
                Arc::new(ScalarUDF::new_from_impl(IntervalFn::new(op))),
                args,
            ),
        )))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Mul,
    Div,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalFn {
    op: Op,
    signature: Signature,
}

impl IntervalFn {
    fn new(op: Op) -> Self {
        IntervalFn {
            op,
            signature: Signature::exact(vec![INTERVAL, DataType::Float64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for IntervalFn {
    fn name(&self) -> &str {
        match self.op {
            Op::Mul => "pg_interval_mul",
            Op::Div => "pg_interval_div",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(INTERVAL)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (spans, factors): (&IntervalMonthDayNanoArray, &Float64Array) = (
            arrays[0].as_primitive::<IntervalMonthDayNanoType>(),
            arrays[1].as_primitive::<Float64Type>(),
        );
        let mut out = Vec::with_capacity(rows);
        for i in 0..spans.len() {
            if spans.is_null(i) || factors.is_null(i) {
                out.push(None);
                continue;
            }
            let f = factors.value(i);
            let v = match self.op {
                Op::Mul => scale(spans.value(i), f, |x| x * f),
                Op::Div if f == 0.0 => {
                    return Err(DataFusionError::External(Box::new(PgError::new(
                        SqlState::DIVISION_BY_ZERO,
                        "division by zero",
                    ))))
                }
                Op::Div => scale(spans.value(i), f, |x| x / f),
            };
            out.push(Some(v.map_err(|e| DataFusionError::External(Box::new(e)))?));
        }
        let array: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(out));
        Ok(
            if arrays.len() == 2
                && args
                    .args
                    .iter()
                    .all(|a| matches!(a, ColumnarValue::Scalar(_)))
            {
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            },
        )
    }
}

/// Rounds to the microsecond, as PostgreSQL's `TSROUND`.
fn ts_round(x: f64) -> f64 {
    (x * 1e6).round_ties_even() / 1e6
}

/// PostgreSQL's interval scaling; `apply` multiplies or divides by `factor`.
fn scale(
    span: IntervalMonthDayNano,
    factor: f64,
    apply: impl Fn(f64) -> f64,
) -> Result<IntervalMonthDayNano, PgError> {
    let out_of_range = || PgError::new(SqlState::DATETIME_FIELD_OVERFLOW, "interval out of range");
    if factor.is_nan() {
        return Err(out_of_range());
    }
    let months = apply(f64::from(span.months));
    if !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&months) {
        return Err(out_of_range());
    }
    let days = apply(f64::from(span.days));
    if !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&days) {
        return Err(out_of_range());
    }
    let (mut result_months, mut result_days) = (months.trunc() as i32, days.trunc() as i32);
    let month_remainder_days = ts_round((months - f64::from(result_months)) * 30.0);
    let mut sec_remainder = ts_round(
        (days - f64::from(result_days) + month_remainder_days - month_remainder_days.trunc())
            * 86_400.0,
    );
    if sec_remainder.abs() >= 86_400.0 {
        let whole = (sec_remainder / 86_400.0).trunc();
        result_days += whole as i32;
        sec_remainder -= whole * 86_400.0;
    }
    result_days += month_remainder_days.trunc() as i32;
    let micros = (apply(span.nanoseconds as f64 / 1000.0) + sec_remainder * 1e6).round_ties_even();
    if !micros.is_finite() || micros.abs() > 9.2e18 / 1000.0 {
        return Err(out_of_range());
    }
    result_months = result_months.max(i32::MIN);
    Ok(IntervalMonthDayNano::new(
        result_months,
        result_days,
        micros as i64 * 1000,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(months: i32, days: i32, micros: i64) -> IntervalMonthDayNano {
        IntervalMonthDayNano::new(months, days, micros * 1000)
    }

    #[test]
    fn as_postgresql_scales_intervals() {
        let hour = 3_600_000_000;
        // 3 * '1 day' = 3 days; '1 hour' * 2.5 = 02:30:00
        assert_eq!(scale(iv(0, 1, 0), 3.0, |x| x * 3.0).unwrap(), iv(0, 3, 0));
        assert_eq!(
            scale(iv(0, 0, hour), 2.5, |x| x * 2.5).unwrap(),
            iv(0, 0, hour * 5 / 2)
        );
        // '1 mon' * 1.5 = 1 mon 15 days; '1 day' * 1.5 = 1 day 12:00:00
        assert_eq!(scale(iv(1, 0, 0), 1.5, |x| x * 1.5).unwrap(), iv(1, 15, 0));
        assert_eq!(
            scale(iv(0, 1, 0), 1.5, |x| x * 1.5).unwrap(),
            iv(0, 1, 12 * hour)
        );
        // '1 mon' / 7 = 4 days 06:51:25.6896 (the fraction of a month is rounded to a
        // microsecond of a day first)
        assert_eq!(
            scale(iv(1, 0, 0), 7.0, |x| x / 7.0).unwrap(),
            iv(0, 4, 24_685_689_600)
        );
    }
}
