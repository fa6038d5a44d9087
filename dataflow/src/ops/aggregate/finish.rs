//! Results of the accumulated aggregates (SUM, AVG, bool_and/bool_or) and their arithmetic.

use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use freshet_common::Datum;

use super::{AggKind, AggSpec};

pub(super) fn as_i64(d: &Datum) -> i64 {
    match d {
        Datum::Int64(n) => *n,
        _ => 0,
    }
}

/// `sum + v * w`, in i128 for integers and decimals, f64 for floats.
pub(super) fn add_weighted(sum: &Datum, v: &Datum, w: i64) -> Result<Datum> {
    let w128 = i128::from(w);
    let int = |d: &Datum| -> Option<i128> {
        match d {
            Datum::Int16(i) => Some(i128::from(*i)),
            Datum::Int32(i) => Some(i128::from(*i)),
            Datum::Int64(i) => Some(i128::from(*i)),
            Datum::Decimal(i) => Some(*i),
            _ => None,
        }
    };
    let float = |d: &Datum| -> Option<f64> {
        match d {
            Datum::Float32(f) => Some(f64::from(*f)),
            Datum::Float64(f) => Some(*f),
            _ => None,
        }
    };
    match (sum, v) {
        (Datum::Null, v) if int(v).is_some() => Ok(Datum::Decimal(int(v).unwrap_or(0) * w128)),
        (Datum::Null, v) if float(v).is_some() => {
            Ok(Datum::Float64(float(v).unwrap_or(0.0) * w as f64))
        }
        (Datum::Decimal(s), v) if int(v).is_some() => {
            let x = int(v).unwrap_or(0);
            s.checked_add(x.checked_mul(w128).unwrap_or(i128::MAX))
                .map(Datum::Decimal)
                .ok_or_else(overflow)
        }
        (Datum::Float64(s), v) if float(v).is_some() => {
            Ok(Datum::Float64(s + float(v).unwrap_or(0.0) * w as f64))
        }
        (s, v) => Err(DataFusionError::NotImplemented(format!(
            "incremental sum of {v:?} into {s:?}"
        ))),
    }
}

fn overflow() -> DataFusionError {
    DataFusionError::Execution("numeric value out of range in aggregate".into())
}

/// The SUM or AVG result for `n` non-NULL inputs summing to `sum`.
pub(super) fn finish_sum(spec: &AggSpec, n: i64, sum: &Datum) -> Result<Datum> {
    if n == 0 || sum.is_null() {
        return Ok(Datum::Null);
    }
    let in_scale = match spec.arg_type {
        DataType::Decimal128(_, s) => i32::from(s),
        _ => 0,
    };
    Ok(match (spec.kind, &spec.out_type, sum) {
        (AggKind::Sum, DataType::Int64, Datum::Decimal(s)) => {
            Datum::Int64(i64::try_from(*s).map_err(|_| overflow())?)
        }
        (AggKind::Sum, DataType::Decimal128(..), Datum::Decimal(s)) => Datum::Decimal(*s),
        (AggKind::Sum, DataType::Float64, Datum::Float64(s)) => Datum::Float64(*s),
        (AggKind::Sum, DataType::Float64, Datum::Decimal(s)) => Datum::Float64(*s as f64),
        (AggKind::Avg, DataType::Float64, Datum::Decimal(s)) => {
            Datum::Float64(*s as f64 / 10f64.powi(in_scale) / n as f64)
        }
        (AggKind::Avg, DataType::Float64, Datum::Float64(s)) => Datum::Float64(s / n as f64),
        (AggKind::Avg, DataType::Decimal128(_, out_scale), Datum::Decimal(s)) => {
            let shift = i32::from(*out_scale) - in_scale;
            let scaled = if shift >= 0 {
                s.checked_mul(10i128.pow(shift as u32))
                    .ok_or_else(overflow)?
            } else {
                s / 10i128.pow((-shift) as u32)
            };
            let n = i128::from(n);
            // round half away from zero, like PostgreSQL's numeric
            let q = scaled / n;
            let r = scaled % n;
            Datum::Decimal(if 2 * r.abs() >= n {
                q + scaled.signum()
            } else {
                q
            })
        }
        (k, t, s) => {
            return Err(DataFusionError::NotImplemented(format!(
                "incremental {k:?} with result type {t} over {s:?}"
            )))
        }
    })
}

pub(super) fn finish_bool(kind: AggKind, trues: i64, falses: i64) -> Datum {
    if trues + falses == 0 {
        return Datum::Null;
    }
    match kind {
        AggKind::BoolAnd => Datum::Bool(falses == 0),
        _ => Datum::Bool(trues > 0),
    }
}
