//! Catalog functions PostgreSQL calls with an OID, given what the server's functions of the
//! same names take instead, looked up by that OID in the catalogs:
//! - the size functions (`pg_table_size(c.oid)`, what psql's `\dt+` prints): the argument of
//!   `pg_table_size`, `pg_relation_size` (its fork dropped), `pg_total_relation_size` and
//!   `pg_indexes_size` becomes the relation's name (or the text given,
//!   `pg_total_relation_size('t')`);
//! - `pg_get_function_result(p.oid)` and `pg_get_function_arguments(p.oid)` (psql's `\df`):
//!   the function's return type OID and argument type OIDs.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

/// Whether `lower` (a statement in lower case) may call one of them.
pub fn mentions(lower: &str) -> bool {
    lower.contains("_size(") || lower.contains("pg_get_function_") || lower.contains("regtype")
}

pub fn rewrite(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let Some(replacement) = replacement(e).or_else(|| regtype_text(e)) {
            *e = replacement;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `x::regtype::text` (pgcli's `atttypid::regtype::text`): the type's name, as PostgreSQL's
/// regtype prints it, where the OID would otherwise read as a number.
fn regtype_text(e: &ast::Expr) -> Option<ast::Expr> {
    let ast::Expr::Cast {
        expr, data_type, ..
    } = e
    else {
        return None;
    };
    let textual = |t: &ast::DataType| match t {
        ast::DataType::Text | ast::DataType::Varchar(_) => true,
        ast::DataType::Custom(name, _) => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| matches!(i.value.to_ascii_lowercase().as_str(), "text" | "name")),
        _ => false,
    };
    let ast::Expr::Cast {
        expr: oid,
        data_type: ast::DataType::Custom(name, _),
        ..
    } = expr.as_ref()
    else {
        return None;
    };
    let regtype = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case("regtype"));
    (regtype && textual(data_type)).then(|| parse(&format!("pg_regtype_text({oid})")))?
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
