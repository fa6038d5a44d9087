//! SQL column types as the catalog stores them.

use serde::{Deserialize, Serialize};

/// The declared type of a table column, in PostgreSQL terms.
///
/// The catalog persists this (serde), so variants may be added but never renamed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SqlType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(precision, scale)`; an unconstrained `numeric` is stored as (38, 10).
    Numeric {
        precision: u8,
        scale: i8,
    },
    Text,
    /// `varchar(n)` / `character varying(n)`; `None` for an unbounded varchar.
    Varchar(Option<u32>),
    /// `char(n)`.
    Char(u32),
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Bytea,
    Jsonb,
    Array(Box<SqlType>),
    /// `STRUCT<name type, …>` (source columns; field access reads as `(col).name`).
    Struct(Vec<(String, SqlType)>),
    /// `uuid`, held as its canonical text (lower-case hex in 8-4-4-4-12 groups), which sorts
    /// as PostgreSQL sorts the 16 bytes.
    Uuid,
}

impl SqlType {
    /// The PostgreSQL type OID.
    pub fn oid(&self) -> u32 {
        match self {
            SqlType::Bool => 16,
            SqlType::Int2 => 21,
            SqlType::Int4 => 23,
            SqlType::Int8 => 20,
            SqlType::Float4 => 700,
            SqlType::Float8 => 701,
            SqlType::Numeric { .. } => 1700,
            SqlType::Text => 25,
            SqlType::Varchar(_) => 1043,
            SqlType::Char(_) => 1042,
            SqlType::Date => 1082,
            SqlType::Time => 1083,
            SqlType::Timestamp => 1114,
            SqlType::TimestampTz => 1184,
            SqlType::Interval => 1186,
            SqlType::Bytea => 17,
            SqlType::Jsonb => 3802,
            SqlType::Uuid => 2950,
            // `record`: the pseudo-type of anonymous composite values.
            SqlType::Struct(_) => 2249,
            SqlType::Array(inner) => match inner.as_ref() {
                SqlType::Bool => 1000,
                SqlType::Int2 => 1005,
                SqlType::Int4 => 1007,
                SqlType::Int8 => 1016,
                SqlType::Float4 => 1021,
                SqlType::Float8 => 1022,
                SqlType::Numeric { .. } => 1231,
                SqlType::Varchar(_) => 1015,
                SqlType::Char(_) => 1014,
                SqlType::Date => 1182,
                SqlType::Time => 1183,
                SqlType::Timestamp => 1115,
                SqlType::TimestampTz => 1185,
                SqlType::Interval => 1187,
                SqlType::Bytea => 1001,
                SqlType::Jsonb => 3807,
                SqlType::Uuid => 2951,
                SqlType::Struct(_) => 2287,
                _ => 1009,
            },
        }
    }

    /// The name `format_type` would print, e.g. `character varying(20)`.
    pub fn pg_name(&self) -> String {
        match self {
            SqlType::Bool => "boolean".into(),
            SqlType::Int2 => "smallint".into(),
            SqlType::Int4 => "integer".into(),
            SqlType::Int8 => "bigint".into(),
            SqlType::Float4 => "real".into(),
            SqlType::Float8 => "double precision".into(),
            SqlType::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
            SqlType::Text => "text".into(),
            SqlType::Varchar(None) => "character varying".into(),
            SqlType::Varchar(Some(n)) => format!("character varying({n})"),
            SqlType::Char(n) => format!("character({n})"),
            SqlType::Date => "date".into(),
            SqlType::Time => "time without time zone".into(),
            SqlType::Timestamp => "timestamp without time zone".into(),
            SqlType::TimestampTz => "timestamp with time zone".into(),
            SqlType::Interval => "interval".into(),
            SqlType::Bytea => "bytea".into(),
            SqlType::Jsonb => "jsonb".into(),
            SqlType::Uuid => "uuid".into(),
            SqlType::Array(inner) => format!("{}[]", inner.pg_name()),
            SqlType::Struct(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(n, t)| format!("{n} {}", t.pg_name()))
                    .collect();
                format!("struct<{}>", fields.join(", "))
            }
        }
    }

    /// Whether values of this type may form a primary key.
    pub fn is_keyable(&self) -> bool {
        !matches!(
            self,
            SqlType::Jsonb | SqlType::Array(_) | SqlType::Struct(_) | SqlType::Interval
        )
    }
}
