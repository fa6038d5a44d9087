//! PostgreSQL's names for result columns.
//!
//! DataFusion names an unaliased output column after its whole expression (`count(*)`,
//! `Int64(1)`, `t.a + Int64(1)`); PostgreSQL names it after the column it reads, the function
//! it calls, or `?column?`. Clients show these names as headers and drivers key rows by them.

use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::sqlparser::ast;

/// Prefix of the aliases [`alias_output_columns`] gives: such a column is named after its
/// expression.
pub const OUTPUT_ALIAS: &str = "__freshet_out_";

/// Gives each unaliased output column of a plain `SELECT` an alias of its own, so that
/// DataFusion plans columns PostgreSQL names alike (`SELECT id, id::text`, `SELECT *, id`);
/// [`pg_output_names`] still names them as PostgreSQL does. Whether anything changed.
pub fn alias_output_columns(stmt: &mut ast::Statement) -> bool {
    let ast::Statement::Query(q) = stmt else {
        return false;
    };
    let ast::SetExpr::Select(select) = q.body.as_mut() else {
        return false;
    };
    let mut changed = false;
    // Output names ORDER BY may sort by, and what they are called now.
    let mut renamed: Vec<(String, String)> = Vec::new();
    for (i, item) in select.projection.iter_mut().enumerate() {
        let (expr, alias) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e.clone(), format!("{OUTPUT_ALIAS}{i}")),
            ast::SelectItem::ExprWithAlias { expr, alias } => {
                let name = format!("{OUTPUT_ALIAS}{i}:{}", alias.value);
                renamed.push((crate::words::ident(alias), name.clone()));
                (expr.clone(), name)
            }
            _ => continue,
        };
        *item = ast::SelectItem::ExprWithAlias {
            expr,
            alias: ast::Ident::with_quote('"', alias),
        };
        changed = true;
    }
    if let Some(ast::OrderBy {
        kind: ast::OrderByKind::Expressions(items),
        ..
    }) = q.order_by.as_mut()
    {
        for item in items {
            if let ast::Expr::Identifier(id) = &mut item.expr {
                let name = crate::words::ident(id);
                if let Some((_, new)) = renamed.iter().find(|(old, _)| *old == name) {
                    *id = ast::Ident::with_quote('"', new.clone());
                }
            }
        }
    }
    changed
}

/// The PostgreSQL name of each output column of `plan`.
pub fn pg_output_names(plan: &LogicalPlan) -> Vec<String> {
    let fields: Vec<String> = plan
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    match top_projection(plan) {
        Some(exprs) if exprs.len() == fields.len() => exprs.iter().map(expr_name).collect(),
        _ => fields.iter().map(|n| name_from_display(n)).collect(),
    }
}

/// The projection that produces `plan`'s columns, through nodes that keep them.
fn top_projection(plan: &LogicalPlan) -> Option<&[Expr]> {
    match plan {
        LogicalPlan::Projection(p) => Some(&p.expr),
        LogicalPlan::Sort(s) => top_projection(&s.input),
        LogicalPlan::Limit(l) => top_projection(&l.input),
        LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(input)) => {
            top_projection(input)
        }
        _ => None,
    }
}

fn expr_name(e: &Expr) -> String {
    match e {
        // DataFusion aliases what it names after the expression (an aggregate's output is
        // `count(*)`); such names hold parentheses, a user's alias rarely does.
        Expr::Alias(a) if a.name.starts_with(OUTPUT_ALIAS) => match a.name.split_once(':') {
            Some((_, given)) => given.to_owned(),
            None => expr_name(&a.expr),
        },
        Expr::Alias(a) if a.name.contains('(') => name_from_display(&a.name),
        Expr::Alias(a) => a.name.clone(),
        Expr::Column(c) => name_from_display(&c.name),
        // `(col).field` and `col['field']` are named after the field, as in PostgreSQL.
        Expr::ScalarFunction(f) if f.func.name() == "get_field" => match f.args.get(1) {
            Some(Expr::Literal(datafusion::scalar::ScalarValue::Utf8(Some(name)), _)) => {
                name.clone()
            }
            _ => f.func.name().to_ascii_lowercase(),
        },
        // Casts read through our functions are named after their type, as PostgreSQL names a cast.
        Expr::ScalarFunction(f) => match f.func.name() {
            "pg_jsonb_in" => "jsonb".to_owned(),
            "pg_json_in" => "json".to_owned(),
            "pg_uuid_in" => "uuid".to_owned(),
            "pg_jsonb_agg_list" => "jsonb_agg".to_owned(),
            "pg_jsonb_object_agg_pairs" => "jsonb_object_agg".to_owned(),
            other => other.to_ascii_lowercase(),
        },
        Expr::AggregateFunction(f) => f.func.name().to_ascii_lowercase(),
        Expr::WindowFunction(f) => f.fun.name().to_ascii_lowercase(),
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Literal(..) => type_of_cast(c.field.data_type()),
            inner => expr_name(inner),
        },
        Expr::TryCast(c) => expr_name(&c.expr),
        Expr::Case(_) => "case".to_owned(),
        _ => "?column?".to_owned(),
    }
}

fn type_of_cast(dt: &datafusion::arrow::datatypes::DataType) -> String {
    use datafusion::arrow::datatypes::DataType as D;
    match dt {
        D::Int16 => "int2",
        D::Int32 => "int4",
        D::Int64 => "int8",
        D::Float32 => "float4",
        D::Float64 => "float8",
        D::Utf8 | D::LargeUtf8 | D::Utf8View => "text",
        D::Boolean => "bool",
        D::Date32 => "date",
        D::Decimal128(..) => "numeric",
        D::Timestamp(_, None) => "timestamp",
        D::Timestamp(_, Some(_)) => "timestamptz",
        D::Interval(_) => "interval",
        D::Binary => "bytea",
        D::Time64(_) => "time",
        _ => "?column?",
    }
    .to_owned()
}

/// A name from DataFusion's display of an expression (the column of an aggregate or window
/// output): `count(*)` → `count`; plain names stay; anything else is `?column?`.
fn name_from_display(name: &str) -> String {
    if let Some((func, _)) = name.split_once('(') {
        let lower = func.to_ascii_lowercase();
        if !func.is_empty()
            && func.chars().all(|c| c.is_alphanumeric() || c == '_')
            && !is_literal_type(func)
        {
            return if lower == "cast" || lower == "try_cast" {
                "?column?".to_owned()
            } else {
                lower
            };
        }
        return "?column?".to_owned();
    }
    if name.contains(|c: char| " +-*/%|<>=!".contains(c)) {
        return "?column?".to_owned();
    }
    name.to_owned()
}

/// DataFusion displays literals as `Type(value)`.
fn is_literal_type(s: &str) -> bool {
    matches!(
        s,
        "Int8"
            | "Int16"
            | "Int32"
            | "Int64"
            | "UInt8"
            | "UInt16"
            | "UInt32"
            | "UInt64"
            | "Float16"
            | "Float32"
            | "Float64"
            | "Utf8"
            | "LargeUtf8"
            | "Utf8View"
            | "Boolean"
            | "Decimal128"
            | "Date32"
            | "TimestampMicrosecond"
            | "TimestampNanosecond"
            | "IntervalMonthDayNano"
            | "Binary"
    )
}

#[cfg(test)]
mod tests {
    use super::name_from_display;

    #[test]
    fn names_from_display() {
        assert_eq!(name_from_display("count(*)"), "count");
        assert_eq!(name_from_display("sum(t.v)"), "sum");
        assert_eq!(name_from_display("Int64(1)"), "?column?");
        assert_eq!(name_from_display("t.a + Int64(1)"), "?column?");
        assert_eq!(name_from_display("amount"), "amount");
    }
}
