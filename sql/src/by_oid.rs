//! Catalog functions PostgreSQL calls with an OID, given what the server's functions of the
//! same names take instead, looked up by that OID in the catalogs:
//! - the size functions (`pg_table_size(c.oid)`, what psql's `\dt+` prints): the argument of
//!   `pg_table_size`, `pg_relation_size` (its fork dropped), `pg_total_relation_size` and
//!   `pg_indexes_size` becomes the relation's name (or the text given,
//!   `pg_total_relation_size('t')`);
//! - `pg_get_function_result(p.oid)` and `pg_get_function_arguments(p.oid)` (psql's `\df`):
//!   the function's return type OID and argument type OIDs;
//! - `oid::regtype::text` and `oids::regtype[]`: the types' names; `oid::regclass::text`:
//!   the relation's name.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::ast::VisitMut;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

/// Whether `lower` (a statement in lower case) may call one of them.
pub fn mentions(lower: &str) -> bool {
    lower.contains("_size(")
        || lower.contains("pg_get_function_")
        || lower.contains("regtype")
        || lower.contains("regclass")
}

pub fn rewrite(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let Some(replacement) = replacement(e)
            .or_else(|| regtype_text(e))
            .or_else(|| regtype_array(e))
        {
            *e = replacement;
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = stmt.visit(&mut SelectLists);
}

/// Rewrites `oid::regclass::text` where it is a whole item of a select list only: its lookup
/// is a scalar subquery, which DataFusion takes there but not inside `CASE`, in `ORDER BY` or
/// in join conditions (where the OID's digits stand in for the name).
struct SelectLists;

impl ast::VisitorMut for SelectLists {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        if let ast::SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                // A column the cast alone makes keeps PostgreSQL's name: its operand's.
                if let ast::SelectItem::UnnamedExpr(e) = item {
                    if let Some(name) = regclass_text(e).and_then(|_| operand_name(e)) {
                        let expr = std::mem::replace(e, ast::Expr::value(ast::Value::Null));
                        *item = ast::SelectItem::ExprWithAlias {
                            expr,
                            alias: ast::Ident::new(name),
                        };
                    }
                }
                if let ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } = item {
                    if let Some(replacement) = regclass_text(e) {
                        *e = replacement;
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `x::regtype::text` (pgcli's `atttypid::regtype::text`): the type's name, as PostgreSQL's
/// regtype prints it, where the OID would otherwise read as a number.
fn regtype_text(e: &ast::Expr) -> Option<ast::Expr> {
    let (oid, inner, outer) = cast_of_cast(e)?;
    let ast::DataType::Custom(name, _) = inner else {
        return None;
    };
    (named(name, "regtype") && textual(outer))
        .then(|| parse(&format!("pg_regtype_text({oid})")))?
}

/// `x::inner::outer` as (`x`, `inner`, `outer`).
fn cast_of_cast(e: &ast::Expr) -> Option<(&ast::Expr, &ast::DataType, &ast::DataType)> {
    let ast::Expr::Cast {
        expr, data_type: outer, ..
    } = e
    else {
        return None;
    };
    let ast::Expr::Cast {
        expr: operand,
        data_type: inner,
        ..
    } = expr.as_ref()
    else {
        return None;
    };
    Some((operand, inner, outer))
}

/// `oid::regclass::text`: the relation's name as `regclass` prints it (qualified when not
/// in `public` or `pg_catalog`), where the OID would otherwise read as a number. A text
/// operand (`'t'::regclass`) has become a lookup of its OID already.
fn regclass_text(e: &ast::Expr) -> Option<ast::Expr> {
    let (oid, inner, outer) = cast_of_cast(e)?;
    let regclass = match inner {
        ast::DataType::Regclass => true,
        ast::DataType::Custom(name, _) => named(name, "regclass"),
        _ => false,
    };
    if !(textual(outer) && regclass) {
        return None;
    }
    parse(&format!(
        "(SELECT CASE WHEN rt_n.nspname IN ('public', 'pg_catalog') THEN quote_ident(rt_c.relname) \
         ELSE quote_ident(rt_n.nspname) || '.' || quote_ident(rt_c.relname) END \
         FROM pg_catalog.pg_class AS rt_c JOIN pg_catalog.pg_namespace AS rt_n \
         ON rt_n.oid = rt_c.relnamespace WHERE rt_c.oid = ({oid}))"
    ))
}

/// The column name PostgreSQL gives `x::regclass::text`: `x`'s when it is a column.
fn operand_name(e: &ast::Expr) -> Option<String> {
    match cast_of_cast(e)?.0 {
        ast::Expr::Identifier(i) => Some(i.value.clone()),
        ast::Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        _ => None,
    }
}

/// Whether a type's name is `wanted` (`regtype`, `pg_catalog.regtype`).
fn named(name: &ast::ObjectName, wanted: &str) -> bool {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case(wanted))
}

/// Whether a cast's target type is text (`text`, `varchar`, `name`).
fn textual(t: &ast::DataType) -> bool {
    match t {
        ast::DataType::Text | ast::DataType::Varchar(_) => true,
        ast::DataType::Custom(name, _) => named(name, "text") || named(name, "name"),
        _ => false,
    }
}

/// `oids::regtype[]` (pgcli's `proallargtypes::regtype[]`): the types' names, as a
/// `regtype[]` prints them.
fn regtype_array(e: &ast::Expr) -> Option<ast::Expr> {
    let ast::Expr::Cast {
        expr,
        data_type: ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(element, _)),
        ..
    } = e
    else {
        return None;
    };
    let ast::DataType::Custom(name, _) = element.as_ref() else {
        return None;
    };
    named(name, "regtype").then(|| parse(&format!("pg_regtypes({expr})")))?
}

fn replacement(e: &ast::Expr) -> Option<ast::Expr> {
    let ast::Expr::Function(f) = e else {
        return None;
    };
    let name = f.name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    let ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))) = list.args.first() else {
        return None;
    };
    let function_column = match name.as_str() {
        "pg_table_size" | "pg_relation_size" | "pg_total_relation_size" | "pg_indexes_size" => None,
        "pg_get_function_result" => Some("prorettype"),
        "pg_get_function_arguments" | "pg_get_function_identity_arguments" => Some("proargtypes"),
        _ => return None,
    };
    if let Some(column) = function_column {
        return parse(&format!(
            "{name}((SELECT gf_p.{column} FROM pg_catalog.pg_proc AS gf_p WHERE gf_p.oid = ({arg})))"
        ));
    }
    let relation = match text_literal(arg) {
        Some(name) => format!("'{}'", name.replace('\'', "''")),
        None => format!(
            "(SELECT rs_c.relname FROM pg_catalog.pg_class AS rs_c \
             JOIN pg_catalog.pg_namespace AS rs_n ON rs_n.oid = rs_c.relnamespace \
             WHERE rs_n.nspname = 'public' AND rs_c.oid = ({arg}))"
        ),
    };
    parse(&format!("{name}({relation})"))
}

/// The relation named by `'t'`, `'t'::regclass` or `'public.t'`.
fn text_literal(e: &ast::Expr) -> Option<String> {
    let e = match e {
        ast::Expr::Cast { expr, .. } => expr.as_ref(),
        e => e,
    };
    let ast::Expr::Value(v) = e else {
        return None;
    };
    let ast::Value::SingleQuotedString(s) = &v.value else {
        return None;
    };
    Some(s.strip_prefix("public.").unwrap_or(s).to_owned())
}

fn parse(sql: &str) -> Option<ast::Expr> {
    datafusion::sql::sqlparser::parser::Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmts =
            datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .unwrap();
        stmts.iter_mut().for_each(rewrite);
        stmts[0].to_string()
    }

    #[test]
    fn regtype_arrays_by_name() {
        assert_eq!(
            rewritten("SELECT COALESCE(proallargtypes::regtype[], proargtypes::regtype[])::text[] FROM pg_proc"),
            "SELECT COALESCE(pg_regtypes(proallargtypes), pg_regtypes(proargtypes))::TEXT[] FROM pg_proc"
        );
    }

    #[test]
    fn regclass_text_in_select_lists() {
        let out = rewritten("SELECT c.oid::regclass::text FROM pg_class c ORDER BY c.oid::regclass::text");
        assert!(out.starts_with("SELECT (SELECT CASE"), "{out}");
        assert!(out.contains(") AS oid FROM pg_class"), "{out}");
        assert!(out.ends_with("ORDER BY c.oid::REGCLASS::TEXT"), "{out}");
    }

    #[test]
    fn sizes_by_name() {
        assert_eq!(
            rewritten("SELECT pg_total_relation_size('public.orders'), pg_relation_size('t'::regclass, 'main')"),
            "SELECT pg_total_relation_size('orders'), pg_relation_size('t')"
        );
        assert!(
            rewritten("SELECT pg_catalog.pg_table_size(c.oid) FROM pg_class c")
                .starts_with("SELECT pg_table_size((SELECT rs_c.relname FROM")
        );
        assert_eq!(
            rewritten("SELECT pg_catalog.pg_get_function_result(p.oid) FROM pg_proc p"),
            "SELECT pg_get_function_result((SELECT gf_p.prorettype FROM pg_catalog.pg_proc AS gf_p \
             WHERE gf_p.oid = (p.oid))) FROM pg_proc p"
        );
    }
}
