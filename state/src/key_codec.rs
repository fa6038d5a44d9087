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

    #[test]
    fn null_sorts_last() {
        assert!(enc(vec![Datum::Int64(i64::MAX)]) < enc(vec![Datum::Null]));
    }
}
