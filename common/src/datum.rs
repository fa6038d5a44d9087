//! One SQL value, the unit of the row codecs in `freshet-state`.

/// A single value. The column's [`crate::SqlType`] says how to read it back; a `Datum` does not
/// carry precision, scale or time zone.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    /// Unscaled decimal value; the scale comes from the column type.
    Decimal(i128),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since the Unix epoch (UTC for `timestamptz`).
    Timestamp(i64),
    Interval {
        months: i32,
        days: i32,
        nanos: i64,
    },
    List(Vec<Datum>),
}

impl Datum {
    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }
}
