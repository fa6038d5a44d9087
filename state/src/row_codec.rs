//! Row value encoding: a version byte, then per column a tag and a payload.
//!
//! Self-describing, so a decode never needs the schema to walk the bytes; the catalog's column
//! types say how to turn the datums back into typed arrays. Little-endian fixed-width payloads,
//! varint lengths for text, bytes and lists.

use freshet_common::{Datum, ValueRef};

use crate::{Error, Result};

const FORMAT_V1: u8 = 1;

mod tag {
    pub const NULL: u8 = 0;
    pub const BOOL: u8 = 1;
    pub const I16: u8 = 2;
    pub const I32: u8 = 3;
    pub const I64: u8 = 4;
    pub const F32: u8 = 5;
    pub const F64: u8 = 6;
    pub const DECIMAL: u8 = 7;
    pub const TEXT: u8 = 8;
    pub const BYTES: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const TIMESTAMP: u8 = 12;
    pub const INTERVAL: u8 = 13;
    pub const LIST: u8 = 14;
}

/// Encodes one row.
pub fn encode_row(values: &[Datum], out: &mut Vec<u8>) {
    encode_row_header(values.len(), out);
    for v in values {
        encode_value(v, out);
    }
}

/// Starts a row of `columns` values; [`encode_value`] or [`encode_value_ref`] must follow
/// once per column.
pub fn encode_row_header(columns: usize, out: &mut Vec<u8>) {
    out.push(FORMAT_V1);
    write_varint(columns as u64, out);
}

/// Appends one value of a row.
pub fn encode_value(v: &Datum, out: &mut Vec<u8>) {
    match v.as_value_ref() {
        Some(r) => encode_value_ref(r, out),
        None => {
            let Datum::List(items) = v else {
                unreachable!("only lists have no borrowed form")
            };
            out.push(tag::LIST);
            write_varint(items.len() as u64, out);
            for item in items {
                encode_value(item, out);
            }
        }
    }
}

/// Appends one scalar value of a row (the same bytes [`encode_value`] writes for it).
pub fn encode_value_ref(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::Null => out.push(tag::NULL),
        ValueRef::Bool(b) => out.extend_from_slice(&[tag::BOOL, u8::from(b)]),
        ValueRef::Int16(i) => {
            out.push(tag::I16);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Int32(i) => {
            out.push(tag::I32);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Int64(i) => {
            out.push(tag::I64);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Float32(f) => {
            out.push(tag::F32);
            out.extend_from_slice(&f.to_le_bytes());
        }
        ValueRef::Float64(f) => {
            out.push(tag::F64);
            out.extend_from_slice(&f.to_le_bytes());
        }
        ValueRef::Decimal(d) => {
            out.push(tag::DECIMAL);
            out.extend_from_slice(&d.to_le_bytes());
        }
        ValueRef::Text(s) => {
            out.push(tag::TEXT);
            write_varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        ValueRef::Bytes(b) => {
            out.push(tag::BYTES);
            write_varint(b.len() as u64, out);
            out.extend_from_slice(b);
        }
        ValueRef::Date(d) => {
            out.push(tag::DATE);
            out.extend_from_slice(&d.to_le_bytes());
        }
        ValueRef::Time(t) => {
            out.push(tag::TIME);
            out.extend_from_slice(&t.to_le_bytes());
        }
        ValueRef::Timestamp(t) => {
            out.push(tag::TIMESTAMP);
            out.extend_from_slice(&t.to_le_bytes());
        }
        ValueRef::Interval {
            months,
            days,
            nanos,
        } => {
            out.push(tag::INTERVAL);
            out.extend_from_slice(&months.to_le_bytes());
            out.extend_from_slice(&days.to_le_bytes());
            out.extend_from_slice(&nanos.to_le_bytes());
        }
    }
}

/// Decodes one row written by [`encode_row`].
pub fn decode_row(bytes: &[u8]) -> Result<Vec<Datum>> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.byte()? != FORMAT_V1 {
        return Err(Error::Corrupt("unknown row format version".into()));
    }
    let n = usize::try_from(r.varint()?).map_err(|_| corrupt())?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.value()?);
    }
    Ok(out)
}

/// One value of a row as [`visit_row`] hands it over: borrowed where it has a borrowed form,
/// owned for a list.
pub enum Cell<'a> {
    Ref(ValueRef<'a>),
    List(Vec<Datum>),
}

/// Hands each value of a row written by [`encode_row`] whose column `wanted` marks to `f`,
/// with its column number, without allocating (but for lists); the other values are
/// skipped. Returns how many values the row has (a row written before columns were added
/// has fewer than the table).
pub fn visit_row<'a>(
    bytes: &'a [u8],
    wanted: &[bool],
    mut f: impl FnMut(usize, Cell<'a>) -> Result<()>,
) -> Result<usize> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.byte()? != FORMAT_V1 {
        return Err(Error::Corrupt("unknown row format version".into()));
    }
    let n = usize::try_from(r.varint()?).map_err(|_| corrupt())?;
    // Nothing after the last wanted column is read.
    let last = wanted.iter().rposition(|w| *w).map_or(0, |i| i + 1);
    for col in 0..n.min(last) {
        if wanted[col] {
            f(col, r.cell()?)?;
        } else {
            r.skip()?;
        }
    }
    Ok(n)
}

/// The value of column `col` of a row written by [`encode_row`], skipping the values before
/// it without decoding them.
pub fn decode_column(bytes: &[u8], col: usize) -> Result<Datum> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.byte()? != FORMAT_V1 {
        return Err(Error::Corrupt("unknown row format version".into()));
    }
    let n = usize::try_from(r.varint()?).map_err(|_| corrupt())?;
    if col >= n {
        return Err(Error::Corrupt(format!(
            "row of {n} values has no column {col}"
        )));
    }
    for _ in 0..col {
        r.skip()?;
    }
    r.value()
}

/// The length of the row encoding at the start of `bytes` (bytes after it are not read).
pub fn row_len(bytes: &[u8]) -> Result<usize> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.byte()? != FORMAT_V1 {
        return Err(Error::Corrupt("unknown row format version".into()));
    }
    let n = usize::try_from(r.varint()?).map_err(|_| corrupt())?;
    for _ in 0..n {
        r.value()?;
    }
    Ok(r.pos)
}

fn corrupt() -> Error {
    Error::Corrupt("truncated row".into())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(corrupt)?;
        let s = self.buf.get(self.pos..end).ok_or_else(corrupt)?;
        self.pos = end;
        Ok(s)
    }
    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| corrupt())
    }
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt())
    }
    fn len(&mut self) -> Result<usize> {
        usize::try_from(self.varint()?).map_err(|_| corrupt())
    }
    /// Steps over one value.
    fn skip(&mut self) -> Result<()> {
        let n = match self.byte()? {
            tag::NULL => 0,
            tag::BOOL => 1,
            tag::I16 => 2,
            tag::I32 | tag::F32 | tag::DATE => 4,
            tag::I64 | tag::F64 | tag::TIME | tag::TIMESTAMP => 8,
            tag::DECIMAL | tag::INTERVAL => 16,
            tag::TEXT | tag::BYTES => self.len()?,
            tag::LIST => {
                for _ in 0..self.len()? {
                    self.skip()?;
                }
                0
            }
            other => return Err(Error::Corrupt(format!("unknown value tag {other}"))),
        };
        self.take(n).map(|_| ())
    }
    /// One value, borrowed from the buffer where it can be.
    fn cell(&mut self) -> Result<Cell<'a>> {
        let v = match self.byte()? {
            tag::NULL => ValueRef::Null,
            tag::BOOL => ValueRef::Bool(self.byte()? != 0),
            tag::I16 => ValueRef::Int16(i16::from_le_bytes(self.fixed()?)),
            tag::I32 => ValueRef::Int32(i32::from_le_bytes(self.fixed()?)),
            tag::I64 => ValueRef::Int64(i64::from_le_bytes(self.fixed()?)),
            tag::F32 => ValueRef::Float32(f32::from_le_bytes(self.fixed()?)),
            tag::F64 => ValueRef::Float64(f64::from_le_bytes(self.fixed()?)),
            tag::DECIMAL => ValueRef::Decimal(i128::from_le_bytes(self.fixed()?)),
            tag::TEXT => {
                let n = self.len()?;
                ValueRef::Text(
                    std::str::from_utf8(self.take(n)?)
                        .map_err(|_| Error::Corrupt("text is not UTF-8".into()))?,
                )
            }
            tag::BYTES => {
                let n = self.len()?;
                ValueRef::Bytes(self.take(n)?)
            }
            tag::DATE => ValueRef::Date(i32::from_le_bytes(self.fixed()?)),
            tag::TIME => ValueRef::Time(i64::from_le_bytes(self.fixed()?)),
            tag::TIMESTAMP => ValueRef::Timestamp(i64::from_le_bytes(self.fixed()?)),
            tag::INTERVAL => ValueRef::Interval {
                months: i32::from_le_bytes(self.fixed()?),
                days: i32::from_le_bytes(self.fixed()?),
                nanos: i64::from_le_bytes(self.fixed()?),
            },
            tag::LIST => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value()?);
                }
                return Ok(Cell::List(items));
            }
            other => return Err(Error::Corrupt(format!("unknown value tag {other}"))),
        };
        Ok(Cell::Ref(v))
    }
    fn value(&mut self) -> Result<Datum> {
        Ok(match self.cell()? {
            Cell::Ref(v) => v.to_datum(),
            Cell::List(items) => Datum::List(items),
        })
    }
}

/// Reads a varint ([`write_varint`]) from the front of `buf`, advancing it past.
pub fn read_varint(buf: &mut &[u8]) -> Result<u64> {
    let mut r = Reader { buf, pos: 0 };
    let v = r.varint()?;
    *buf = &buf[r.pos..];
    Ok(v)
}

/// Appends `v` as a varint: 7 bits per byte, low bits first, as rows write lengths.
pub fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let row = vec![
            Datum::Null,
            Datum::Bool(true),
            Datum::Int16(-3),
            Datum::Int32(7),
            Datum::Int64(i64::MIN),
            Datum::Float32(1.5),
            Datum::Float64(-0.25),
            Datum::Decimal(-12345),
            Datum::Text("héllo".into()),
            Datum::Bytes(vec![0, 1, 255]),
            Datum::Date(19000),
            Datum::Time(1_000),
            Datum::Timestamp(-5),
            Datum::Interval {
                months: 1,
                days: -2,
                nanos: 3,
            },
            Datum::List(vec![Datum::Int32(1), Datum::Null]),
        ];
        let mut buf = Vec::new();
        encode_row(&row, &mut buf);
        assert_eq!(decode_row(&buf).unwrap(), row);
        for (i, v) in row.iter().enumerate() {
            assert_eq!(&decode_column(&buf, i).unwrap(), v, "column {i}");
        }
        assert!(decode_column(&buf, row.len()).is_err());
        // Every other column visited, borrowed; nothing past the last wanted one is read.
        let wanted: Vec<bool> = (0..row.len()).map(|i| i % 2 == 1).collect();
        let mut seen = Vec::new();
        let n = visit_row(&buf, &wanted, |c, cell| {
            seen.push((
                c,
                match cell {
                    Cell::Ref(v) => v.to_datum(),
                    Cell::List(items) => Datum::List(items),
                },
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, row.len());
        let want: Vec<(usize, Datum)> = row.iter().cloned().enumerate().filter(|(i, _)| i % 2 == 1).collect();
        assert_eq!(seen, want);
        let mut first_only = vec![false; row.len() + 3];
        first_only[1] = true;
        let mut count = 0;
        visit_row(&buf[..5], &first_only, |_, _| {
            count += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 1);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        encode_row(&[Datum::Text("abc".into())], &mut buf);
        for cut in 0..buf.len() {
            assert!(decode_row(&buf[..cut]).is_err());
        }
    }
}
