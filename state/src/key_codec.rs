//! Order-preserving ("memcomparable") key encoding: for two tuples of the same column types,
//! `encode(a) < encode(b)` bytewise exactly when `a < b` in SQL order (NULLs last).
//!
//! Per value:
//! - a tag byte: `0x01` for a value, `0x02` for NULL (so NULL sorts after every value);
//! - integers (and dates, times, timestamps, decimals): big-endian with the sign bit flipped;
//! - floats: IEEE bits, sign bit flipped for positives, all bits flipped for negatives;
//! - bool: one byte 0/1;
//! - text and bytes: each `0x00` byte written as `0x00 0xFF`, then the terminator `0x00 0x00`,
//!   so a prefix sorts before its extensions.
//!
//! See `docs/design/20261124_key_encoding.md`.

use std::cmp::Ordering;

use freshet_common::{Datum, ValueRef};

use crate::{Error, Result};

const VALUE: u8 = 0x01;
const NULL: u8 = 0x02;

/// Appends the encoding of `values` to `out`.
pub fn encode_key(values: &[Datum], out: &mut Vec<u8>) {
    for v in values {
        encode_one(v, out);
    }
}

/// Appends the encoding of one ORDER BY value: like [`encode_key`] when ascending with NULLs
/// last; `descending` reverses the order of values, `nulls_first` puts NULL before them.
/// Components are prefix-free, so a tuple of them compares component-wise.
pub fn encode_sort_value(value: &Datum, descending: bool, nulls_first: bool, out: &mut Vec<u8>) {
    if value.is_null() {
        out.push(if nulls_first { 0x00 } else { 0x02 });
        return;
    }
    out.push(VALUE);
    let start = out.len();
    encode_one(value, out);
    out.remove(start); // the tag written by encode_one
    if descending {
        out[start..].iter_mut().for_each(|b| *b = !*b);
    }
}

fn encode_one(v: &Datum, out: &mut Vec<u8>) {
    match v.as_value_ref() {
        Some(r) => encode_value(r, out),
        None => {
            let Datum::List(items) = v else {
                unreachable!("only lists have no borrowed form")
            };
            out.push(VALUE);
            for item in items {
                out.push(0x01);
                encode_one(item, out);
            }
            out.push(0x00);
        }
    }
}

/// Appends the encoding of one scalar value (the same bytes [`encode_key`] writes for it).
pub fn encode_value(v: ValueRef<'_>, out: &mut Vec<u8>) {
    if v == ValueRef::Null {
        out.push(NULL);
        return;
    }
    out.push(VALUE);
    match v {
        ValueRef::Null => unreachable!("handled above"),
        ValueRef::Bool(b) => out.push(u8::from(b)),
        ValueRef::Int16(i) => out.extend_from_slice(&((i as u16) ^ 0x8000).to_be_bytes()),
        ValueRef::Int32(i) | ValueRef::Date(i) => {
            out.extend_from_slice(&((i as u32) ^ 0x8000_0000).to_be_bytes())
        }
        ValueRef::Int64(i) | ValueRef::Time(i) | ValueRef::Timestamp(i) => {
            out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes())
        }
        ValueRef::Decimal(i) => out.extend_from_slice(&((i as u128) ^ (1 << 127)).to_be_bytes()),
        ValueRef::Float32(f) => {
            let bits = f.to_bits();
            let enc = if bits >> 31 == 1 {
                !bits
            } else {
                bits ^ (1 << 31)
            };
            out.extend_from_slice(&enc.to_be_bytes());
        }
        ValueRef::Float64(f) => {
            let bits = f.to_bits();
            let enc = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&enc.to_be_bytes());
        }
        ValueRef::Text(s) => encode_bytes(s.as_bytes(), out),
        ValueRef::Bytes(b) => encode_bytes(b, out),
        ValueRef::Interval {
            months,
            days,
            nanos,
        } => {
            out.extend_from_slice(&((months as u32) ^ 0x8000_0000).to_be_bytes());
            out.extend_from_slice(&((days as u32) ^ 0x8000_0000).to_be_bytes());
            out.extend_from_slice(&((nanos as u64) ^ (1 << 63)).to_be_bytes());
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.reserve(b.len() + 2);
    if !b.contains(&0) {
        out.extend_from_slice(b);
        out.extend_from_slice(&[0x00, 0x00]);
        return;
    }
    for &byte in b {
        out.push(byte);
        if byte == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x00]);
}

/// How the keys of `a` and `b` compare: `encode_key([a]).cmp(&encode_key([b]))`, without
/// encoding when both are integers, dates, times, timestamps, decimals, booleans, text or
/// bytes of one kind (their encodings keep exactly that order); encoded otherwise.
pub fn compare(a: &Datum, b: &Datum) -> Ordering {
    use ValueRef as V;
    match (a.as_value_ref(), b.as_value_ref()) {
        (Some(V::Int16(x)), Some(V::Int16(y))) => x.cmp(&y),
        (Some(V::Int32(x)), Some(V::Int32(y))) | (Some(V::Date(x)), Some(V::Date(y))) => x.cmp(&y),
        (Some(V::Int64(x)), Some(V::Int64(y)))
        | (Some(V::Time(x)), Some(V::Time(y)))
        | (Some(V::Timestamp(x)), Some(V::Timestamp(y))) => x.cmp(&y),
        (Some(V::Decimal(x)), Some(V::Decimal(y))) => x.cmp(&y),
        (Some(V::Bool(x)), Some(V::Bool(y))) => x.cmp(&y),
        (Some(V::Text(x)), Some(V::Text(y))) => x.as_bytes().cmp(y.as_bytes()),
        (Some(V::Bytes(x)), Some(V::Bytes(y))) => x.cmp(y),
        _ => {
            let (mut ka, mut kb) = (Vec::new(), Vec::new());
            encode_one(a, &mut ka);
            encode_one(b, &mut kb);
            ka.cmp(&kb)
        }
    }
}

/// Encodes a row id (tables without a primary key) as 8 big-endian bytes.
pub fn encode_row_id(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Decodes a row id written by [`encode_row_id`].
pub fn decode_row_id(b: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| Error::Corrupt("row id is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn enc(v: Vec<Datum>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key(&v, &mut out);
        out
    }

    proptest! {
        #[test]
        fn sort_values_keep_order(a: Option<(String, i64)>, b: Option<(String, i64)>, desc: bool, nulls_first: bool) {
            let to = |v: &Option<(String, i64)>| -> Vec<u8> {
                let mut out = Vec::new();
                let (s, i) = match v {
                    Some((s, i)) => (Datum::Text(s.clone()), Datum::Int64(*i)),
                    None => (Datum::Null, Datum::Null),
                };
                encode_sort_value(&s, desc, nulls_first, &mut out);
                encode_sort_value(&i, desc, nulls_first, &mut out);
                out
            };
            let expected = match (&a, &b) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => if nulls_first { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater },
                (Some(_), None) => if nulls_first { std::cmp::Ordering::Greater } else { std::cmp::Ordering::Less },
                (Some(x), Some(y)) => if desc { y.cmp(x) } else { x.cmp(y) },
            };
            prop_assert_eq!(expected, to(&a).cmp(&to(&b)));
        }

        #[test]
        fn ints_keep_order(a: i64, b: i64) {
            prop_assert_eq!(a.cmp(&b), enc(vec![Datum::Int64(a)]).cmp(&enc(vec![Datum::Int64(b)])));
        }

        #[test]
        fn int32_keep_order(a: i32, b: i32) {
            prop_assert_eq!(a.cmp(&b), enc(vec![Datum::Int32(a)]).cmp(&enc(vec![Datum::Int32(b)])));
        }

        #[test]
        fn floats_keep_order(a in -1e12f64..1e12, b in -1e12f64..1e12) {
            prop_assert_eq!(a.partial_cmp(&b).unwrap(),
                enc(vec![Datum::Float64(a)]).cmp(&enc(vec![Datum::Float64(b)])));
        }

        #[test]
        fn text_tuples_keep_order(a: (String, i32), b: (String, i32)) {
            let ka = enc(vec![Datum::Text(a.0.clone()), Datum::Int32(a.1)]);
            let kb = enc(vec![Datum::Text(b.0.clone()), Datum::Int32(b.1)]);
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
        }

        #[test]
        fn bytes_with_zeros_keep_order(a: Vec<u8>, b: Vec<u8>) {
            prop_assert_eq!(a.cmp(&b), enc(vec![Datum::Bytes(a.clone())]).cmp(&enc(vec![Datum::Bytes(b.clone())])));
        }
    }

    /// Values of one kind each.
    fn kinds() -> Vec<BoxedStrategy<Datum>> {
        vec![
            Just(Datum::Null).boxed(),
            any::<bool>().prop_map(Datum::Bool).boxed(),
            any::<i16>().prop_map(Datum::Int16).boxed(),
            any::<i32>().prop_map(Datum::Int32).boxed(),
            any::<i64>().prop_map(Datum::Int64).boxed(),
            any::<i128>().prop_map(Datum::Decimal).boxed(),
            any::<i32>().prop_map(Datum::Date).boxed(),
            any::<i64>().prop_map(Datum::Timestamp).boxed(),
            any::<f64>().prop_map(Datum::Float64).boxed(),
            "[a\\x00-c]{0,4}".prop_map(Datum::Text).boxed(),
            proptest::collection::vec(0u8..3, 0..4)
                .prop_map(Datum::Bytes)
                .boxed(),
        ]
    }

    /// Two values of one kind, or of any two.
    fn pair() -> impl Strategy<Value = (Datum, Datum)> {
        let any_kind = || proptest::strategy::Union::new(kinds());
        let mut pairs: Vec<BoxedStrategy<(Datum, Datum)>> = kinds()
            .into_iter()
            .map(|k| (k.clone(), k).boxed())
            .collect();
        pairs.push((any_kind(), any_kind()).boxed());
        proptest::strategy::Union::new(pairs)
    }

    proptest! {
        #[test]
        fn compare_is_the_order_of_keys((a, b) in pair()) {
            prop_assert_eq!(compare(&a, &b), enc(vec![a.clone()]).cmp(&enc(vec![b.clone()])));
            prop_assert_eq!(compare(&a, &a), std::cmp::Ordering::Equal);
        }
    }

    #[test]
    fn null_sorts_last() {
        assert!(enc(vec![Datum::Int64(i64::MAX)]) < enc(vec![Datum::Null]));
    }
}
