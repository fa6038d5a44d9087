//! Arrays cast to text as PostgreSQL prints them: `{1,2,NULL}`, `{a,"b c","",\"q\"}`,
//! `{{1,2},{3,4}}`, booleans as `t`/`f`, timestamps in PostgreSQL's form. Arrow's cast gives
//! `[1, 2, ]`. [`crate::text_casts::TextCasts`] puts [`PgArrayText`] in place of such casts.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `pg_array_text(list)`: an array's PostgreSQL text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgArrayText {
    signature: Signature,
}

impl PgArrayText {
    pub fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(PgArrayText {
            signature: Signature::any(1, Volatility::Immutable),
        }))
    }
}

impl ScalarUDFImpl for PgArrayText {
    fn name(&self) -> &str {
        "pg_array_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let lists = args.args[0].to_array(if scalar { 1 } else { args.number_rows })?;
        let out = value_texts(&lists)?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// Each value's PostgreSQL text: an array's elements between braces, booleans as `t`/`f`,
/// timestamps, floats and intervals as PostgreSQL prints them.
pub fn value_texts(values: &ArrayRef) -> Result<ArrayRef> {
    if !crate::pg_array_in::is_list(values.data_type()) {
        return element_texts(values);
    }
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 8);
    for i in 0..values.len() {
        if values.is_null(i) {
            out.append_null();
        } else {
            let mut s = String::new();
            write_list(&values.slice(i, 1), 0, &mut s)?;
            out.append_value(s);
        }
    }
    Ok(Arc::new(out.finish()))
}

/// The elements of row `row` of list array `lists`, between braces.
fn write_list(lists: &ArrayRef, row: usize, s: &mut String) -> Result<()> {
    let values = match lists.data_type() {
        DataType::List(_) => lists.as_list::<i32>().value(row),
        DataType::LargeList(_) => lists.as_list::<i64>().value(row),
        _ => return Ok(()),
    };
    s.push('{');
    let nested = crate::pg_array_in::is_list(values.data_type());
    let texts = if nested {
        None
    } else {
        Some(element_texts(&values)?)
    };
    for j in 0..values.len() {
        if j > 0 {
            s.push(',');
        }
        if values.is_null(j) {
            s.push_str("NULL");
        } else if nested {
            write_list(&values, j, s)?;
        } else if let Some(texts) = &texts {
            quote_element(texts.as_string::<i32>().value(j), s);
        }
    }
    s.push('}');
    Ok(())
}

/// Each element's PostgreSQL text.
fn element_texts(values: &ArrayRef) -> Result<ArrayRef> {
    Ok(match values.data_type() {
        DataType::Boolean => Arc::new(
            values
                .as_boolean()
                .iter()
                .map(|b| b.map(|b| if b { "t" } else { "f" }))
                .collect::<datafusion::arrow::array::StringArray>(),
        ),
        t if crate::pg_text::has_text_form(t) => crate::pg_text::text_form(values),
        _ => datafusion::arrow::compute::cast(values, &DataType::Utf8)?,
    })
}

/// An element as PostgreSQL's array output writes it: double-quoted when empty, `NULL`
/// spelled out, or holding a delimiter, brace, quote, backslash or white space.
fn quote_element(e: &str, s: &mut String) {
    let needs = e.is_empty()
        || e.eq_ignore_ascii_case("null")
        || e.chars()
            .any(|c| matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace());
    if !needs {
        s.push_str(e);
        return;
    }
    s.push('"');
    for c in e.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanBuilder, Int32Builder, ListBuilder, StringBuilder};

    fn text(list: ArrayRef) -> String {
        let mut s = String::new();
        write_list(&list, 0, &mut s).unwrap();
        s
    }

    #[test]
    fn as_postgresql_prints_arrays() {
        let mut ints = ListBuilder::new(Int32Builder::new());
        ints.values().append_value(1);
        ints.values().append_null();
        ints.values().append_value(-3);
        ints.append(true);
        assert_eq!(text(Arc::new(ints.finish())), "{1,NULL,-3}");
        let mut strs = ListBuilder::new(StringBuilder::new());
        for v in ["a", "b c", "", "NULL", "q\"x", "{}"] {
            strs.values().append_value(v);
        }
        strs.append(true);
        assert_eq!(
            text(Arc::new(strs.finish())),
            r#"{a,"b c","","NULL","q\"x","{}"}"#
        );
        let mut bools = ListBuilder::new(BooleanBuilder::new());
        bools.values().append_value(true);
        bools.values().append_value(false);
        bools.append(true);
        assert_eq!(text(Arc::new(bools.finish())), "{t,f}");
        let mut nested = ListBuilder::new(ListBuilder::new(Int32Builder::new()));
        for row in [[1, 2], [3, 4]] {
            for v in row {
                nested.values().values().append_value(v);
            }
            nested.values().append(true);
        }
        nested.append(true);
        assert_eq!(text(Arc::new(nested.finish())), "{{1,2},{3,4}}");
        let mut empty = ListBuilder::new(Int32Builder::new());
        empty.append(true);
        assert_eq!(text(Arc::new(empty.finish())), "{}");
    }
}
