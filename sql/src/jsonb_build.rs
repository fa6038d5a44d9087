//! The `jsonb_*` functions that build or reshape documents: `jsonb_build_object`,
//! `jsonb_build_array`, `to_jsonb`, `jsonb_set`, `jsonb_strip_nulls`, `jsonb_pretty`,
//! `jsonb_extract_path[_text]`, and the element lists behind the set-returning
//! `jsonb_array_elements[_text]` and `jsonb_object_keys` (a call in a select list becomes
//! `unnest` of the list, see [`rewrite_set_returning`]). Values are PostgreSQL's text forms
//! ([`crate::pg_jsonb`]); results that are jsonb carry its column metadata.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast;
use freshet_common::{PgError, SqlState};

use crate::expand_array::unnest_of;
use crate::jsonb_functions::jsonb_field;
use crate::pg_jsonb::{self, Json, Step};
use crate::types::{sql_type_of, PG_TYPE_METADATA_KEY};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Build {
    Object,
    Array,
    To,
    Set,
    StripNulls,
    Pretty,
    ExtractPath,
    ExtractPathText,
    Elements,
    ElementsText,
    ObjectKeys,
    AggList,
    ObjectAggPairs,
}

impl Build {
    const ALL: [Build; 13] = [
        Build::Object,
        Build::Array,
        Build::To,
        Build::Set,
        Build::StripNulls,
        Build::Pretty,
        Build::ExtractPath,
        Build::ExtractPathText,
        Build::Elements,
        Build::ElementsText,
        Build::ObjectKeys,
        Build::AggList,
        Build::ObjectAggPairs,
    ];

    fn name(self) -> &'static str {
        match self {
            Build::Object => "jsonb_build_object",
            Build::Array => "jsonb_build_array",
            Build::To => "to_jsonb",
            Build::Set => "jsonb_set",
            Build::StripNulls => "jsonb_strip_nulls",
            Build::Pretty => "jsonb_pretty",
            Build::ExtractPath => "jsonb_extract_path",
            Build::ExtractPathText => "jsonb_extract_path_text",
            Build::Elements => "pg_jsonb_array_elements",
            Build::ElementsText => "pg_jsonb_array_elements_text",
            Build::ObjectKeys => "pg_jsonb_object_keys",
            Build::AggList => "pg_jsonb_agg_list",
            Build::ObjectAggPairs => "pg_jsonb_object_agg_pairs",
        }
    }

    fn returns(self) -> DataType {
        match self {
            Build::Elements | Build::ElementsText | Build::ObjectKeys => {
                DataType::List(Arc::new(self.element_field()))
            }
            _ => DataType::Utf8,
        }
    }

    /// The elements' field: text (`jsonb_array_elements` gives jsonb's text; DataFusion keeps
    /// no metadata on a list's items through a function's result).
    fn element_field(self) -> Field {
        Field::new("item", DataType::Utf8, true)
    }
}

/// The functions, to register.
pub fn udfs() -> Vec<ScalarUDF> {
    Build::ALL
        .into_iter()
        .map(|op| {
            ScalarUDF::new_from_impl(JsonbBuild {
                op,
                signature: Signature::variadic_any(Volatility::Immutable),
            })
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonbBuild {
    op: Build,
    signature: Signature,
}

impl ScalarUDFImpl for JsonbBuild {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.op.returns())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        let jsonb = matches!(
            self.op,
            Build::Object
                | Build::Array
                | Build::To
                | Build::Set
                | Build::StripNulls
                | Build::ExtractPath
                | Build::AggList
                | Build::ObjectAggPairs
        );
        Ok(Arc::new(if jsonb {
            jsonb_field(self.name())
        } else {
            Field::new(self.name(), self.op.returns(), true)
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let jsonb: Vec<bool> = args
            .arg_fields
            .iter()
            .map(|f| {
                f.metadata()
                    .get(PG_TYPE_METADATA_KEY)
                    .is_some_and(|k| k == "jsonb")
            })
            .collect();
        let value = |a: usize, row: usize| -> Result<ScalarValue> {
            let arr = &arrays[a];
            ScalarValue::try_from_array(arr, if arr.len() == 1 { 0 } else { row })
        };
        let out: ArrayRef = match self.op {
            Build::Elements | Build::ElementsText | Build::ObjectKeys => {
                let mut lists = ListBuilder::new(StringBuilder::new())
                    .with_field(Arc::new(self.op.element_field()));
                for row in 0..rows {
                    match document(&value(0, row)?)? {
                        None => lists.append_null(),
                        Some(doc) => {
                            for item in elements(self.op, &doc)? {
                                lists.values().append_option(item);
                            }
                            lists.append(true);
                        }
                    }
                }
                Arc::new(lists.finish())
            }
            _ => {
                let mut out = StringBuilder::new();
                for row in 0..rows {
                    let values = (0..arrays.len())
                        .map(|a| value(a, row))
                        .collect::<Result<Vec<_>>>()?;
                    out.append_option(self.compute(&values, &jsonb)?);
                }
                Arc::new(out.finish())
            }
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

impl JsonbBuild {
    /// One row's result (`None` for NULL).
    fn compute(&self, v: &[ScalarValue], jsonb: &[bool]) -> Result<Option<String>> {
        let arg = |i: usize| to_json(&v[i], jsonb.get(i).copied().unwrap_or(false));
        let canonical = |j: Json| -> Result<Option<String>> {
            Ok(Some(
                pg_jsonb::normalize(&pg_jsonb::to_text(&j)).map_err(pg)?,
            ))
        };
        match self.op {
            Build::Object => {
                if v.len() % 2 != 0 {
                    return Err(pg(PgError::new(
                        SqlState::INVALID_PARAMETER_VALUE,
                        "argument list must have even number of elements",
                    )));
                }
                let mut fields = Vec::with_capacity(v.len() / 2);
                for i in (0..v.len()).step_by(2) {
                    if v[i].is_null() {
                        return Err(pg(PgError::new(
                            SqlState::INVALID_PARAMETER_VALUE,
                            "argument 1: key must not be null",
                        )));
                    }
                    let key = match arg(i)? {
                        Json::String(s) => s,
                        other => pg_jsonb::as_text(&other).unwrap_or_default(),
                    };
                    fields.push((key, arg(i + 1)?));
                }
                canonical(Json::Object(fields))
            }
            Build::Array => canonical(Json::Array((0..v.len()).map(arg).collect::<Result<_>>()?)),
            Build::AggList | Build::ObjectAggPairs => aggregated(self.op, &v[0]),
            Build::To => match v.first() {
                None => Ok(None),
                Some(x) if x.is_null() => Ok(None),
                Some(_) => canonical(arg(0)?),
            },
            _ => {
                let Some(doc) = v.first().map(document).transpose()?.flatten() else {
                    return Ok(None);
                };
                self.reshape(doc, v)
            }
        }
    }

    fn reshape(&self, doc: Json, v: &[ScalarValue]) -> Result<Option<String>> {
        match self.op {
            Build::StripNulls => Ok(Some(pg_jsonb::to_text(&strip_nulls(doc)))),
            Build::Pretty => {
                let mut s = String::new();
                pretty(&doc, 0, &mut s);
                Ok(Some(s))
            }
            Build::ExtractPath | Build::ExtractPathText => {
                let mut at = Some(&doc);
                for step in &v[1..] {
                    let Some(key) = text_of(step) else {
                        return Ok(None);
                    };
                    at = at.and_then(|a| pg_jsonb::get(a, &Step::Key(key)));
                }
                Ok(match self.op {
                    Build::ExtractPath => at.map(pg_jsonb::to_text),
                    _ => at.and_then(pg_jsonb::as_text),
                })
            }
            Build::Set => {
                if v.len() < 3 || v.len() > 4 {
                    return Err(pg(PgError::new(
                        SqlState("42883"),
                        "function jsonb_set takes 3 or 4 arguments",
                    )));
                }
                let (Some(path), Some(new)) = (path_of(&v[1])?, document(&v[2])?) else {
                    return Ok(None);
                };
                let create = match &v.get(3) {
                    Some(ScalarValue::Boolean(b)) => b.unwrap_or(false),
                    _ => true,
                };
                let mut doc = doc;
                set_path(&mut doc, &path, new, create);
                Ok(Some(pg_jsonb::to_text(&doc)))
            }
            _ => Ok(None),
        }
    }
}

/// `jsonb_agg`'s and `jsonb_object_agg`'s results from what `array_agg` gathered (see
/// [`rewrite_calls`]): each value already jsonb text (`to_jsonb`), NULL a JSON null.
fn aggregated(op: Build, gathered: &ScalarValue) -> Result<Option<String>> {
    let ScalarValue::List(list) = gathered else {
        return Ok(None);
    };
    if list.is_null(0) {
        return Ok(None);
    }
    let items = list.value(0);
    let json = |text: Option<&str>| -> Result<Json> {
        text.map_or(Ok(Json::Null), |t| pg_jsonb::parse(t).map_err(pg))
    };
    let texts = |a: &ArrayRef| datafusion::arrow::compute::cast(a, &DataType::Utf8);
    let doc = if op == Build::AggList {
        let items = texts(&items)?;
        Json::Array(
            items
                .as_string::<i32>()
                .iter()
                .map(json)
                .collect::<Result<_>>()?,
        )
    } else {
        let Some(pairs) = items.as_struct_opt().filter(|p| p.num_columns() == 2) else {
            return Err(DataFusionError::Internal(format!(
                "jsonb_object_agg gathered {}",
                items.data_type()
            )));
        };
        let (keys, values) = (texts(pairs.column(0))?, texts(pairs.column(1))?);
        let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
        let mut fields = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            if keys.is_null(i) {
                return Err(pg(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    "field name must not be null",
                )));
            }
            let value = (!values.is_null(i)).then(|| values.value(i));
            fields.push((keys.value(i).to_owned(), json(value)?));
        }
        Json::Object(fields)
    };
    // Through the text again: jsonb's key order, the last of duplicate keys.
    Ok(Some(
        pg_jsonb::normalize(&pg_jsonb::to_text(&doc)).map_err(pg)?,
    ))
}

fn pg(e: PgError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A jsonb argument's document (`None` for NULL).
fn document(v: &ScalarValue) -> Result<Option<Json>> {
    match text_of(v) {
        None => Ok(None),
        Some(t) => pg_jsonb::parse(&t).map(Some).map_err(pg),
    }
}

fn text_of(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        other if other.is_null() => None,
        other => Some(other.to_string()),
    }
}

/// A `text[]` path argument (a list, or its text `'{a,0}'`).
fn path_of(v: &ScalarValue) -> Result<Option<Vec<String>>> {
    match v {
        ScalarValue::List(list) => {
            if list.is_null(0) {
                return Ok(None);
            }
            let items = datafusion::arrow::compute::cast(&list.value(0), &DataType::Utf8)?;
            Ok(Some(
                items
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.unwrap_or("").to_owned())
                    .collect(),
            ))
        }
        other => match text_of(other) {
            None => Ok(None),
            Some(t) => Ok(Some(
                crate::pg_array_in::parse(&t)
                    .map_err(pg)?
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect(),
            )),
        },
    }
}

/// A SQL value as JSON, as `to_jsonb` makes it.
fn to_json(v: &ScalarValue, jsonb: bool) -> Result<Json> {
    if v.is_null() {
        return Ok(Json::Null);
    }
    Ok(match v {
        ScalarValue::Boolean(Some(b)) => Json::Bool(*b),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            if jsonb {
                pg_jsonb::parse(s).map_err(pg)?
            } else {
                Json::String(s.clone())
            }
        }
        ScalarValue::Float32(Some(f)) => float(f64::from(*f), true),
        ScalarValue::Float64(Some(f)) => float(*f, false),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Decimal128(..) => pg_jsonb::parse(&v.to_string()).map_err(pg)?,
        ScalarValue::List(list) => {
            let items = list.value(0);
            let mut out = Vec::with_capacity(items.len());
            for i in 0..items.len() {
                out.push(to_json(&ScalarValue::try_from_array(&items, i)?, false)?);
            }
            Json::Array(out)
        }
        other => {
            return Err(pg(PgError::not_supported(format!(
                "a {} value in jsonb",
                sql_type_of(&Field::new("", other.data_type(), true))
                    .map(|t| t.pg_name())
                    .unwrap_or_else(|| other.data_type().to_string())
            ))))
        }
    })
}

/// A float as JSON: a number, or a string for NaN and the infinities (as PostgreSQL).
fn float(f: f64, real: bool) -> Json {
    let text = crate::pg_text::float_text(f, real);
    if f.is_finite() {
        Json::Number(text)
    } else {
        Json::String(text)
    }
}

fn elements(op: Build, doc: &Json) -> Result<Vec<Option<String>>> {
    let fail = |what: &str| {
        pg(PgError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            what.to_owned(),
        ))
    };
    match (op, doc) {
        (Build::Elements, Json::Array(items)) => {
            Ok(items.iter().map(|i| Some(pg_jsonb::to_text(i))).collect())
        }
        (Build::ElementsText, Json::Array(items)) => {
            Ok(items.iter().map(pg_jsonb::as_text).collect())
        }
        (Build::ObjectKeys, Json::Object(fields)) => {
            Ok(fields.iter().map(|(k, _)| Some(k.clone())).collect())
        }
        (Build::ObjectKeys, Json::Array(_)) => {
            Err(fail("cannot call jsonb_object_keys on an array"))
        }
        (Build::ObjectKeys, _) => Err(fail("cannot call jsonb_object_keys on a scalar")),
        (_, Json::Object(_)) => Err(fail("cannot extract elements from an object")),
        _ => Err(fail("cannot extract elements from a scalar")),
    }
}

fn strip_nulls(doc: Json) -> Json {
    match doc {
        Json::Object(fields) => Json::Object(
            fields
                .into_iter()
                .filter(|(_, v)| *v != Json::Null)
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// `jsonb_pretty`'s layout: one member per line, four spaces per level (an empty container
/// too spans two lines).
fn pretty(v: &Json, depth: usize, s: &mut String) {
    let pad = |d: usize, s: &mut String| s.push_str(&"    ".repeat(d));
    match v {
        Json::Array(items) => {
            s.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                pad(depth + 1, s);
                pretty(item, depth + 1, s);
                s.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            pad(depth, s);
            s.push(']');
        }
        Json::Object(fields) => {
            s.push_str("{\n");
            for (i, (k, item)) in fields.iter().enumerate() {
                pad(depth + 1, s);
                s.push_str(&pg_jsonb::to_text(&Json::String(k.clone())));
                s.push_str(": ");
                pretty(item, depth + 1, s);
                s.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
            }
            pad(depth, s);
            s.push('}');
        }
        other => s.push_str(&pg_jsonb::to_text(other)),
    }
}

/// `jsonb_set`: `new` at `path` in `doc`; a missing last key is added when `create`, a missing
/// step before it leaves `doc` as it was.
fn set_path(doc: &mut Json, path: &[String], new: Json, create: bool) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match doc {
        Json::Object(fields) => {
            let at = fields.iter().position(|(k, _)| k == first);
            match (at, rest.is_empty()) {
                (Some(i), true) => fields[i].1 = new,
                (Some(i), false) => set_path(&mut fields[i].1, rest, new, create),
                (None, true) if create => {
                    fields.push((first.clone(), new));
                    // Back to jsonb's key order.
                    if let Ok(sorted) =
                        pg_jsonb::parse(&pg_jsonb::to_text(&Json::Object(std::mem::take(fields))))
                    {
                        *doc = sorted;
                    }
                }
                _ => {}
            }
        }
        Json::Array(items) => {
            let Ok(i) = first.trim().parse::<i64>() else {
                return;
            };
            let len = items.len() as i64;
            let index = if i < 0 { len + i } else { i };
            if (0..len).contains(&index) {
                let slot = &mut items[index as usize];
                if rest.is_empty() {
                    *slot = new;
                } else {
                    set_path(slot, rest, new, create);
                }
            } else if rest.is_empty() && create {
                if index < 0 {
                    items.insert(0, new);
                } else {
                    items.push(new);
                }
            }
        }
        _ => {}
    }
}

/// Whether `lower` (a statement in lower case) may call one of the functions
/// [`rewrite_calls`] rewrites.
pub fn mentions(lower: &str) -> bool {
    [
        "jsonb_array_elements",
        "jsonb_object_keys",
        "jsonb_agg",
        "jsonb_object_agg",
    ]
    .iter()
    .any(|f| lower.contains(f))
}

/// Calls planned through other functions:
/// - `jsonb_array_elements(x)`, `jsonb_array_elements_text(x)` and `jsonb_object_keys(x)` in a
///   select list as `unnest` of the element list, one row each, as PostgreSQL's
///   set-returning functions give them;
/// - `jsonb_agg(x …)` as `pg_jsonb_agg_list(array_agg(to_jsonb(x) …))` and
///   `jsonb_object_agg(k, v …)` as `pg_jsonb_object_agg_pairs(array_agg(named_struct('k',
///   k::text, 'v', to_jsonb(v)) …))`, keeping `DISTINCT`, `ORDER BY`, `FILTER` and `OVER`
///   (so they run wherever `array_agg` does, materialized views included).
pub fn rewrite_calls(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Function(f) = e {
            let name = f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_ascii_lowercase());
            let replacement = match name.as_deref() {
                Some("jsonb_array_elements") => Some(unnest_of(f, "pg_jsonb_array_elements")),
                Some("jsonb_array_elements_text") => {
                    Some(unnest_of(f, "pg_jsonb_array_elements_text"))
                }
                Some("jsonb_object_keys") => Some(unnest_of(f, "pg_jsonb_object_keys")),
                Some("jsonb_agg") => aggregate(f, false),
                Some("jsonb_object_agg") => aggregate(f, true),
                _ => None,
            };
            if let Some(r) = replacement {
                *e = r;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// A plain call `name(args)`.
fn call(name: &str, args: Vec<ast::Expr>) -> ast::Expr {
    ast::Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `jsonb_agg` / `jsonb_object_agg` (`pairs`) call `f` over `array_agg` (`None` when its
/// arguments are not one value, or a key and a value).
fn aggregate(f: &ast::Function, pairs: bool) -> Option<ast::Expr> {
    let ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let values: Vec<ast::Expr> = list
        .args
        .iter()
        .map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) => Some(x.clone()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let text = |s: &str| ast::Expr::value(ast::Value::SingleQuotedString(s.to_owned()));
    let gathered = match (pairs, values.as_slice()) {
        (false, [x]) => call("to_jsonb", vec![x.clone()]),
        (true, [k, v]) => call(
            "named_struct",
            vec![
                text("k"),
                ast::Expr::Cast {
                    kind: ast::CastKind::DoubleColon,
                    expr: Box::new(k.clone()),
                    data_type: ast::DataType::Text,
                    array: false,
                    format: None,
                },
                text("v"),
                call("to_jsonb", vec![v.clone()]),
            ],
        ),
        _ => return None,
    };
    let mut agg = f.clone();
    agg.name = ast::ObjectName::from(vec![ast::Ident::new("array_agg")]);
    agg.args = ast::FunctionArguments::List(ast::FunctionArgumentList {
        duplicate_treatment: list.duplicate_treatment,
        args: vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(
            gathered,
        ))],
        clauses: list.clauses.clone(),
    });
    let finish = if pairs {
        "pg_jsonb_object_agg_pairs"
    } else {
        "pg_jsonb_agg_list"
    };
    Some(call(finish, vec![ast::Expr::Function(agg)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(doc: &str, path: &[&str], new: &str, create: bool) -> String {
        let mut d = pg_jsonb::parse(doc).unwrap();
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        set_path(&mut d, &path, pg_jsonb::parse(new).unwrap(), create);
        pg_jsonb::to_text(&d)
    }

    #[test]
    fn jsonb_set_as_postgresql() {
        assert_eq!(set(r#"{"a": 1}"#, &["b"], "2", true), r#"{"a": 1, "b": 2}"#);
        assert_eq!(set(r#"{"a": 1}"#, &["b"], "2", false), r#"{"a": 1}"#);
        assert_eq!(
            set(r#"{"a": [1, 2]}"#, &["a", "-1"], "9", true),
            r#"{"a": [1, 9]}"#
        );
        assert_eq!(
            set(r#"{"a": [1, 2]}"#, &["a", "5"], "9", true),
            r#"{"a": [1, 2, 9]}"#
        );
        assert_eq!(
            set(r#"{"a": [1, 2]}"#, &["a", "-5"], "9", true),
            r#"{"a": [9, 1, 2]}"#
        );
        assert_eq!(set(r#"{"a": 1}"#, &["x", "y"], "2", true), r#"{"a": 1}"#);
    }

    #[test]
    fn pretty_as_postgresql() {
        let mut s = String::new();
        pretty(
            &pg_jsonb::parse(r#"{"a": [1, {}], "b": []}"#).unwrap(),
            0,
            &mut s,
        );
        assert_eq!(
            s,
            "{\n    \"a\": [\n        1,\n        {\n        }\n    ],\n    \"b\": [\n    ]\n}"
        );
    }
}
