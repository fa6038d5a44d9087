//! asyncpg's type introspection query (what it runs for any type it has no codec for, array
//! types among them), as DataFusion can plan it: its `basetype` of a domain (a recursive CTE
//! correlated with the outer row) and `attrtypoids`/`attrnames` of a composite type
//! (correlated `array_agg`s, an `oid[]` freshet would describe as `int4[]`, a type asyncpg
//! would have to introspect in turn) are NULL. Users' columns are neither domains nor
//! composites here; the element type of an array, what asyncpg needs, is answered.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast;

/// Whether `lower` (a statement in lower case) is asyncpg's introspection query.
pub fn mentions(lower: &str) -> bool {
    lower.contains("typeinfo_tree")
}

pub fn rewrite(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if is_typtype_branch(e) {
            *e = ast::Expr::Value(ast::Value::Null.into());
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `CASE WHEN x.typtype = 'd' | 'c' THEN (subquery) ELSE NULL END`.
fn is_typtype_branch(e: &ast::Expr) -> bool {
    let ast::Expr::Case {
        operand: None,
        conditions,
        ..
    } = e
    else {
        return false;
    };
    let [when] = conditions.as_slice() else {
        return false;
    };
    let ast::Expr::BinaryOp {
        left,
        op: ast::BinaryOperator::Eq,
        right,
    } = &when.condition
    else {
        return false;
    };
    let on_typtype = match left.as_ref() {
        ast::Expr::CompoundIdentifier(parts) => parts
            .last()
            .is_some_and(|p| p.value.eq_ignore_ascii_case("typtype")),
        _ => false,
    };
    let kind = matches!(right.as_ref(), ast::Expr::Value(v)
        if matches!(&v.value, ast::Value::SingleQuotedString(k) if k == "c" || k == "d"));
    on_typtype && kind && matches!(when.result, ast::Expr::Subquery(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn domain_and_composite_branches_are_null() {
        let sql = "SELECT t.oid, (CASE WHEN t.typtype = 'c' THEN (SELECT array_agg(ia.atttypid) \
                   FROM pg_attribute ia) ELSE NULL END) AS attrtypoids, \
                   (CASE WHEN t.typtype = 'b' THEN (SELECT 1) ELSE NULL END) AS other FROM pg_type t";
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        stmts.iter_mut().for_each(rewrite);
        assert_eq!(
            stmts[0].to_string(),
            "SELECT t.oid, (NULL) AS attrtypoids, (CASE WHEN t.typtype = 'b' THEN (SELECT 1) \
             ELSE NULL END) AS other FROM pg_type t"
        );
    }
}
