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

    /// The value borrowed; `None` for a list.
    pub fn as_value_ref(&self) -> Option<ValueRef<'_>> {
        Some(match self {
            Datum::Null => ValueRef::Null,
            Datum::Bool(b) => ValueRef::Bool(*b),
            Datum::Int16(i) => ValueRef::Int16(*i),
            Datum::Int32(i) => ValueRef::Int32(*i),
            Datum::Int64(i) => ValueRef::Int64(*i),
            Datum::Float32(f) => ValueRef::Float32(*f),
            Datum::Float64(f) => ValueRef::Float64(*f),
            Datum::Decimal(d) => ValueRef::Decimal(*d),
            Datum::Text(s) => ValueRef::Text(s),
            Datum::Bytes(b) => ValueRef::Bytes(b),
            Datum::Date(d) => ValueRef::Date(*d),
            Datum::Time(t) => ValueRef::Time(*t),
            Datum::Timestamp(t) => ValueRef::Timestamp(*t),
            Datum::Interval {
                months,
                days,
                nanos,
            } => ValueRef::Interval {
                months: *months,
                days: *days,
                nanos: *nanos,
            },
            Datum::List(_) => return None,
        })
    }
}

/// A scalar [`Datum`] borrowed, so encoders can take values straight from Arrow arrays without
/// allocating. Lists have no borrowed form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Decimal(i128),
    Text(&'a str),
    Bytes(&'a [u8]),
    Date(i32),
    Time(i64),
    Timestamp(i64),
    Interval { months: i32, days: i32, nanos: i64 },
}

impl ValueRef<'_> {
    /// The value owned.
    pub fn to_datum(self) -> Datum {
        match self {
            ValueRef::Null => Datum::Null,
            ValueRef::Bool(b) => Datum::Bool(b),
            ValueRef::Int16(i) => Datum::Int16(i),
            ValueRef::Int32(i) => Datum::Int32(i),
            ValueRef::Int64(i) => Datum::Int64(i),
            ValueRef::Float32(f) => Datum::Float32(f),
            ValueRef::Float64(f) => Datum::Float64(f),
            ValueRef::Decimal(d) => Datum::Decimal(d),
            ValueRef::Text(s) => Datum::Text(s.to_owned()),
            ValueRef::Bytes(b) => Datum::Bytes(b.to_vec()),
            ValueRef::Date(d) => Datum::Date(d),
            ValueRef::Time(t) => Datum::Time(t),
            ValueRef::Timestamp(t) => Datum::Timestamp(t),
            ValueRef::Interval {
                months,
                days,
                nanos,
            } => Datum::Interval {
                months,
                days,
                nanos,
            },
        }
    }
}
