//! `jsonb` in SQL: casts (`'…'::jsonb`, `::json`), the operators `->`, `->>`, `#>`, `#>>`,
//! `@>`, `<@`, `?`, `?|`, `?&`, and `jsonb_typeof` / `jsonb_array_length`, over values kept
//! as text ([`crate::pg_jsonb`]). Results that are jsonb carry the column metadata that makes
//! them jsonb on the wire. The operators are planned by [`JsonbOperators`] when their left
//! side is text (a jsonb column or value); array containment keeps DataFusion's planning.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Int32Builder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{self, BinaryOperator};

use crate::pg_jsonb::{self, Json, Step};
use crate::types::PG_TYPE_METADATA_KEY;

/// What a jsonb function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `jsonb` input: the text in canonical form.
    In,
    /// `json` input: the text as written, once it is valid.
    JsonIn,
    /// `jsonb` to text: the same text.
    Text,
    Get,
    GetText,
    Path,
    PathText,
    Contains,
    ContainedIn,
    HasKey,
    HasAnyKey,
    HasAllKeys,
    TypeOf,
    ArrayLength,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::In => "pg_jsonb_in",
            Op::JsonIn => "pg_json_in",
            Op::Text => "pg_jsonb_text",
            Op::Get => "jsonb_object_field",
            Op::GetText => "jsonb_object_field_text",
            Op::Path => "jsonb_extract_path_op",
            Op::PathText => "jsonb_extract_path_text_op",
            Op::Contains => "jsonb_contains",
            Op::ContainedIn => "jsonb_contained",
            Op::HasKey => "jsonb_exists",
            Op::HasAnyKey => "jsonb_exists_any",
            Op::HasAllKeys => "jsonb_exists_all",
            Op::TypeOf => "jsonb_typeof",
            Op::ArrayLength => "jsonb_array_length",
        }
    }

    fn arity(self) -> usize {
        match self {
            Op::In | Op::JsonIn | Op::Text | Op::TypeOf | Op::ArrayLength => 1,
            _ => 2,
        }
    }

    fn returns(self) -> DataType {
        match self {
            Op::Contains | Op::ContainedIn | Op::HasKey | Op::HasAnyKey | Op::HasAllKeys => {
                DataType::Boolean
            }
            Op::ArrayLength => DataType::Int32,
            _ => DataType::Utf8,
        }
    }

    fn returns_jsonb(self) -> bool {
        matches!(self, Op::In | Op::Get | Op::Path)
    }
}

/// The function computing `op`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonbFn {
    op: Op,
    signature: Signature,
}

impl JsonbFn {
    pub fn udf(op: Op) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(JsonbFn {
            op,
            signature: Signature::any(op.arity(), Volatility::Immutable),
        }))
    }

    /// The functions called by name (the casts' too).
    pub fn named() -> Vec<Arc<ScalarUDF>> {
        [
            Op::In,
            Op::JsonIn,
            Op::TypeOf,
            Op::ArrayLength,
            Op::Contains,
            Op::ContainedIn,
            Op::HasKey,
        ]
        .into_iter()
        .map(Self::udf)
        .collect()
    }
}

/// The field of a jsonb value (text marked as jsonb).
pub fn jsonb_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true).with_metadata(HashMap::from([(
        PG_TYPE_METADATA_KEY.to_owned(),
        "jsonb".to_owned(),
    )]))
}

impl ScalarUDFImpl for JsonbFn {
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
        Ok(Arc::new(if self.op.returns_jsonb() {
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
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let docs = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let docs = docs.as_string::<i32>();
        let out = evaluate(self.op, docs, arrays.get(1), rows)?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

fn external(e: freshet_common::PgError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The right operand of row `i` as path steps (a text array literal or a list), or keys.
fn steps(right: &ArrayRef, i: usize) -> Result<Option<Vec<String>>> {
    if right.is_null(i) {
        return Ok(None);
    }
    Ok(Some(match right.data_type() {
        DataType::List(_) => {
            let items = right.as_list::<i32>().value(i);
            let items = datafusion::arrow::compute::cast(&items, &DataType::Utf8)?;
            items
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or("").to_owned())
                .collect()
        }
        _ => {
            let text = datafusion::arrow::compute::cast(right, &DataType::Utf8)?;
            let text = text.as_string::<i32>().value(i);
            crate::pg_array_in::parse(text)
                .map_err(external)?
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect()
        }
    }))
}

fn evaluate(
    op: Op,
    docs: &datafusion::arrow::array::StringArray,
    right: Option<&ArrayRef>,
    rows: usize,
) -> Result<ArrayRef> {
    let parsed = |i: usize| -> Result<Option<Json>> {
        if docs.is_null(i) {
            return Ok(None);
        }
        pg_jsonb::parse(docs.value(i)).map(Some).map_err(external)
    };
    match op {
        Op::Text => Ok(Arc::new(docs.clone())),
        Op::In | Op::JsonIn => {
            let mut out = StringBuilder::with_capacity(rows, rows * 16);
            for i in 0..rows {
                match parsed(i)? {
                    None => out.append_null(),
                    Some(v) if op == Op::In => out.append_value(pg_jsonb::to_text(&v)),
                    Some(_) => out.append_value(docs.value(i)),
                }
            }
            Ok(Arc::new(out.finish()))
        }
        Op::Get | Op::GetText | Op::Path | Op::PathText => {
            let right = right.ok_or_else(|| DataFusionError::Internal("jsonb operator".into()))?;
            let mut out = StringBuilder::with_capacity(rows, rows * 8);
            for i in 0..rows {
                let (Some(v), false) = (parsed(i)?, right.is_null(i)) else {
                    out.append_null();
                    continue;
                };
                let path: Vec<Step> = if matches!(op, Op::Get | Op::GetText) {
                    vec![single_step(right, i)?]
                } else {
                    steps(right, i)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(Step::Key)
                        .collect()
                };
                let mut at = Some(&v);
                for step in &path {
                    at = at.and_then(|a| pg_jsonb::get(a, step));
                }
                let text = match op {
                    Op::Get | Op::Path => at.map(pg_jsonb::to_text),
                    _ => at.and_then(pg_jsonb::as_text),
                };
                out.append_option(text);
            }
            Ok(Arc::new(out.finish()))
        }
        Op::Contains | Op::ContainedIn | Op::HasKey | Op::HasAnyKey | Op::HasAllKeys => {
            let right = right.ok_or_else(|| DataFusionError::Internal("jsonb operator".into()))?;
            let texts = datafusion::arrow::compute::cast(right, &DataType::Utf8).ok();
            let mut out = BooleanBuilder::with_capacity(rows);
            for i in 0..rows {
                let Some(v) = parsed(i)? else {
                    out.append_null();
                    continue;
                };
                if right.is_null(i) {
                    out.append_null();
                    continue;
                }
                let answer = match op {
                    Op::Contains | Op::ContainedIn => {
                        let texts = texts
                            .as_ref()
                            .ok_or_else(|| DataFusionError::Internal("jsonb".into()))?;
                        let other =
                            pg_jsonb::parse(texts.as_string::<i32>().value(i)).map_err(external)?;
                        if op == Op::Contains {
                            pg_jsonb::contains(&v, &other)
                        } else {
                            pg_jsonb::contains(&other, &v)
                        }
                    }
                    Op::HasKey => {
                        let texts = texts
                            .as_ref()
                            .ok_or_else(|| DataFusionError::Internal("jsonb".into()))?;
                        pg_jsonb::has_key(&v, texts.as_string::<i32>().value(i))
                    }
                    _ => {
                        let keys = steps(right, i)?.unwrap_or_default();
                        if op == Op::HasAnyKey {
                            keys.iter().any(|k| pg_jsonb::has_key(&v, k))
                        } else {
                            keys.iter().all(|k| pg_jsonb::has_key(&v, k))
                        }
                    }
                };
                out.append_value(answer);
            }
            Ok(Arc::new(out.finish()))
        }
        Op::TypeOf => {
            let mut out = StringBuilder::with_capacity(rows, rows * 6);
            for i in 0..rows {
                out.append_option(parsed(i)?.map(|v| pg_jsonb::type_name(&v)));
            }
            Ok(Arc::new(out.finish()))
        }
        Op::ArrayLength => {
            let mut out = Int32Builder::with_capacity(rows);
            for i in 0..rows {
                match parsed(i)? {
                    None => out.append_null(),
                    Some(Json::Array(items)) => out.append_value(items.len() as i32),
                    Some(other) => {
                        let what = if matches!(other, Json::Object(_)) {
                            "a non-array"
                        } else {
                            "a scalar"
                        };
                        return Err(external(freshet_common::PgError::new(
                            freshet_common::SqlState("22023"),
                            format!("cannot get array length of {what}"),
                        )));
                    }
                }
            }
            Ok(Arc::new(out.finish()))
        }
    }
}

/// The one step of `->`: an integer is an array index, text an object key.
fn single_step(right: &ArrayRef, i: usize) -> Result<Step> {
    if right.data_type().is_integer() {
        let v = datafusion::arrow::compute::cast(right, &DataType::Int64)?;
        return Ok(Step::Index(
            v.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(i),
        ));
    }
    let text = datafusion::arrow::compute::cast(right, &DataType::Utf8)?;
    Ok(Step::Key(text.as_string::<i32>().value(i).to_owned()))
}

/// Plans the jsonb operators over text.
#[derive(Debug, Default)]
pub struct JsonbOperators;

impl ExprPlanner for JsonbOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let text = |e: &Expr| {
            matches!(
                e.get_type(schema),
                Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null)
            )
        };
        let op = match expr.op {
            BinaryOperator::Arrow => Op::Get,
            BinaryOperator::LongArrow => Op::GetText,
            BinaryOperator::HashArrow => Op::Path,
            BinaryOperator::HashLongArrow => Op::PathText,
            BinaryOperator::Question => Op::HasKey,
            BinaryOperator::QuestionPipe => Op::HasAnyKey,
            BinaryOperator::QuestionAnd => Op::HasAllKeys,
            BinaryOperator::AtArrow if text(&expr.right) => Op::Contains,
            BinaryOperator::ArrowAt if text(&expr.right) => Op::ContainedIn,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        if !text(&expr.left) {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(JsonbFn::udf(op), vec![expr.left, expr.right]),
        )))
    }
}

/// `x::jsonb` / `CAST(x AS JSON)` / `x::uuid` → `pg_jsonb_in(x)` / `pg_json_in(x)` /
/// `pg_uuid_in(x)` ([`crate::pg_uuid`]), before planning.
pub fn rewrite_casts(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Cast {
            expr, data_type, ..
        } = e
        {
            let name = match data_type {
                ast::DataType::JSONB => "pg_jsonb_in",
                ast::DataType::JSON => "pg_json_in",
                ast::DataType::Uuid => "pg_uuid_in",
                _ => return ControlFlow::<()>::Continue(()),
            };
            let inner = std::mem::replace(expr.as_mut(), ast::Expr::value(ast::Value::Null));
            *e = ast::Expr::Function(ast::Function {
                name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
                uses_odbc_syntax: false,
                parameters: ast::FunctionArguments::None,
                args: ast::FunctionArguments::List(ast::FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(inner))],
                    clauses: vec![],
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: vec![],
            });
        }
        ControlFlow::<()>::Continue(())
    });
}
