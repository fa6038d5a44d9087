//! `format(formatstr, args…)` and `quote_ident(text)` as PostgreSQL has them: `%s` (the value's
//! text, empty for NULL), `%I` (quoted as an identifier when it must be), `%L` (quoted as a
//! literal, `NULL` for NULL), `%%`; argument positions (`%2$s`), and widths (`%10s`, `%-10s`,
//! `%*s`). Values print in PostgreSQL's text form (`t` for true, `1e-05`, intervals as
//! PostgreSQL prints them).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use freshet_common::{PgError, SqlState};

/// Registers `format` and `quote_ident` on `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(Format {
        signature: Signature::variadic_any(Volatility::Stable),
    }));
    ctx.register_udf(super::unary_udf(
        "quote_ident",
        DataType::Utf8,
        DataType::Utf8,
        Volatility::Immutable,
        |a| {
            let quoted: StringArray = a
                .as_string::<i32>()
                .iter()
                .map(|t| t.map(quote_ident))
                .collect();
            Arc::new(quoted)
        },
    ));
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts: Vec<ArrayRef> = arrays.iter().map(text).collect::<Result<_>>()?;
        let Some((formats, values)) = texts.split_first() else {
            return Err(pg(PgError::new(
                SqlState::UNDEFINED_FUNCTION,
                "function format() does not exist",
            )));
        };
        let formats = formats.as_string::<i32>();
        let values: Vec<&StringArray> = values.iter().map(|v| v.as_string::<i32>()).collect();
        let mut out = Vec::with_capacity(formats.len());
        for row in 0..formats.len() {
            if formats.is_null(row) {
                out.push(None);
                continue;
            }
            let row_values: Vec<Option<&str>> = values
                .iter()
                .map(|v| v.is_valid(row).then(|| v.value(row)))
                .collect();
            out.push(Some(
                format_row(formats.value(row), &row_values).map_err(pg)?,
            ));
        }
        let array: ArrayRef = Arc::new(StringArray::from(out));
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

fn pg(e: PgError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A column as PostgreSQL's text of its values.
fn text(a: &ArrayRef) -> Result<ArrayRef> {
    match a.data_type() {
        DataType::Utf8 => Ok(Arc::clone(a)),
        _ => freshet_sql::pg_array_out::value_texts(a),
    }
}

fn bad_format(msg: &str) -> PgError {
    PgError::new(SqlState::INVALID_PARAMETER_VALUE, msg.to_owned())
}

/// One row: `format` with `values` (their text; `None` for NULL).
fn format_row(format: &str, values: &[Option<&str>]) -> Result<String, PgError> {
    let mut out = String::with_capacity(format.len());
    let mut chars = format.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // %[position$][-][width | * | *position$]type
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
                chars.next();
            }
            n
        };
        let mut position = None;
        let mut left = false;
        let mut width = None;
        let first = number(&mut chars);
        if first.is_some() && chars.peek() == Some(&'$') {
            chars.next();
            position = first;
        } else if first.is_some() {
            width = first;
        }
        if width.is_none() {
            while chars.peek() == Some(&'-') {
                chars.next();
                left = true;
            }
            if chars.peek() == Some(&'*') {
                chars.next();
                let at = match number(&mut chars) {
                    Some(p) if chars.peek() == Some(&'$') => {
                        chars.next();
                        p.checked_sub(1).ok_or_else(|| {
                            bad_format(
                                "format specifies argument 0, but arguments are numbered from 1",
                            )
                        })?
                    }
                    Some(_) => return Err(bad_format("unterminated format() type specifier")),
                    None => {
                        next_arg += 1;
                        next_arg - 1
                    }
                };
                let w = values
                    .get(at)
                    .ok_or_else(|| bad_format("too few arguments for format()"))?
                    .map(|v| v.trim().parse::<i64>())
                    .transpose()
                    .map_err(|_| bad_format("width argument must be an integer"))?
                    .unwrap_or(0);
                if w < 0 {
                    left = true;
                }
                width = Some(w.unsigned_abs() as usize);
            } else {
                width = number(&mut chars);
            }
        }
        let kind = chars
            .next()
            .ok_or_else(|| bad_format("unterminated format() type specifier"))?;
        let at = match position {
            Some(0) => {
                return Err(bad_format(
                    "format specifies argument 0, but arguments are numbered from 1",
                ))
            }
            Some(p) => {
                next_arg = p;
                p - 1
            }
            None => {
                next_arg += 1;
                next_arg - 1
            }
        };
        let value = *values
            .get(at)
            .ok_or_else(|| bad_format("too few arguments for format()"))?;
        let piece = match kind {
            's' => value.unwrap_or("").to_owned(),
            'I' => quote_ident(value.ok_or_else(|| {
                PgError::new(
                    SqlState::NULL_VALUE_NOT_ALLOWED,
                    "null values cannot be formatted as an SQL identifier",
                )
            })?),
            'L' => value.map_or_else(|| "NULL".to_owned(), super::catalog::quote_literal),
            other => {
                return Err(bad_format(&format!(
                    "unrecognized format() type specifier \"{other}\""
                )))
            }
        };
        let pad = width.unwrap_or(0).saturating_sub(piece.chars().count());
        if !left {
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(&piece);
        if left {
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    Ok(out)
}

/// Words PostgreSQL does not take as bare identifiers (its keywords other than the
/// unreserved ones).
const KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// An identifier as PostgreSQL's `quote_ident` writes it: bare when it is lower-case letters,
/// digits and underscores (not first a digit) and not a keyword; else in double quotes.
pub fn quote_ident(ident: &str) -> String {
    let bare = ident
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !KEYWORDS.contains(&ident);
    if bare {
        ident.to_owned()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_postgresql() {
        let v = [Some("one"), None, Some("Two Words")];
        assert_eq!(format_row("%s|%s|%I", &v).unwrap(), "one||\"Two Words\"");
        assert_eq!(format_row("%3$s %1$s %%", &v).unwrap(), "Two Words one %");
        assert_eq!(
            format_row("[%5s][%-5s]", &[Some("ab"), Some("cd")]).unwrap(),
            "[   ab][cd   ]"
        );
        assert_eq!(
            format_row("%L %L", &[Some("it's"), None]).unwrap(),
            "'it''s' NULL"
        );
        assert_eq!(
            format_row("[%*s]", &[Some("4"), Some("x")]).unwrap(),
            "[   x]"
        );
        assert!(format_row("%s %s", &[Some("a")]).is_err());
        assert!(format_row("%I", &[None]).is_err());
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_ident("plain_1"), "plain_1");
        assert_eq!(quote_ident("Mixed"), "\"Mixed\"");
    }
}
