//! PostgreSQL's text form of arrays as input: `'{1,2,NULL}'::int[]`, `'{"a b","c\"d"}'::text[]`.
//! Arrow casts text to a list by casting the whole text to one element; [`crate::text_casts::TextCasts`]
//! routes such casts through `pg_array_in`, which splits the text into its elements (text),
//! and Arrow then casts the elements to the element type.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast;
use freshet_common::{PgError, SqlState};

/// `pg_array_in(text)`: the elements of an array's text form, as text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgArrayIn {
    signature: Signature,
}

impl PgArrayIn {
    pub fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(PgArrayIn {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }))
    }

    /// The type it returns: a list of text.
    pub fn return_type() -> DataType {
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
    }
}

impl ScalarUDFImpl for PgArrayIn {
    fn name(&self) -> &str {
        "pg_array_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(Self::return_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let texts = args.args[0].to_array(args.number_rows)?;
        let mut out = ListBuilder::new(StringBuilder::new());
        for text in texts.as_string::<i32>().iter() {
            match text {
                None => out.append_null(),
                Some(t) => {
                    let elements = parse(t).map_err(|e| DataFusionError::External(Box::new(e)))?;
                    for e in elements {
                        out.values().append_option(e);
                    }
                    out.append(true);
                }
            }
        }
        let list = out.finish();
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&list, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(list))
        })
    }
}

/// The elements of a one-dimensional array literal; `None` for an unquoted NULL.
pub fn parse(text: &str) -> Result<Vec<Option<String>>, PgError> {
    let malformed = |detail: &str| {
        PgError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("malformed array literal: \"{text}\""),
        )
        .with_detail(detail.to_owned())
    };
    let body = text
        .trim()
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| malformed("Array value must start with \"{\" or dimension information."))?;
    let mut out = Vec::new();
    if body.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = body.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let element = if chars.next_if_eq(&'"').is_some() {
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => s.push(
                        chars
                            .next()
                            .ok_or_else(|| malformed("Unexpected end of input."))?,
                    ),
                    Some(c) => s.push(c),
                    None => return Err(malformed("Unexpected end of input.")),
                }
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            Some(s)
        } else {
            let mut s = String::new();
            while let Some(c) = chars.next_if(|c| *c != ',') {
                match c {
                    '{' | '}' | '"' => {
                        return Err(if c == '{' {
                            PgError::not_supported("multidimensional array literal")
                        } else {
                            malformed("Unexpected array element.")
                        })
                    }
                    '\\' => s.push(
                        chars
                            .next()
                            .ok_or_else(|| malformed("Unexpected end of input."))?,
                    ),
                    c => s.push(c),
                }
            }
            let s = s.trim_end().to_owned();
            if s.is_empty() {
                return Err(malformed("Unexpected \",\" character."));
            }
            (!s.eq_ignore_ascii_case("null")).then_some(s)
        };
        out.push(element);
        match chars.next() {
            None => return Ok(out),
            Some(',') => {}
            Some(_) => return Err(malformed("Unexpected array element.")),
        }
    }
}

/// `'{…}'::T[]` → `CAST(pg_array_in('{…}') AS T[])` for every string literal cast to an array
/// type, before planning: DataFusion folds constant casts (in table function arguments too)
/// with Arrow's cast, which would read the whole text as one element.
pub fn rewrite_literals(sql: &str, stmts: &mut [ast::Statement]) {
    if !sql.contains("[]") {
        return;
    }
    for stmt in stmts {
        let _ = ast::visit_expressions_mut(stmt, |e| {
            if let ast::Expr::Cast {
                expr,
                data_type: ast::DataType::Array(_),
                ..
            } = e
            {
                if matches!(
                    &**expr,
                    ast::Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_))
                ) {
                    let literal =
                        std::mem::replace(&mut **expr, ast::Expr::value(ast::Value::Null));
                    **expr = ast::Expr::Function(ast::Function {
                        name: ast::ObjectName::from(vec![ast::Ident::new("pg_array_in")]),
                        uses_odbc_syntax: false,
                        parameters: ast::FunctionArguments::None,
                        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
                            duplicate_treatment: None,
                            args: vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(
                                literal,
                            ))],
                            clauses: vec![],
                        }),
                        filter: None,
                        null_treatment: None,
                        over: None,
                        within_group: vec![],
                    });
                }
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
}

/// Whether `t` is a list type a text can be cast to through `pg_array_in`.
pub fn is_list(t: &DataType) -> bool {
    matches!(t, DataType::List(_) | DataType::LargeList(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_as_postgresql_reads_them() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(parse("{}").unwrap(), vec![]);
        assert_eq!(parse("{1, 2 ,3}").unwrap(), vec![s("1"), s("2"), s("3")]);
        assert_eq!(
            parse("{a=1,NULL,null}").unwrap(),
            vec![s("a=1"), None, None]
        );
        assert_eq!(
            parse(r#"{"a b","c\"d","NULL",e\,f}"#).unwrap(),
            vec![s("a b"), s("c\"d"), s("NULL"), s("e,f")]
        );
        for bad in ["1,2", "{1,,2}", "{\"a}", "{a\"b}", "{1}x"] {
            assert_eq!(
                parse(bad).unwrap_err().sqlstate,
                SqlState::INVALID_TEXT_REPRESENTATION,
                "{bad}"
            );
        }
        assert_eq!(parse("{{1},{2}}").unwrap_err().sqlstate, SqlState("0A000"));
    }
}
