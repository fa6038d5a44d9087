//! The data of `COPY … FROM STDIN (FORMAT binary)`: PostgreSQL's PGCOPY stream (a signature,
//! flags and header extension, then per row a field count and each field's length and
//! binary value, then -1), decoded into values of the target columns' types (what asyncpg's
//! `copy_records_to_table` and psycopg's binary copies send).

use freshet_common::{Datum, PgError, SqlState, SqlType};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Days and microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const EPOCH_DAYS: i32 = 10_957;
const EPOCH_MICROS: i64 = 946_684_800_000_000;

fn bad(msg: impl Into<String>) -> PgError {
    PgError::new(SqlState::BAD_COPY_FILE_FORMAT, msg)
}

/// Reads the stream: one row of values per tuple, each in the type of its column in `types`.
pub fn parse_binary(data: &[u8], types: &[SqlType]) -> Result<Vec<Vec<Datum>>, PgError> {
    let mut r = Reader(data);
    if r.take(SIGNATURE.len())? != SIGNATURE {
        return Err(bad("COPY file signature not recognized"));
    }
    let flags = r.i32()?;
    if flags & (1 << 16) != 0 {
        return Err(bad("invalid COPY file header (WITH OIDS)"));
    }
    let extension = r.i32()?;
    r.take(
        usize::try_from(extension).map_err(|_| bad("invalid COPY file header (wrong length)"))?,
    )?;
    let mut rows = Vec::new();
    loop {
        let count = r.i16()?;
        if count == -1 {
            break;
        }
        if usize::try_from(count).ok() != Some(types.len()) {
            return Err(bad(format!(
                "row field count is {count}, expected {}",
                types.len()
            )));
        }
        let mut row = Vec::with_capacity(types.len());
        for ty in types {
            row.push(r.field(ty)?);
        }
        rows.push(row);
    }
    Ok(rows)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PgError> {
        if self.0.len() < n {
            return Err(bad("unexpected EOF in COPY data"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PgError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, PgError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, PgError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, PgError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// One length-prefixed field; NULL for length -1.
    fn field(&mut self, ty: &SqlType) -> Result<Datum, PgError> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(Datum::Null);
        }
        let len = usize::try_from(len).map_err(|_| bad("invalid field length in COPY data"))?;
        let mut value = Reader(self.take(len)?);
        let datum = value.value(ty, len)?;
        if !value.0.is_empty() {
            return Err(PgError::new(
                SqlState::INVALID_BINARY_REPRESENTATION,
                format!("incorrect binary data format for type {}", ty.pg_name()),
            ));
        }
        Ok(datum)
    }

    /// A value of `ty` taking `len` bytes.
    fn value(&mut self, ty: &SqlType, len: usize) -> Result<Datum, PgError> {
        Ok(match ty {
            SqlType::Bool => Datum::Bool(self.take(1)?[0] != 0),
            SqlType::Int2 => Datum::Int16(self.i16()?),
            SqlType::Int4 => Datum::Int32(self.i32()?),
            SqlType::Int8 => Datum::Int64(self.i64()?),
            SqlType::Float4 => Datum::Float32(f32::from_be_bytes(self.array()?)),
            SqlType::Float8 => Datum::Float64(f64::from_be_bytes(self.array()?)),
            SqlType::Numeric { precision, scale } => self.numeric(*precision, *scale)?,
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) => Datum::Text(self.text(len)?),
            SqlType::Jsonb => {
                if self.take(1)? != [1] {
                    return Err(PgError::new(
                        SqlState::INVALID_BINARY_REPRESENTATION,
                        "unsupported jsonb version number",
                    ));
                }
                Datum::Text(self.text(len - 1)?)
            }
            SqlType::Uuid => {
                let b: [u8; 16] = self.array()?;
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                Datum::Text(crate::pg_uuid::canonical(&hex)?)
            }
            SqlType::Bytea => Datum::Bytes(self.take(len)?.to_vec()),
            SqlType::Date => Datum::Date(self.i32()?.saturating_add(EPOCH_DAYS)),
            SqlType::Time => Datum::Time(self.i64()?),
            SqlType::Timestamp | SqlType::TimestampTz => {
                Datum::Timestamp(self.i64()?.saturating_add(EPOCH_MICROS))
            }
            SqlType::Interval => {
                let micros = self.i64()?;
                let days = self.i32()?;
                let months = self.i32()?;
                Datum::Interval {
                    months,
                    days,
                    nanos: micros.saturating_mul(1000),
                }
            }
            SqlType::Array(element) => self.list(element)?,
            SqlType::Struct(_) => {
                return Err(PgError::not_supported("binary COPY into a struct column"))
            }
        })
    }

    fn text(&mut self, len: usize) -> Result<String, PgError> {
        String::from_utf8(self.take(len)?.to_vec()).map_err(|e| {
            PgError::new(
                SqlState::CHARACTER_NOT_IN_REPERTOIRE,
                format!("invalid byte sequence for encoding \"UTF8\": {e}"),
            )
        })
    }

    /// A one-dimensional array (PostgreSQL's array_recv layout).
    fn list(&mut self, element: &SqlType) -> Result<Datum, PgError> {
        let dims = self.i32()?;
        let _has_nulls = self.i32()?;
        let _element_oid = self.i32()?;
        match dims {
            0 => Ok(Datum::List(vec![])),
            1 => {
                let n = self.i32()?;
                let _lower_bound = self.i32()?;
                let n = usize::try_from(n).map_err(|_| bad("invalid array length"))?;
                let mut out = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    out.push(self.field(element)?);
                }
                Ok(Datum::List(out))
            }
            _ => Err(PgError::not_supported(
                "binary COPY of a multidimensional array",
            )),
        }
    }

    /// A numeric (sign, base-10000 digits, weight) as the column's unscaled decimal, rounded
    /// half away from zero to its scale; 22003 past its precision.
    fn numeric(&mut self, precision: u8, scale: i8) -> Result<Datum, PgError> {
        let ndigits = self.i16()?;
        let weight = i32::from(self.i16()?);
        let sign = self.i16()? as u16;
        let _dscale = self.i16()?;
        if sign == 0xC000 {
            return Err(PgError::not_supported("NaN in a numeric column"));
        }
        let overflow = || {
            PgError::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "numeric field overflow").with_detail(
                format!(
                    "A field with precision {precision}, scale {scale} must round to an absolute value less than 10^{}.",
                    i32::from(precision) - i32::from(scale)
                ),
            )
        };
        // value = Σ digit_i · 10000^(weight - i); scaled by 10^scale.
        let mut unscaled: i128 = 0;
        let mut round_up = false;
        for i in 0..i32::from(ndigits.max(0)) {
            let digit = i128::from(self.i16()?);
            // The power of ten this digit's last decimal place has, after scaling.
            let exp = 4 * (weight - i) + i32::from(scale);
            if exp >= 0 {
                let factor = 10i128.checked_pow(exp as u32).ok_or_else(overflow)?;
                unscaled = digit
                    .checked_mul(factor)
                    .and_then(|d| unscaled.checked_add(d))
                    .ok_or_else(overflow)?;
            } else if exp > -4 {
                let divisor = 10i128.pow((-exp) as u32);
                unscaled = unscaled.checked_add(digit / divisor).ok_or_else(overflow)?;
                let rest = digit % divisor;
                round_up |= rest * 2 >= divisor;
            } else if exp == -4 {
                round_up |= digit >= 5000;
            }
            // Digits further right never change a half-up rounding decided above.
        }
        if round_up {
            unscaled += 1;
        }
        if unscaled >= 10i128.pow(u32::from(precision)) {
            return Err(overflow());
        }
        Ok(Datum::Decimal(if sign == 0x4000 {
            -unscaled
        } else {
            unscaled
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0i32.to_be_bytes());
        out.extend(0i32.to_be_bytes());
        for row in rows {
            out.extend((row.len() as i16).to_be_bytes());
            for f in row {
                match f {
                    Some(v) => {
                        out.extend((v.len() as i32).to_be_bytes());
                        out.extend(v);
                    }
                    None => out.extend((-1i32).to_be_bytes()),
                }
            }
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    /// PostgreSQL's binary numeric of 12345.678 (digits 1, 2345, 6780; weight 1; dscale 3).
    fn numeric_12345_678() -> Vec<u8> {
        [3i16, 1, 0, 3, 1, 2345, 6780]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }

    #[test]
    fn decodes_postgresql_binary_values() {
        let types = [
            SqlType::Int4,
            SqlType::Text,
            SqlType::Numeric {
                precision: 10,
                scale: 2,
            },
            SqlType::Timestamp,
            SqlType::Date,
        ];
        let data = stream(&[
            vec![
                Some(7i32.to_be_bytes().to_vec()),
                Some(b"seven".to_vec()),
                Some(numeric_12345_678()),
                Some(0i64.to_be_bytes().to_vec()),
                Some(1i32.to_be_bytes().to_vec()),
            ],
            vec![None, None, None, None, None],
        ]);
        let rows = parse_binary(&data, &types).unwrap();
        assert_eq!(
            rows[0],
            vec![
                Datum::Int32(7),
                Datum::Text("seven".into()),
                Datum::Decimal(1_234_568),
                Datum::Timestamp(EPOCH_MICROS),
                Datum::Date(EPOCH_DAYS + 1),
            ]
        );
        assert_eq!(rows[1], vec![Datum::Null; 5]);
    }

    #[test]
    fn bad_streams_are_refused() {
        assert_eq!(
            parse_binary(b"1\t2\n", &[SqlType::Int4])
                .unwrap_err()
                .sqlstate,
            SqlState::BAD_COPY_FILE_FORMAT
        );
        let data = stream(&[vec![Some(vec![0, 1])]]);
        assert_eq!(
            parse_binary(&data, &[SqlType::Int4]).unwrap_err().sqlstate,
            SqlState::BAD_COPY_FILE_FORMAT
        );
        let data = stream(&[vec![Some(numeric_12345_678())]]);
        let e = parse_binary(
            &data,
            &[SqlType::Numeric {
                precision: 4,
                scale: 0,
            }],
        )
        .unwrap_err();
        assert_eq!(e.sqlstate, SqlState::NUMERIC_VALUE_OUT_OF_RANGE);
    }
}
