//! `IS [NOT] DISTINCT FROM` with PostgreSQL's precedence. sqlparser reads everything after
//! `FROM` as one expression, so `a IS DISTINCT FROM 3 AND b` becomes
//! `a IS DISTINCT FROM (3 AND b)`; PostgreSQL binds `IS` tighter than `AND` and `OR`:
//! `(a IS DISTINCT FROM 3) AND b`. (PostgreSQL refuses a chain of `IS` tests such as
//! `a IS DISTINCT FROM b IS NOT TRUE`; here it reads from the left.)

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, BinaryOperator, Expr};

/// Re-associates every `IS [NOT] DISTINCT FROM` in `stmt`. Children first, so an inner test
/// is already right when the one around it is.
pub fn rewrite(sql: &str, stmts: &mut [ast::Statement]) {
    if !sql.to_ascii_lowercase().contains("distinct") {
        return;
    }
    for stmt in stmts {
        let _ = ast::visit_expressions_mut(stmt, |e| {
            let (negated, right) = match e {
                Expr::IsDistinctFrom(_, r) => (false, r),
                Expr::IsNotDistinctFrom(_, r) => (true, r),
                _ => return ControlFlow::<()>::Continue(()),
            };
            if looser(right).is_none() {
                return ControlFlow::Continue(());
            }
            let placeholder = Expr::Value(ast::Value::Null.into());
            let (left, right) = match std::mem::replace(e, placeholder) {
                Expr::IsDistinctFrom(l, r) | Expr::IsNotDistinctFrom(l, r) => (l, r),
                _ => unreachable!("matched above"),
            };
            *e = reassociate(left, *right, negated);
            ControlFlow::Continue(())
        });
    }
}

/// The leftmost operand of `e` when `e` is an operation that binds looser than `IS`.
fn looser(e: &mut Expr) -> Option<&mut Box<Expr>> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And | BinaryOperator::Or | BinaryOperator::Xor,
            ..
        } => Some(left),
        Expr::IsDistinctFrom(left, _) | Expr::IsNotDistinctFrom(left, _) => Some(left),
        Expr::IsNull(inner)
        | Expr::IsNotNull(inner)
        | Expr::IsTrue(inner)
        | Expr::IsNotTrue(inner)
        | Expr::IsFalse(inner)
        | Expr::IsNotFalse(inner)
        | Expr::IsUnknown(inner)
        | Expr::IsNotUnknown(inner) => Some(inner),
        _ => None,
    }
}

/// `left IS [NOT] DISTINCT FROM right`, where `right` was read too far: the test takes the
/// leftmost operand at `IS` precedence, and what followed it applies to the test.
fn reassociate(left: Box<Expr>, mut right: Expr, negated: bool) -> Expr {
    let test = |l: Box<Expr>, r: Box<Expr>| {
        if negated {
            Expr::IsNotDistinctFrom(l, r)
        } else {
            Expr::IsDistinctFrom(l, r)
        }
    };
    // Walk down the left spine to the operand the test takes.
    let mut slot: &mut Expr = &mut right;
    while looser(slot).is_some() {
        slot = looser(slot).expect("checked").as_mut();
    }
    let operand = std::mem::replace(slot, Expr::Value(ast::Value::Null.into()));
    *slot = test(left, Box::new(operand));
    right
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::{self, BinaryOperator, Expr};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    /// The statement's tree, rewritten or not, without the parentheses the expected shapes
    /// spell out (sqlparser keeps them as `Nested`).
    fn tree(sql: &str, rewritten: bool) -> Vec<ast::Statement> {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        if rewritten {
            super::rewrite(sql, &mut stmts);
        }
        for s in &mut stmts {
            let _ = ast::visit_expressions_mut(s, |e| {
                while let Expr::Nested(inner) = e {
                    *e = std::mem::replace(inner.as_mut(), Expr::Value(ast::Value::Null.into()));
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        stmts
    }

    #[test]
    fn is_distinct_from_binds_as_in_postgres() {
        let mut stmts =
            Parser::parse_sql(&PostgreSqlDialect {}, "SELECT a IS DISTINCT FROM 3 AND b").unwrap();
        super::rewrite("distinct", &mut stmts);
        let ast::Statement::Query(q) = &stmts[0] else {
            panic!()
        };
        let ast::SetExpr::Select(s) = q.body.as_ref() else {
            panic!()
        };
        let ast::SelectItem::UnnamedExpr(e) = &s.projection[0] else {
            panic!()
        };
        assert!(
            matches!(e, Expr::BinaryOp { op: BinaryOperator::And, left, .. }
                if matches!(left.as_ref(), Expr::IsDistinctFrom(..))),
            "{e:?}"
        );
        // Chains of IS tests read from the left; parentheses are kept; comparisons bind
        // tighter.
        for (sql, shape) in [
            (
                "SELECT a IS DISTINCT FROM 3 AND b IS NOT TRUE",
                "SELECT (a IS DISTINCT FROM 3) AND (b IS NOT TRUE)",
            ),
            (
                "SELECT a IS NOT DISTINCT FROM b OR c",
                "SELECT (a IS NOT DISTINCT FROM b) OR c",
            ),
            (
                "SELECT a IS DISTINCT FROM b IS NOT TRUE",
                "SELECT (a IS DISTINCT FROM b) IS NOT TRUE",
            ),
            (
                "SELECT a IS DISTINCT FROM b IS DISTINCT FROM c",
                "SELECT (a IS DISTINCT FROM b) IS DISTINCT FROM c",
            ),
            (
                "SELECT a IS DISTINCT FROM (b AND c)",
                "SELECT a IS DISTINCT FROM (b AND c)",
            ),
            (
                "SELECT a IS DISTINCT FROM b = c AND d",
                "SELECT (a IS DISTINCT FROM (b = c)) AND d",
            ),
            (
                "SELECT x FROM t WHERE a IS DISTINCT FROM 1 AND b OR c",
                "SELECT x FROM t WHERE ((a IS DISTINCT FROM 1) AND b) OR c",
            ),
        ] {
            assert_eq!(tree(sql, true), tree(shape, false), "{sql}");
        }
    }
}
