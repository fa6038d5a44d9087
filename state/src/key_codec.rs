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

/// The kinds of scalar value [`decode_value`] reads back from their key encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Date,
    Time,
    Timestamp,
    Text,
}

impl KeyKind {
    /// The kind of `v`, when [`decode_value`] reads it back from its key (NULL has none).
    pub fn of(v: &Datum) -> Option<KeyKind> {
        Some(match v {
            Datum::Bool(_) => KeyKind::Bool,
            Datum::Int16(_) => KeyKind::Int16,
            Datum::Int32(_) => KeyKind::Int32,
            Datum::Int64(_) => KeyKind::Int64,
            Datum::Float32(_) => KeyKind::Float32,
            Datum::Float64(_) => KeyKind::Float64,
            Datum::Date(_) => KeyKind::Date,
            Datum::Time(_) => KeyKind::Time,
            Datum::Timestamp(_) => KeyKind::Timestamp,
            Datum::Text(_) => KeyKind::Text,
            _ => return None,
        })
    }
}

/// The value whose [`encode_value`] bytes are exactly `b` (NULL, or a value of `kind`); every
/// encoding of these kinds is one-to-one, so the value is the one encoded, bit for bit.
pub fn decode_value(kind: KeyKind, b: &[u8]) -> Result<Datum> {
    let corrupt = || Error::Corrupt(format!("not a {kind:?} key: {b:?}"));
    let (&tag, rest) = b.split_first().ok_or_else(corrupt)?;
    match tag {
        NULL if rest.is_empty() => return Ok(Datum::Null),
        VALUE => {}
        _ => return Err(corrupt()),
    }
    let fixed = |n: usize| -> Result<u64> {
        if rest.len() != n {
            return Err(corrupt());
        }
        Ok(rest.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    };
    Ok(match kind {
        KeyKind::Bool => match fixed(1)? {
            0 => Datum::Bool(false),
            1 => Datum::Bool(true),
            _ => return Err(corrupt()),
        },
        KeyKind::Int16 => Datum::Int16((fixed(2)? as u16 ^ 0x8000) as i16),
        KeyKind::Int32 => Datum::Int32((fixed(4)? as u32 ^ 0x8000_0000) as i32),
        KeyKind::Date => Datum::Date((fixed(4)? as u32 ^ 0x8000_0000) as i32),
        KeyKind::Int64 => Datum::Int64((fixed(8)? ^ (1 << 63)) as i64),
        KeyKind::Time => Datum::Time((fixed(8)? ^ (1 << 63)) as i64),
        KeyKind::Timestamp => Datum::Timestamp((fixed(8)? ^ (1 << 63)) as i64),
        KeyKind::Float32 => {
            let enc = fixed(4)? as u32;
            let bits = if enc >> 31 == 1 {
                enc ^ (1 << 31)
            } else {
                !enc
            };
            Datum::Float32(f32::from_bits(bits))
        }
        KeyKind::Float64 => {
            let enc = fixed(8)?;
            let bits = if enc >> 63 == 1 {
                enc ^ (1 << 63)
            } else {
                !enc
            };
            Datum::Float64(f64::from_bits(bits))
        }
        KeyKind::Text => {
            let body = rest.strip_suffix(&[0x00, 0x00]).ok_or_else(corrupt)?;
            let mut out = Vec::with_capacity(body.len());
            let mut it = body.iter();
            while let Some(&byte) = it.next() {
                out.push(byte);
                if byte == 0 && it.next() != Some(&0xFF) {
                    return Err(corrupt());
                }
            }
            Datum::Text(String::from_utf8(out).map_err(|_| corrupt())?)
        }
    })
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

    proptest! {
        #[test]
        fn decode_value_reads_back_what_encode_value_wrote(
            (kind, v) in proptest::strategy::Union::new(vec![
                Just((KeyKind::Int64, Datum::Null)).boxed(),
                any::<bool>().prop_map(|x| (KeyKind::Bool, Datum::Bool(x))).boxed(),
                any::<i16>().prop_map(|x| (KeyKind::Int16, Datum::Int16(x))).boxed(),
                any::<i32>().prop_map(|x| (KeyKind::Int32, Datum::Int32(x))).boxed(),
                any::<i32>().prop_map(|x| (KeyKind::Date, Datum::Date(x))).boxed(),
                any::<i64>().prop_map(|x| (KeyKind::Int64, Datum::Int64(x))).boxed(),
                any::<i64>().prop_map(|x| (KeyKind::Time, Datum::Time(x))).boxed(),
                any::<i64>().prop_map(|x| (KeyKind::Timestamp, Datum::Timestamp(x))).boxed(),
                any::<u32>().prop_map(|x| (KeyKind::Float32, Datum::Float32(f32::from_bits(x)))).boxed(),
                any::<u64>().prop_map(|x| (KeyKind::Float64, Datum::Float64(f64::from_bits(x)))).boxed(),
                "[a\\x00-c\u{e9}]{0,6}".prop_map(|x| (KeyKind::Text, Datum::Text(x))).boxed(),
            ])
        ) {
            let key = enc(vec![v.clone()]);
            prop_assert!(v.is_null() || KeyKind::of(&v) == Some(kind));
            let back = decode_value(kind, &key).expect("decodes");
            // Bit for bit (floats: NaN payloads and -0.0 included).
            prop_assert_eq!(enc(vec![back]), key);
        }
    }

    #[test]
    fn decode_value_refuses_other_bytes() {
        assert!(decode_value(KeyKind::Int64, &[VALUE, 1, 2]).is_err());
        assert!(decode_value(KeyKind::Text, &[VALUE, b'a', 0x00, 0x01, 0x00, 0x00]).is_err());
        assert!(decode_value(KeyKind::Bool, &[VALUE, 2]).is_err());
        assert!(decode_value(KeyKind::Int64, &[]).is_err());
    }

    #[test]
    fn null_sorts_last() {
        assert!(enc(vec![Datum::Int64(i64::MAX)]) < enc(vec![Datum::Null]));
    }
}
