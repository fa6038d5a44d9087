//! Column types: PostgreSQL names ⇄ [`SqlType`] ⇄ Arrow.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, CharacterLength, DataType as AstType, ExactNumberInfo, TimezoneInfo,
};
use freshet_common::{PgError, SqlType};

/// Field metadata key naming the PostgreSQL type when Arrow alone cannot say it (jsonb,
/// `bpchar(n)`).
pub const PG_TYPE_METADATA_KEY: &str = "freshet.pg_type";

/// The `character(n)` length a field's metadata names, if it names one (`bpchar(n)`).
pub fn bpchar_length(field: &Field) -> Option<u32> {
    field
        .metadata()
        .get(PG_TYPE_METADATA_KEY)?
        .strip_prefix("bpchar(")?
        .strip_suffix(')')?
        .parse()
        .ok()
}

/// The `varchar` a field's metadata names, if it names one: `Some(None)` for an unbounded
/// `varchar`, `Some(Some(n))` for `varchar(n)`.
pub fn varchar_length(field: &Field) -> Option<Option<u32>> {
    let kind = field.metadata().get(PG_TYPE_METADATA_KEY)?;
    if kind == "varchar" {
        return Some(None);
    }
    Some(Some(kind.strip_prefix("varchar(")?.strip_suffix(')')?.parse().ok()?))
}

/// Binds a type named in DDL.
pub fn bind_type(ty: &AstType) -> Result<SqlType, PgError> {
    Ok(match ty {
        AstType::Boolean | AstType::Bool => SqlType::Bool,
        AstType::SmallInt(_) | AstType::Int2(_) => SqlType::Int2,
        AstType::Int(_) | AstType::Integer(_) | AstType::Int4(_) => SqlType::Int4,
        AstType::BigInt(_) | AstType::Int8(_) => SqlType::Int8,
        AstType::Real | AstType::Float4 => SqlType::Float4,
        AstType::Float(info) => match info {
            ExactNumberInfo::Precision(p) | ExactNumberInfo::PrecisionAndScale(p, _)
                if *p <= 24 =>
            {
                SqlType::Float4
            }
            _ => SqlType::Float8,
        },
        AstType::Double(_) | AstType::DoublePrecision | AstType::Float8 | AstType::Float64 => {
            SqlType::Float8
        }
        AstType::Numeric(info) | AstType::Decimal(info) | AstType::Dec(info) => match info {
            ExactNumberInfo::None => SqlType::Numeric {
                precision: 38,
                scale: 10,
            },
            ExactNumberInfo::Precision(p) => SqlType::Numeric {
                precision: check_precision(*p)?,
                scale: 0,
            },
            ExactNumberInfo::PrecisionAndScale(p, s) => SqlType::Numeric {
                precision: check_precision(*p)?,
                scale: i8::try_from(*s).map_err(|_| invalid_type("NUMERIC scale out of range"))?,
            },
        },
        AstType::Text | AstType::String(_) => SqlType::Text,
        AstType::Varchar(len) | AstType::CharacterVarying(len) | AstType::CharVarying(len) => {
            SqlType::Varchar(char_len(len)?)
        }
        AstType::Char(len) | AstType::Character(len) => SqlType::Char(char_len(len)?.unwrap_or(1)),
        AstType::Date => SqlType::Date,
        AstType::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => SqlType::Time,
        AstType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            SqlType::Timestamp
        }
        AstType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            SqlType::TimestampTz
        }
        AstType::Interval { .. } => SqlType::Interval,
        AstType::Bytea => SqlType::Bytea,
        AstType::JSONB | AstType::JSON => SqlType::Jsonb,
        AstType::Uuid => SqlType::Uuid,
        AstType::Array(
            ArrayElemTypeDef::SquareBracket(inner, _) | ArrayElemTypeDef::AngleBracket(inner),
        ) => {
            let inner = bind_type(inner)?;
            if matches!(inner, SqlType::Array(_)) {
                return Err(PgError::not_supported("multidimensional array column"));
            }
            SqlType::Array(Box::new(inner))
        }
        AstType::Struct(fields, _) => {
            let mut out = Vec::with_capacity(fields.len());
            for f in fields {
                let name = f
                    .field_name
                    .as_ref()
                    .map(crate::words::ident)
                    .ok_or_else(|| PgError::not_supported("a STRUCT field without a name"))?;
                out.push((name, bind_type(&f.field_type)?));
            }
            SqlType::Struct(out)
        }
        AstType::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
            "timestamptz" => SqlType::TimestampTz,
            "int2" => SqlType::Int2,
            "int4" => SqlType::Int4,
            "int8" => SqlType::Int8,
            "float4" => SqlType::Float4,
            "float8" => SqlType::Float8,
            "jsonb" | "json" => SqlType::Jsonb,
            "uuid" => SqlType::Uuid,
            other => {
                return Err(PgError::new(
                    freshet_common::SqlState::UNDEFINED_OBJECT,
                    format!("type \"{other}\" does not exist"),
                ))
            }
        },
        other => return Err(PgError::not_supported(format!("column type {other}"))),
    })
}

fn check_precision(p: u64) -> Result<u8, PgError> {
    match u8::try_from(p) {
        Ok(p @ 1..=38) => Ok(p),
        _ => Err(invalid_type("NUMERIC precision must be between 1 and 38")),
    }
}

fn char_len(len: &Option<CharacterLength>) -> Result<Option<u32>, PgError> {
    match len {
        None | Some(CharacterLength::Max) => Ok(None),
        Some(CharacterLength::IntegerLength { length, .. }) => u32::try_from(*length)
            .map(Some)
            .map_err(|_| invalid_type("length for type varchar is too large")),
    }
}

fn invalid_type(msg: &str) -> PgError {
    PgError::new(freshet_common::SqlState::INVALID_PARAMETER_VALUE, msg)
}

/// The Arrow type that holds values of `ty`.
pub fn arrow_type(ty: &SqlType) -> DataType {
    match ty {
        SqlType::Bool => DataType::Boolean,
        SqlType::Int2 => DataType::Int16,
        SqlType::Int4 => DataType::Int32,
        SqlType::Int8 => DataType::Int64,
        SqlType::Float4 => DataType::Float32,
        SqlType::Float8 => DataType::Float64,
        SqlType::Numeric { precision, scale } => DataType::Decimal128(*precision, *scale),
        SqlType::Text
        | SqlType::Varchar(_)
        | SqlType::Char(_)
        | SqlType::Jsonb
        | SqlType::Uuid => DataType::Utf8,
        SqlType::Date => DataType::Date32,
        SqlType::Time => DataType::Time64(TimeUnit::Microsecond),
        SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        SqlType::TimestampTz => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00")))
        }
        SqlType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
        SqlType::Bytea => DataType::Binary,
        SqlType::Array(inner) => {
            DataType::List(Arc::new(Field::new_list_field(arrow_type(inner), true)))
        }
        SqlType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|(n, t)| arrow_field(n, t, true))
                .collect(),
        ),
    }
}

/// The Arrow field of a column, with metadata for types Arrow cannot name.
pub fn arrow_field(name: &str, ty: &SqlType, nullable: bool) -> Field {
    let field = Field::new(name, arrow_type(ty), nullable);
    match ty {
        SqlType::Jsonb => field.with_metadata(HashMap::from([(
            PG_TYPE_METADATA_KEY.to_owned(),
            "jsonb".to_owned(),
        )])),
        SqlType::Uuid => field.with_metadata(HashMap::from([(
            PG_TYPE_METADATA_KEY.to_owned(),
            "uuid".to_owned(),
        )])),
        // Its length travels with the column, so views and results keep `varchar(n)`.
        SqlType::Varchar(n) => field.with_metadata(HashMap::from([(
            PG_TYPE_METADATA_KEY.to_owned(),
            n.map_or_else(|| "varchar".to_owned(), |n| format!("varchar({n})")),
        )])),
        // Stored without its padding; results pad to `n` (see `validate_row`).
        SqlType::Char(n) => field.with_metadata(HashMap::from([(
            PG_TYPE_METADATA_KEY.to_owned(),
            format!("bpchar({n})"),
        )])),
        _ => field,
    }
}

/// The SQL type clients see for an Arrow field of a query result (views' columns).
/// `None` for Arrow types we do not store.
pub fn sql_type_of(field: &Field) -> Option<SqlType> {
    match field.metadata().get(PG_TYPE_METADATA_KEY).map(String::as_str) {
        Some("jsonb") => return Some(SqlType::Jsonb),
        Some("uuid") => return Some(SqlType::Uuid),
        _ => {}
    }
    if let Some(n) = bpchar_length(field) {
        return Some(SqlType::Char(n));
    }
    if let Some(n) = varchar_length(field) {
        return Some(SqlType::Varchar(n));
    }
    Some(match field.data_type() {
        DataType::Boolean => SqlType::Bool,
        DataType::Int8 | DataType::Int16 => SqlType::Int2,
        DataType::Int32 => SqlType::Int4,
        DataType::Int64 => SqlType::Int8,
        DataType::Float16 | DataType::Float32 => SqlType::Float4,
        DataType::Float64 => SqlType::Float8,
        DataType::Decimal128(p, s) => SqlType::Numeric {
            precision: *p,
            scale: *s,
        },
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SqlType::Text,
        DataType::Date32 => SqlType::Date,
        DataType::Time64(_) => SqlType::Time,
        DataType::Timestamp(_, None) => SqlType::Timestamp,
        DataType::Timestamp(_, Some(_)) => SqlType::TimestampTz,
        DataType::Interval(_) => SqlType::Interval,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => SqlType::Bytea,
        DataType::List(f) | DataType::LargeList(f) => SqlType::Array(Box::new(sql_type_of(f)?)),
        _ => return None,
    })
}
