//! Arrow arrays ⇄ [`Datum`] rows: the one place where DataFusion's value types meet ours.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use freshet_common::Datum;

/// The datums of row `row` of `array`.
pub fn datum_at(array: &ArrayRef, row: usize) -> Result<Datum> {
    scalar_to_datum(&ScalarValue::try_from_array(array, row)?)
}

/// Converts one scalar.
pub fn scalar_to_datum(v: &ScalarValue) -> Result<Datum> {
    use ScalarValue as S;
    if v.is_null() {
        return Ok(Datum::Null);
    }
    Ok(match v {
        S::Boolean(Some(b)) => Datum::Bool(*b),
        S::Int8(Some(i)) => Datum::Int16(i16::from(*i)),
        S::Int16(Some(i)) => Datum::Int16(*i),
        S::Int32(Some(i)) => Datum::Int32(*i),
        S::Int64(Some(i)) => Datum::Int64(*i),
        // Unsigned results (row_number(), rank() …) travel as the next wider signed type;
        // batches built from datums cast back to the field's type.
        S::UInt8(Some(i)) => Datum::Int16(i16::from(*i)),
        S::UInt16(Some(i)) => Datum::Int32(i32::from(*i)),
        S::UInt32(Some(i)) => Datum::Int64(i64::from(*i)),
        S::UInt64(Some(i)) => Datum::Int64(i64::try_from(*i).map_err(|_| {
            DataFusionError::Execution(format!("value {i} is out of range for type bigint"))
        })?),
        S::Float32(Some(f)) => Datum::Float32(*f),
        S::Float64(Some(f)) => Datum::Float64(*f),
        S::Decimal128(Some(d), _, _) => Datum::Decimal(*d),
        S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => Datum::Text(s.clone()),
        S::Binary(Some(b)) | S::LargeBinary(Some(b)) | S::BinaryView(Some(b)) => {
            Datum::Bytes(b.clone())
        }
        S::Date32(Some(d)) => Datum::Date(*d),
        S::Time64Microsecond(Some(t)) => Datum::Time(*t),
        S::TimestampMicrosecond(Some(t), _) => Datum::Timestamp(*t),
        // Other units are kept as microseconds (PostgreSQL's precision).
        S::TimestampSecond(Some(t), _) => Datum::Timestamp(t.saturating_mul(1_000_000)),
        S::TimestampMillisecond(Some(t), _) => Datum::Timestamp(t.saturating_mul(1_000)),
        S::TimestampNanosecond(Some(t), _) => Datum::Timestamp(t.div_euclid(1_000)),
        S::IntervalMonthDayNano(Some(i)) => Datum::Interval {
            months: i.months,
            days: i.days,
            nanos: i.nanoseconds,
        },
        S::List(arr) => {
            let values = arr.value(0);
            let mut items = Vec::with_capacity(values.len());
            for i in 0..values.len() {
                items.push(datum_at(&values, i)?);
            }
            Datum::List(items)
        }
        other => {
            return Err(DataFusionError::Internal(format!(
                "cannot store value of type {}",
                other.data_type()
            )));
        }
    })
}

/// Converts a datum back to a scalar of type `dt`.
pub fn datum_to_scalar(d: &Datum, dt: &DataType) -> Result<ScalarValue> {
    use ScalarValue as S;
    if d.is_null() {
        return S::try_new_null(dt);
    }
    Ok(match (d, dt) {
        (Datum::Bool(b), _) => S::Boolean(Some(*b)),
        (Datum::Int16(i), _) => S::Int16(Some(*i)),
        (Datum::Int32(i), _) => S::Int32(Some(*i)),
        (Datum::Int64(i), _) => S::Int64(Some(*i)),
        (Datum::Float32(f), _) => S::Float32(Some(*f)),
        (Datum::Float64(f), _) => S::Float64(Some(*f)),
        (Datum::Decimal(v), DataType::Decimal128(p, s)) => S::Decimal128(Some(*v), *p, *s),
        (Datum::Text(s), DataType::LargeUtf8) => S::LargeUtf8(Some(s.clone())),
        (Datum::Text(s), DataType::Utf8View) => S::Utf8View(Some(s.clone())),
        (Datum::Text(s), _) => S::Utf8(Some(s.clone())),
        (Datum::Bytes(b), DataType::LargeBinary) => S::LargeBinary(Some(b.clone())),
        (Datum::Bytes(b), DataType::BinaryView) => S::BinaryView(Some(b.clone())),
        (Datum::Bytes(b), _) => S::Binary(Some(b.clone())),
        (Datum::Date(v), _) => S::Date32(Some(*v)),
        (Datum::Time(v), _) => S::Time64Microsecond(Some(*v)),
        (Datum::Timestamp(v), DataType::Timestamp(TimeUnit::Microsecond, tz)) => {
            S::TimestampMicrosecond(Some(*v), tz.clone())
        }
        (Datum::Timestamp(v), DataType::Timestamp(TimeUnit::Second, tz)) => {
            S::TimestampSecond(Some(v.div_euclid(1_000_000)), tz.clone())
        }
        (Datum::Timestamp(v), DataType::Timestamp(TimeUnit::Millisecond, tz)) => {
            S::TimestampMillisecond(Some(v.div_euclid(1_000)), tz.clone())
        }
        (Datum::Timestamp(v), DataType::Timestamp(TimeUnit::Nanosecond, tz)) => {
            S::TimestampNanosecond(Some(v.saturating_mul(1_000)), tz.clone())
        }
        (
            Datum::Interval {
                months,
                days,
                nanos,
            },
            _,
        ) => S::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(*months, *days, *nanos))),
        (Datum::List(items), DataType::List(field)) => {
            let scalars = items
                .iter()
                .map(|i| datum_to_scalar(i, field.data_type()))
                .collect::<Result<Vec<_>>>()?;
            S::List(S::new_list_nullable(&scalars, field.data_type()))
        }
        (d, dt) => {
            return Err(DataFusionError::Internal(format!(
                "stored value {d:?} does not fit type {dt}"
            )))
        }
    })
}

/// Builds a batch with `schema` from rows of datums; `columns[i]` says which datum of a row feeds
/// the schema's i-th field.
pub fn rows_to_batch<R: AsRef<[Datum]>>(
    rows: &[R],
    schema: &SchemaRef,
    columns: &[usize],
) -> Result<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (field, &col) in schema.fields().iter().zip(columns) {
        let dt = field.data_type();
        if let Some(array) = typed_column(rows, col, dt) {
            arrays.push(array);
            continue;
        }
        let scalars = rows
            .iter()
            .map(|r| datum_to_scalar(r.as_ref().get(col).unwrap_or(&Datum::Null), dt))
            .collect::<Result<Vec<_>>>()?;
        let array = if scalars.is_empty() {
            datafusion::arrow::array::new_empty_array(dt)
        } else {
            ScalarValue::iter_to_array(scalars)?
        };
        // Datums carry no width or encoding (Text is Utf8): fit the array to the field's type.
        let array = if array.data_type() == dt {
            array
        } else {
            datafusion::arrow::compute::cast(&array, dt)?
        };
        arrays.push(array);
    }
    let opts = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        arrays,
        &opts,
    )?)
}

/// The rows of `batch` as datums (all columns, in order).
pub fn batch_to_rows(batch: &RecordBatch) -> Result<Vec<Vec<Datum>>> {
    let n = batch.num_rows();
    let mut rows: Vec<Vec<Datum>> = (0..n)
        .map(|_| Vec::with_capacity(batch.num_columns()))
        .collect();
    for c in batch.columns() {
        match typed_datums(c) {
            Some(values) => {
                for (row, v) in rows.iter_mut().zip(values) {
                    row.push(v);
                }
            }
            None => {
                for (i, row) in rows.iter_mut().enumerate() {
                    row.push(datum_at(c, i)?);
                }
            }
        }
    }
    Ok(rows)
}

/// Every value of `a` as a datum.
pub fn array_to_datums(a: &ArrayRef) -> Result<Vec<Datum>> {
    match typed_datums(a) {
        Some(v) => Ok(v),
        None => (0..a.len()).map(|i| datum_at(a, i)).collect(),
    }
}

/// The common column types straight from their arrays (no `ScalarValue` per cell); `None`
/// for the others.
fn typed_datums(a: &ArrayRef) -> Option<Vec<Datum>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes as t;
    macro_rules! prim {
        ($ty:ty, $wrap:expr) => {{
            let arr = a.as_primitive::<$ty>();
            (0..arr.len())
                .map(|i| {
                    if arr.is_null(i) {
                        Datum::Null
                    } else {
                        $wrap(arr.value(i))
                    }
                })
                .collect()
        }};
    }
    Some(match a.data_type() {
        DataType::Int16 => prim!(t::Int16Type, Datum::Int16),
        DataType::Int32 => prim!(t::Int32Type, Datum::Int32),
        DataType::Int64 => prim!(t::Int64Type, Datum::Int64),
        DataType::Float32 => prim!(t::Float32Type, Datum::Float32),
        DataType::Float64 => prim!(t::Float64Type, Datum::Float64),
        DataType::Decimal128(..) => prim!(t::Decimal128Type, Datum::Decimal),
        DataType::Date32 => prim!(t::Date32Type, Datum::Date),
        DataType::Time64(TimeUnit::Microsecond) => prim!(t::Time64MicrosecondType, Datum::Time),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            prim!(t::TimestampMicrosecondType, Datum::Timestamp)
        }
        DataType::Boolean => {
            let arr = a.as_boolean();
            (0..arr.len())
                .map(|i| {
                    if arr.is_null(i) {
                        Datum::Null
                    } else {
                        Datum::Bool(arr.value(i))
                    }
                })
                .collect()
        }
        DataType::Utf8 => {
            let arr = a.as_string::<i32>();
            (0..arr.len())
                .map(|i| {
                    if arr.is_null(i) {
                        Datum::Null
                    } else {
                        Datum::Text(arr.value(i).to_owned())
                    }
                })
                .collect()
        }
        DataType::Null => vec![Datum::Null; a.len()],
        _ => return None,
    })
}

/// Column `col` of `rows` as an array of type `dt` when the type is a common one and every
/// datum matches it; `None` sends the caller to the general path.
fn typed_column<R: AsRef<[Datum]>>(rows: &[R], col: usize, dt: &DataType) -> Option<ArrayRef> {
    use datafusion::arrow::array as a;
    macro_rules! prim {
        ($arr:ty, $pat:path) => {{
            let mut v = Vec::with_capacity(rows.len());
            for r in rows {
                v.push(match r.as_ref().get(col) {
                    Some($pat(x)) => Some(*x),
                    Some(Datum::Null) | None => None,
                    Some(_) => return None,
                });
            }
            Arc::new(<$arr>::from(v)) as ArrayRef
        }};
    }
    Some(match dt {
        DataType::Int16 => prim!(a::Int16Array, Datum::Int16),
        DataType::Int32 => prim!(a::Int32Array, Datum::Int32),
        DataType::Int64 => prim!(a::Int64Array, Datum::Int64),
        DataType::Float64 => prim!(a::Float64Array, Datum::Float64),
        DataType::Date32 => prim!(a::Date32Array, Datum::Date),
        DataType::Boolean => {
            let mut v = Vec::with_capacity(rows.len());
            for r in rows {
                v.push(match r.as_ref().get(col) {
                    Some(Datum::Bool(x)) => Some(*x),
                    Some(Datum::Null) | None => None,
                    Some(_) => return None,
                });
            }
            Arc::new(a::BooleanArray::from(v)) as ArrayRef
        }
        DataType::Decimal128(p, sc) => {
            let mut v = Vec::with_capacity(rows.len());
            for r in rows {
                v.push(match r.as_ref().get(col) {
                    Some(Datum::Decimal(x)) => Some(*x),
                    Some(Datum::Null) | None => None,
                    Some(_) => return None,
                });
            }
            Arc::new(
                a::Decimal128Array::from(v)
                    .with_precision_and_scale(*p, *sc)
                    .ok()?,
            ) as ArrayRef
        }
        DataType::Utf8 => {
            let mut b = a::StringBuilder::with_capacity(rows.len(), rows.len() * 8);
            for r in rows {
                match r.as_ref().get(col) {
                    Some(Datum::Text(x)) => b.append_value(x),
                    Some(Datum::Null) | None => b.append_null(),
                    Some(_) => return None,
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }
        _ => return None,
    })
}

/// `rows_to_batch` over every column of `schema`, in order.
pub fn rows_to_full_batch<R: AsRef<[Datum]>>(rows: &[R], schema: &SchemaRef) -> Result<RecordBatch> {
    let columns: Vec<usize> = (0..schema.fields().len()).collect();
    rows_to_batch(rows, schema, &columns)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::types::arrow_type;

    #[test]
    fn rows_round_trip_through_arrow() {
        use freshet_common::SqlType as T;
        let types = [
            T::Int4,
            T::Text,
            T::Numeric {
                precision: 10,
                scale: 2,
            },
            T::Array(Box::new(T::Int8)),
            T::TimestampTz,
        ];
        let schema: SchemaRef = Arc::new(Schema::new(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| Field::new(format!("c{i}"), arrow_type(t), true))
                .collect::<Vec<_>>(),
        ));
        let rows = vec![
            vec![
                Datum::Int32(1),
                Datum::Text("a".into()),
                Datum::Decimal(1050),
                Datum::List(vec![Datum::Int64(3), Datum::Null]),
                Datum::Timestamp(7),
            ],
            vec![
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null,
            ],
        ];
        let batch = rows_to_batch(&rows, &schema, &[0, 1, 2, 3, 4]).unwrap();
        for (r, row) in rows.iter().enumerate() {
            for (c, d) in row.iter().enumerate() {
                assert_eq!(&datum_at(batch.column(c), r).unwrap(), d);
            }
        }
    }
}
