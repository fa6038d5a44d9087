//! Division of `numeric` values rounded as PostgreSQL rounds it. Arrow's decimal division
//! truncates the quotient at the result's scale (0.018250279… becomes 0.01825027 at scale
//! 8); PostgreSQL rounds the last digit half away from zero (0.01825028). [`RoundedDivide`]
//! wraps DataFusion's division and, where both operands are decimals, computes the quotient
//! at the result type DataFusion chose, rounded; other operands go to the division itself.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::PhysicalExpr;

/// A division (`inner`, a [`BinaryExpr`]) whose decimal quotients are rounded.
#[derive(Debug)]
pub struct RoundedDivide {
    inner: Arc<dyn PhysicalExpr>,
}

impl RoundedDivide {
    /// Wraps `inner`, a division.
    pub fn new(inner: Arc<dyn PhysicalExpr>) -> Self {
        Self { inner }
    }

    /// The division.
    pub fn inner(&self) -> &Arc<dyn PhysicalExpr> {
        &self.inner
    }
}

// By hand, as DataFusion's own expressions do (rust-lang/rust#78808).
impl PartialEq for RoundedDivide {
    fn eq(&self, other: &Self) -> bool {
        self.inner.eq(&other.inner)
    }
}

impl Eq for RoundedDivide {}

impl Hash for RoundedDivide {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl fmt::Display for RoundedDivide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

impl PhysicalExpr for RoundedDivide {
    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.inner.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.inner.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let Some(b) = self.inner.downcast_ref::<BinaryExpr>() else {
            return self.inner.evaluate(batch);
        };
        let out = self.inner.data_type(&batch.schema())?;
        let (l, r) = (b.left().evaluate(batch)?, b.right().evaluate(batch)?);
        let (DataType::Decimal128(p, s), DataType::Decimal128(_, sl), DataType::Decimal128(_, sr)) =
            (&out, l.data_type(), r.data_type())
        else {
            return self.inner.evaluate(batch);
        };
        let scalar = matches!(
            (&l, &r),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let rows = batch.num_rows().max(1);
        let (la, ra) = (l.into_array(rows)?, r.into_array(rows)?);
        let (la, ra) = (
            la.as_primitive::<Decimal128Type>(),
            ra.as_primitive::<Decimal128Type>(),
        );
        // Digits to add to the dividend so that the quotient comes out at scale `s`.
        let shift = i32::from(*s) - i32::from(sl) + i32::from(sr);
        let mut truncated: Option<ArrayRef> = None;
        let mut values = Vec::with_capacity(la.len());
        for i in 0..la.len() {
            if la.is_null(i) || ra.is_null(i) {
                values.push(None);
                continue;
            }
            let q = match divide(la.value(i), ra.value(i), shift) {
                Some(q) => q,
                None => {
                    // Beyond i128 while rounding: the division's own (truncated) quotient.
                    if truncated.is_none() {
                        truncated = Some(self.inner.evaluate(batch)?.into_array(rows)?);
                    }
                    let t = truncated
                        .as_ref()
                        .map(|a| a.as_primitive::<Decimal128Type>());
                    t.and_then(|t| t.is_valid(i).then(|| t.value(i)))
                        .ok_or_else(|| DataFusionError::Internal("decimal division".into()))?
                }
            };
            values.push(Some(q));
        }
        let array = Decimal128Array::from(values).with_precision_and_scale(*p, *s)?;
        let array: ArrayRef = Arc::new(array);
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
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
            .map_err(|_| DataFusionError::Internal("RoundedDivide takes one child".into()))?;
        Ok(Arc::new(RoundedDivide { inner }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}

/// `l / r × 10^shift`, rounded half away from zero; `None` past i128 (a zero divisor is
/// refused before the division runs).
fn divide(l: i128, r: i128, shift: i32) -> Option<i128> {
    if r == 0 {
        return None;
    }
    let negative = (l < 0) != (r < 0);
    let (mut n, mut d) = (l.unsigned_abs(), r.unsigned_abs());
    if shift >= 0 {
        n = n.checked_mul(10u128.checked_pow(shift as u32)?)?;
    } else {
        d = d.checked_mul(10u128.checked_pow((-shift) as u32)?)?;
    }
    let (q, rem) = (n / d, n % d);
    // rem ≥ d / 2, without overflowing rem * 2.
    let q = if rem >= d - rem { q.checked_add(1)? } else { q };
    let q = i128::try_from(q).ok()?;
    Some(if negative { -q } else { q })
}

#[cfg(test)]
mod tests {
    use super::divide;

    #[test]
    fn quotients_round_half_away_from_zero() {
        // 0.0182502791 / 1 at scale 8 (dividend scale 10): 0.01825028.
        assert_eq!(divide(182_502_791, 1, -2), Some(1_825_028));
        assert_eq!(divide(-182_502_791, 1, -2), Some(-1_825_028));
        // 1 / 3 at scale 4 → 0.3333; 2 / 3 → 0.6667; -2 / 3 → -0.6667; 1 / 8 at 2 → 0.13.
        assert_eq!(divide(1, 3, 4), Some(3333));
        assert_eq!(divide(2, 3, 4), Some(6667));
        assert_eq!(divide(-2, 3, 4), Some(-6667));
        assert_eq!(divide(2, -3, 4), Some(-6667));
        assert_eq!(divide(1, 8, 2), Some(13));
        assert_eq!(divide(i128::MAX, 1, 2), None);
        assert_eq!(divide(1, 0, 0), None);
    }
}
