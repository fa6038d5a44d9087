//! Semi joins pushed below inner joins, to the input that holds what they test.
//!
//! `(A ⋈ B) ⋉ S` equals `(A ⋉ S) ⋈ B` when the semi join's condition reads only `A`'s
//! columns (besides `S`'s): whether a row of `A ⋈ B` has a match in `S` is decided by its `A`
//! part alone, row by row, so multiplicities are kept. Maintained above the join, the semi
//! join keeps the join's whole output as its left state — TPC-H Q18 keeps all 600k joined rows
//! of customer, orders and lineitem to output the few orders whose quantity passes 300. Below
//! it, its left side is often a table it reads instead (`ops/join_tables.rs`), and the joins
//! above it see only the rows that matched.
//!
//! It goes down through filters, projections (of plain columns) and inner joins as far as
//! one input holds all it reads. Pushed only when `S` is selective: a condition on an
//! aggregate's groups (a filter over an aggregate, through projections and aliases: a
//! `HAVING`), or a filtered table joined on its primary key; a semi join whose `S` keeps most
//! keys (TPC-H Q21's `EXISTS` over lineitem) is cheaper above a join that filters first.
//!
//! An inner join with a filtered table joined on its whole primary key, of whose columns
//! nothing above reads, only filters: each row of the other input meets at most one row of
//! the table. It becomes a semi join first, and is then pushed to where its key comes from
//! — DataFusion joins in the order of the FROM clause, so TPC-H Q21 joined all of supplier,
//! lineitem and orders before the `nation` that keeps one supplier in 25; now supplier meets
//! it first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, NullEquality};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan, Projection};

use super::Lowering;

impl Lowering<'_> {
    /// `plan` with its inner joins that only filter made semi joins, and each selective semi
    /// join placed below the inner joins of its left side (see the module's text); and
    /// whether anything changed.
    pub fn push_semi_joins(&self, plan: LogicalPlan) -> Result<(LogicalPlan, bool)> {
        let semi = plan.transform_up(|node| self.filtering_join_as_semi_join(node))?;
        let pushed = semi.data.transform_up(|node| {
            let LogicalPlan::Join(j) = &node else {
                return Ok(Transformed::no(node));
            };
            if j.join_type != JoinType::LeftSemi
                || j.null_equality != NullEquality::NullEqualsNothing
                || !(filters_groups(&j.right) || self.filtered_by_key(j))
            {
                return Ok(Transformed::no(node));
            }
            match place(&j.left, j)? {
                Some(p) => Ok(Transformed::yes(p)),
                None => Ok(Transformed::no(node)),
            }
        })?;
        Ok((pushed.data, semi.transformed || pushed.transformed))
    }

    /// `node`, a projection over an inner join one of whose inputs is a filtered table
    /// joined on its whole primary key and none of whose columns the projection reads, with
    /// that join made a semi join of the other input: each row of the other input meets at
    /// most one of the table's rows, so the join only keeps or drops it.
    fn filtering_join_as_semi_join(&self, node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Projection(p) = &node else {
            return Ok(Transformed::no(node));
        };
        let LogicalPlan::Join(j) = p.input.as_ref() else {
            return Ok(Transformed::no(node));
        };
        if j.join_type != JoinType::Inner
            || j.filter.is_some()
            || j.null_equality != NullEquality::NullEqualsNothing
        {
            return Ok(Transformed::no(node));
        }
        let read: HashSet<&Column> = p.expr.iter().flat_map(|e| e.column_refs()).collect();
        // The right input first: what the join order left to filter last.
        for (filtering, kept) in [(&j.right, &j.left), (&j.left, &j.right)] {
            if read.iter().any(|c| filtering.schema().has_column(c)) {
                continue;
            }
            let on =
                j.on.iter()
                    .map(|(l, r)| match Arc::ptr_eq(filtering, &j.right) {
                        true => (l.clone(), r.clone()),
                        false => (r.clone(), l.clone()),
                    })
                    .collect();
            let semi = Join::try_new(
                Arc::clone(kept),
                Arc::clone(filtering),
                on,
                None,
                JoinType::LeftSemi,
                j.join_constraint,
                j.null_equality,
                false,
            )?;
            if !self.filtered_by_key(&semi) {
                continue;
            }
            let input = Arc::new(LogicalPlan::Join(semi));
            let projection = Projection::try_new(p.expr.clone(), input)?;
            return Ok(Transformed::yes(LogicalPlan::Projection(projection)));
        }
        Ok(Transformed::no(node))
    }

    /// Whether `semi`'s right side is a filtered table (through projections and filters)
    /// joined on its whole primary key, a single column — a condition on the rows of a
    /// table, which keeps few of them.
    fn filtered_by_key(&self, semi: &Join) -> bool {
        let [(_, Expr::Column(key))] = semi.on.as_slice() else {
            return false;
        };
        let Some((relation, column, filtered)) = self.chain_table_column(&semi.right, key) else {
            return false;
        };
        let unique = self
            .stored_keys(relation)
            .iter()
            .any(|k| k.index.is_none() && k.columns == [column]);
        filtered && unique
    }
}

/// `plan ⋉ semi.right` (on `semi`'s condition, which reads `plan`'s columns) with the semi
/// join below `plan`'s inner joins, filters and projections; `None` when it cannot go below `plan`.
fn place(plan: &LogicalPlan, semi: &Join) -> Result<Option<LogicalPlan>> {
    let new_inputs = match plan {
        LogicalPlan::Join(inner) if inner.join_type == JoinType::Inner => {
            let reads = left_columns(semi);
            let on_left = reads.iter().all(|c| inner.left.schema().has_column(c));
            let on_right = reads.iter().all(|c| inner.right.schema().has_column(c));
            let (side, left) = match (on_left, on_right) {
                (true, _) => (&inner.left, true),
                (false, true) => (&inner.right, false),
                (false, false) => return Ok(None),
            };
            let new = match place(side, semi)? {
                Some(p) => p,
                None => semi_join(side, semi)?,
            };
            if left {
                vec![new, inner.right.as_ref().clone()]
            } else {
                vec![inner.left.as_ref().clone(), new]
            }
        }
        // A filter keeps the same rows above or below the semi join.
        LogicalPlan::Filter(f) => match place(&f.input, semi)? {
            Some(p) => vec![p],
            None => return Ok(None),
        },
        // Through a projection when what the semi join reads are plain columns of its input.
        LogicalPlan::Projection(p) => {
            let mut below = HashMap::new();
            for c in left_columns(semi) {
                let i = p.schema.index_of_column(&c)?;
                let Expr::Column(b) = p.expr[i].clone().unalias() else {
                    return Ok(None);
                };
                below.insert(c, b);
            }
            let rename = |e: &Expr| {
                e.clone()
                    .transform(|e| match &e {
                        Expr::Column(c) if below.contains_key(c) => {
                            Ok(Transformed::yes(Expr::Column(below[c].clone())))
                        }
                        _ => Ok(Transformed::no(e)),
                    })
                    .map(|t| t.data)
            };
            let mut moved = semi.clone();
            moved.on = semi
                .on
                .iter()
                .map(|(l, r)| Ok((rename(l)?, r.clone())))
                .collect::<Result<_>>()?;
            moved.filter = semi.filter.as_ref().map(rename).transpose()?;
            match place(&p.input, &moved)? {
                Some(new) => vec![new],
                None => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    plan.with_new_exprs(plan.expressions(), new_inputs)
        .map(Some)
}

/// `left ⋉ semi.right` on `semi`'s condition.
fn semi_join(left: &Arc<LogicalPlan>, semi: &Join) -> Result<LogicalPlan> {
    Ok(LogicalPlan::Join(Join::try_new(
        Arc::clone(left),
        Arc::clone(&semi.right),
        semi.on.clone(),
        semi.filter.clone(),
        JoinType::LeftSemi,
        semi.join_constraint,
        semi.null_equality,
        semi.null_aware,
    )?))
}

/// The columns of its left side a semi join's condition reads.
fn left_columns(semi: &Join) -> HashSet<Column> {
    let mut out: HashSet<Column> = semi
        .on
        .iter()
        .flat_map(|(l, _)| l.column_refs())
        .cloned()
        .collect();
    if let Some(f) = &semi.filter {
        out.extend(
            f.column_refs()
                .into_iter()
                .filter(|c| !semi.right.schema().has_column(c))
                .cloned(),
        );
    }
    out
}

/// Whether `plan` is a filter over an aggregate's result, under projections and aliases.
fn filters_groups(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            filters_groups(plan.inputs()[0])
        }
        LogicalPlan::Filter(f) => below_projections(&f.input),
        _ => false,
    }
}

fn below_projections(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            below_projections(plan.inputs()[0])
        }
        LogicalPlan::Aggregate(_) => true,
        _ => false,
    }
}
