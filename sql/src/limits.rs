//! Bounds on how deeply a statement may nest, checked right after parsing.
//!
//! The parser builds operator chains (`a OR b OR …`, `1 + 1 + …`, `… UNION ALL …`) in a loop,
//! so a short statement can hold a tree thousands of levels deep, and everything after it
//! (planning, optimizing, evaluating, even dropping the tree) recurses once per level. A
//! statement nested deeper than the limits is refused with 54001, as PostgreSQL refuses one
//! that exceeds its stack, and its tree is taken apart iteratively so that dropping it cannot
//! exhaust the stack either. The limits are sized with the server's thread stacks
//! (`STATEMENT_STACK_BYTES`), so that whatever passes them can be planned and run.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, Expr, Query, SetExpr, VisitMut, VisitorMut};
use freshet_common::{PgError, SqlState};

/// The deepest expression a statement may hold (an operator chain of this many terms).
pub const MAX_EXPR_DEPTH: usize = 10_000;

/// The most set operations (`UNION`, `EXCEPT`, `INTERSECT`) one query may chain.
pub const MAX_SET_OP_DEPTH: usize = 2_000;

/// The stack each thread that plans or runs statements needs for statements within the
/// limits, in bytes.
pub const STATEMENT_STACK_BYTES: usize = 256 << 20;

/// Refuses `stmt` if it nests deeper than the limits (54001). A refused statement is left
/// shallow, so dropping it is safe.
pub fn check_depth(stmt: &mut ast::Statement) -> Result<(), PgError> {
    let mut v = DepthCheck::default();
    let _ = stmt.visit(&mut v);
    match v.too_deep {
        None => Ok(()),
        Some(what) => Err(PgError::new(
            SqlState::STATEMENT_TOO_COMPLEX,
            "stack depth limit exceeded".to_owned(),
        )
        .with_detail(what)
        .with_hint(
            "Write long chains of OR as IN (…) or = ANY (…), and long UNION ALL chains as \
             several statements.",
        )),
    }
}

#[derive(Default)]
struct DepthCheck {
    depth: usize,
    too_deep: Option<String>,
}

impl VisitorMut for DepthCheck {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > MAX_EXPR_DEPTH {
            self.too_deep.get_or_insert_with(|| {
                format!("An expression is nested more than {MAX_EXPR_DEPTH} levels deep.")
            });
            dismantle_expr(std::mem::replace(expr, placeholder()));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if set_op_depth(&query.body) > MAX_SET_OP_DEPTH {
            self.too_deep.get_or_insert_with(|| {
                format!("A query chains more than {MAX_SET_OP_DEPTH} set operations.")
            });
            let body = std::mem::replace(query.body.as_mut(), SetExpr::Values(empty_values()));
            dismantle_set(body);
        }
        ControlFlow::Continue(())
    }
}

fn placeholder() -> Expr {
    Expr::Value(ast::Value::Null.into())
}

fn empty_values() -> ast::Values {
    ast::Values {
        explicit_row: false,
        value_keyword: false,
        rows: vec![],
    }
}

/// How many set operations `body` nests, counted without recursion.
fn set_op_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(body, 0usize)];
    while let Some((node, d)) = stack.pop() {
        deepest = deepest.max(d);
        match node {
            SetExpr::SetOperation { left, right, .. } => {
                stack.push((left, d + 1));
                stack.push((right, d + 1));
            }
            SetExpr::Query(q) => stack.push((&q.body, d)),
            _ => {}
        }
    }
    deepest
}

/// Drops an expression tree level by level instead of recursively.
fn dismantle_expr(e: Expr) {
    let mut stack = vec![e];
    while let Some(mut e) = stack.pop() {
        let take = |b: &mut Box<Expr>| std::mem::replace(b.as_mut(), placeholder());
        match &mut e {
            Expr::BinaryOp { left, right, .. } => {
                stack.push(take(left));
                stack.push(take(right));
            }
            Expr::UnaryOp { expr, .. }
            | Expr::Nested(expr)
            | Expr::IsNull(expr)
            | Expr::IsNotNull(expr)
            | Expr::IsTrue(expr)
            | Expr::IsFalse(expr)
            | Expr::Cast { expr, .. } => stack.push(take(expr)),
            _ => {}
        }
    }
}

/// Drops a chain of set operations level by level instead of recursively.
fn dismantle_set(body: SetExpr) {
    let mut stack = vec![body];
    while let Some(mut node) = stack.pop() {
        let take =
            |b: &mut Box<SetExpr>| std::mem::replace(b.as_mut(), SetExpr::Values(empty_values()));
        match &mut node {
            SetExpr::SetOperation { left, right, .. } => {
                stack.push(take(left));
                stack.push(take(right));
            }
            SetExpr::Query(q) => stack.push(take(&mut q.body)),
            _ => {}
        }
    }
}
