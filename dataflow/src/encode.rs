//! Rows of an Arrow batch encoded straight from its arrays — the same bytes as encoding the
//! rows' [`Datum`](freshet_common::Datum)s with `key_codec` / `row_codec`, without building
//! them. Column by column, so each column's type is looked at once.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{self as t, DataType, Schema, TimeUnit};
use datafusion::error::Result;
use freshet_common::{Datum, ValueRef};
use freshet_sql::df_convert::array_to_datums;
use freshet_state::{key_codec, row_codec};

/// Per row of a batch: its memcomparable key (after a prefix) and its row encoding (after a
/// reserved 8-byte slot, where view contents keep the multiplicity).
pub struct EncodedRows {
    pub keys: Vec<Vec<u8>>,
    pub values: Vec<Vec<u8>>,
}

/// Bytes reserved at the start of every encoded value.
pub const VALUE_SLOT: usize = 8;

/// Encodes every row of `batch`, keyed by all its columns.
pub fn encode_rows(batch: &RecordBatch, key_prefix: &[u8]) -> Result<EncodedRows> {
    encode_rows_keyed_by(batch, key_prefix, batch.num_columns())
}

/// Encodes every row of `batch`; the keys hold only the first `key_columns` columns.
pub fn encode_rows_keyed_by(
    batch: &RecordBatch,
    key_prefix: &[u8],
    key_columns: usize,
) -> Result<EncodedRows> {
    let n = batch.num_rows();
    let mut keys: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let mut k = Vec::with_capacity(key_prefix.len() + 64);
            k.extend_from_slice(key_prefix);
            k
        })
        .collect();
    let mut values: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let mut v = Vec::with_capacity(VALUE_SLOT + 64);
            v.extend_from_slice(&[0; VALUE_SLOT]);
            row_codec::encode_row_header(batch.num_columns(), &mut v);
            v
        })
        .collect();
    for (c, col) in batch.columns().iter().enumerate() {
        encode_column(col, (c < key_columns).then_some(&mut keys[..]), &mut values)?;
    }
    Ok(EncodedRows { keys, values })
}

/// Appends the value [`encode_rows_keyed_by`] makes of `row` (a row of `schema`) after
/// building an Arrow batch of it, made straight from the datums — when each is NULL in a
/// nullable column or exactly the variant its column's type converts to and from (the common
/// types only). Otherwise returns false with `out` as it was, for the Arrow path to convert
/// (or refuse) the row.
pub fn encode_value_direct_into<'a>(
    schema: &Schema,
    row: impl ExactSizeIterator<Item = &'a Datum>,
    out: &mut Vec<u8>,
) -> bool {
    if row.len() != schema.fields().len() {
        return false;
    }
    let start = out.len();
    out.extend_from_slice(&[0; VALUE_SLOT]);
    row_codec::encode_row_header(row.len(), out);
    for (field, d) in schema.fields().iter().zip(row) {
        let exact = match (field.data_type(), d) {
            (_, Datum::Null) => field.is_nullable(),
            (DataType::Int16, Datum::Int16(_))
            | (DataType::Int32, Datum::Int32(_))
            | (DataType::Int64, Datum::Int64(_))
            | (DataType::Float64, Datum::Float64(_))
            | (DataType::Date32, Datum::Date(_))
            | (DataType::Boolean, Datum::Bool(_))
            | (DataType::Decimal128(..), Datum::Decimal(_))
            | (DataType::Utf8, Datum::Text(_)) => true,
            _ => false,
        };
        match d.as_value_ref() {
            Some(v) if exact => row_codec::encode_value_ref(v, out),
            _ => {
                out.truncate(start);
                return false;
            }
        }
    }
    true
}

/// Appends one column's values to `values` and, when given, to `keys`.
fn encode_column(
    col: &ArrayRef,
    mut keys: Option<&mut [Vec<u8>]>,
    values: &mut [Vec<u8>],
) -> Result<()> {
    macro_rules! each {
        ($arr:expr, $wrap:expr) => {{
            let arr = $arr;
            for (i, v) in values.iter_mut().enumerate() {
                let value = if arr.is_null(i) {
                    ValueRef::Null
                } else {
                    $wrap(arr.value(i))
                };
                if let Some(keys) = keys.as_deref_mut() {
                    key_codec::encode_value(value, &mut keys[i]);
                }
                row_codec::encode_value_ref(value, v);
            }
        }};
    }
    match col.data_type() {
        DataType::Int16 => each!(col.as_primitive::<t::Int16Type>(), ValueRef::Int16),
        DataType::Int32 => each!(col.as_primitive::<t::Int32Type>(), ValueRef::Int32),
        DataType::Int64 => each!(col.as_primitive::<t::Int64Type>(), ValueRef::Int64),
        DataType::Float32 => each!(col.as_primitive::<t::Float32Type>(), ValueRef::Float32),
        DataType::Float64 => each!(col.as_primitive::<t::Float64Type>(), ValueRef::Float64),
        DataType::Decimal128(..) => {
            each!(col.as_primitive::<t::Decimal128Type>(), ValueRef::Decimal)
        }
        DataType::Date32 => each!(col.as_primitive::<t::Date32Type>(), ValueRef::Date),
        DataType::Time64(TimeUnit::Microsecond) => {
            each!(
                col.as_primitive::<t::Time64MicrosecondType>(),
                ValueRef::Time
            )
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => each!(
            col.as_primitive::<t::TimestampMicrosecondType>(),
            ValueRef::Timestamp
        ),
        DataType::Boolean => each!(col.as_boolean(), ValueRef::Bool),
        DataType::Utf8 => each!(col.as_string::<i32>(), ValueRef::Text),
        DataType::LargeUtf8 => each!(col.as_string::<i64>(), ValueRef::Text),
        DataType::Utf8View => each!(col.as_string_view(), ValueRef::Text),
        DataType::Binary => each!(col.as_binary::<i32>(), ValueRef::Bytes),
        DataType::Null => {
            for (i, v) in values.iter_mut().enumerate() {
                if let Some(keys) = keys.as_deref_mut() {
                    key_codec::encode_value(ValueRef::Null, &mut keys[i]);
                }
                row_codec::encode_value_ref(ValueRef::Null, v);
            }
        }
        _ => {
            for (i, (v, d)) in values.iter_mut().zip(array_to_datums(col)?).enumerate() {
                if let Some(keys) = keys.as_deref_mut() {
                    key_codec::encode_key(std::slice::from_ref(&d), &mut keys[i]);
                }
                row_codec::encode_value(&d, v);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, StringArray,
        StringViewArray, TimestampMillisecondArray,
    };
    use datafusion::arrow::datatypes::Int32Type;
    use freshet_common::Datum;
    use freshet_sql::df_convert::batch_to_rows;
    use proptest::prelude::*;

    use super::*;

    fn by_datums(batch: &RecordBatch, prefix: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let rows = batch_to_rows(batch).unwrap();
        let keys = rows
            .iter()
            .map(|r| {
                let mut k = prefix.to_vec();
                key_codec::encode_key(r, &mut k);
                k
            })
            .collect();
        let values = rows
            .iter()
            .map(|r| {
                let mut v = vec![0; VALUE_SLOT];
                row_codec::encode_row(r, &mut v);
                v
            })
            .collect();
        (keys, values)
    }

    proptest! {
        #[test]
        fn same_bytes_as_the_datum_path(
            rows in proptest::collection::vec(
                (any::<Option<i64>>(), any::<Option<String>>(), any::<Option<f64>>(),
                 any::<Option<bool>>(), any::<Option<i32>>(), any::<Option<i64>>()),
                0..40),
        ) {
            let batch = RecordBatch::try_from_iter(vec![
                ("a", Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()) as ArrayRef),
                ("b", Arc::new(rows.iter().map(|r| r.1.clone()).collect::<StringArray>()) as ArrayRef),
                ("c", Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()) as ArrayRef),
                ("d", Arc::new(rows.iter().map(|r| r.3).collect::<BooleanArray>()) as ArrayRef),
                ("e", Arc::new(rows.iter().map(|r| r.4).collect::<Int32Array>()) as ArrayRef),
                ("f", Arc::new(rows.iter().map(|r| r.5.map(|x| x / 4)).collect::<TimestampMillisecondArray>()) as ArrayRef),
                ("g", Arc::new(rows.iter().map(|r| r.1.clone()).collect::<StringViewArray>()) as ArrayRef),
                ("h", Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
                    rows.iter().map(|r| r.4.map(|x| vec![Some(x), None])))) as ArrayRef),
            ]).unwrap();
            let enc = encode_rows(&batch, b"vx").unwrap();
            let (keys, values) = by_datums(&batch, b"vx");
            prop_assert_eq!(enc.keys, keys);
            prop_assert_eq!(&enc.values, &values);
            let first = encode_rows_keyed_by(&batch, b"vx", 1).unwrap();
            prop_assert_eq!(&first.values, &values);
            let (first_keys, _) = by_datums(&batch.project(&[0]).unwrap(), b"vx");
            prop_assert_eq!(first.keys, first_keys);
        }
    }

    proptest! {
        #[test]
        fn direct_values_are_the_arrow_path_bytes(
            rows in proptest::collection::vec(
                (any::<Option<i64>>(), any::<Option<String>>(), any::<Option<f64>>(),
                 any::<Option<bool>>(), any::<Option<i32>>(), any::<Option<i64>>()),
                1..20),
        ) {
            use datafusion::arrow::datatypes::{Field, Schema};
            let schema = Arc::new(Schema::new(vec![
                Field::new("a", DataType::Int64, true),
                Field::new("b", DataType::Utf8, true),
                Field::new("c", DataType::Float64, true),
                Field::new("d", DataType::Boolean, true),
                Field::new("e", DataType::Int32, true),
                Field::new("f", DataType::Decimal128(38, 2), true),
                Field::new("g", DataType::Date32, true),
            ]));
            let or_null = |d: Option<Datum>| d.unwrap_or(Datum::Null);
            let datums: Vec<Vec<Datum>> = rows
                .iter()
                .map(|r| vec![
                    or_null(r.0.map(Datum::Int64)),
                    or_null(r.1.clone().map(Datum::Text)),
                    or_null(r.2.map(Datum::Float64)),
                    or_null(r.3.map(Datum::Bool)),
                    or_null(r.4.map(Datum::Int32)),
                    or_null(r.5.map(|x| Datum::Decimal(i128::from(x)))),
                    or_null(r.4.map(Datum::Date)),
                ])
                .collect();
            let batch = freshet_sql::df_convert::rows_to_full_batch(&datums, &schema).unwrap();
            let enc = encode_rows_keyed_by(&batch, b"vx", 1).unwrap();
            for (row, value) in datums.iter().zip(&enc.values) {
                let direct = encode_value_direct(&schema, row.iter());
                prop_assert_eq!(direct.as_ref(), Some(value));
            }
        }
    }

    /// [`encode_value_direct_into`] into a new buffer.
    fn encode_value_direct<'a>(
        schema: &Schema,
        row: impl ExactSizeIterator<Item = &'a Datum>,
    ) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        encode_value_direct_into(schema, row, &mut v).then_some(v)
    }

    #[test]
    fn direct_values_refuse_other_variants() {
        use datafusion::arrow::datatypes::{Field, Schema};
        let schema = Schema::new(vec![Field::new("a", DataType::Int64, false)]);
        assert!(encode_value_direct(&schema, [Datum::Int32(1)].iter()).is_none());
        assert!(encode_value_direct(&schema, [Datum::Null].iter()).is_none());
        assert!(encode_value_direct(&schema, [Datum::Int64(1)].iter()).is_some());
        // A refused row leaves what the buffer held.
        let mut out = b"before".to_vec();
        assert!(!encode_value_direct_into(
            &schema,
            [Datum::Int32(1)].iter(),
            &mut out
        ));
        assert_eq!(out, b"before");
    }

    #[test]
    fn text_with_zero_bytes() {
        let batch = RecordBatch::try_from_iter(vec![(
            "s",
            Arc::new(StringArray::from(vec![Some("a\0b"), Some(""), None])) as ArrayRef,
        )])
        .unwrap();
        let enc = encode_rows(&batch, b"").unwrap();
        assert_eq!(enc.keys, by_datums(&batch, b"").0);
        let mut k = Vec::new();
        key_codec::encode_key(&[Datum::Text("a\0b".into())], &mut k);
        assert_eq!(enc.keys[0], k);
    }
}
