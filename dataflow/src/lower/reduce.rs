//! Aggregates restricted to the keys a join can use (semi-join reduction).
//!
//! A correlated subquery such as TPC-H's `l_quantity < (SELECT 0.2 * avg(l_quantity) FROM
//! lineitem WHERE l_partkey = p_partkey)` is planned as a join of the outer rows with an
//! aggregate of *every* group (`avg(l_quantity) GROUP BY l_partkey`), of which the join keeps
//! the few groups the outer rows name. Maintained as it stands, each change of the inner table
//! updates a group no output depends on, and a backfill computes all of them.
//!
//! Here such an aggregate's input is restricted to the rows whose group column takes a value
//! the other side of the join can hold: `R` becomes `R ⋉ K`, where `K` is a filtered table the
//! other side draws that column from (a superset of the values it holds is enough: the join
//! itself keeps only the matching groups). Every group the join can match keeps exactly its
//! rows, so the join's output is unchanged; the other groups are never computed.
//!
//! The semi join is placed where the group column leaves a table (through projections,
//! filters and inner joins of the aggregate's input), only when that table is stored by a key
//! leading with the column, and `K` is a chain of filters and projections over a table: the
//! semi join reads its left side from the table (see `ops/join_tables.rs`) and keeps only
//! `K`'s key values as state. A change of the inner table costs a lookup of `K`'s state; a
//! backfill feeds `K` and reads the inner table for its keys only.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, NullEquality};
use datafusion::error::Result;
use datafusion::logical_expr::{Aggregate, Expr, JoinType, LogicalPlan, LogicalPlanBuilder};

use super::Lowering;

impl Lowering<'_> {
    /// `plan` with each aggregate joined on one of its group columns restricted to the values
    /// the join's other side can hold (see the module's text), and whether any was.
    pub fn reduce_aggregates(&self, plan: LogicalPlan) -> Result<(LogicalPlan, bool)> {
        let mut n = 0usize;
        let t = plan.transform_up(|node| {
            let LogicalPlan::Join(_) = &node else {
                return Ok(Transformed::no(node));
            };
            match self.reduce_join(&node, &mut n)? {
                Some(p) => Ok(Transformed::yes(p)),
                None => Ok(Transformed::no(node)),
            }
        })?;
        Ok((t.data, t.transformed))
    }

    /// The join `node` with its aggregate side restricted, if it has one that can be.
    fn reduce_join(&self, node: &LogicalPlan, n: &mut usize) -> Result<Option<LogicalPlan>> {
        let LogicalPlan::Join(j) = node else {
            return Ok(None);
        };
        if j.null_equality != NullEquality::NullEqualsNothing {
            return Ok(None);
        }
        // (aggregate side, whether the join keeps only the groups the other side matches)
        let sides = [
            (
                1,
                matches!(
                    j.join_type,
                    JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
                ),
            ),
            (
                0,
                matches!(
                    j.join_type,
                    JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti
                ),
            ),
        ];
        for (agg_side, allowed) in sides {
            if !allowed {
                continue;
            }
            let inputs = [j.left.as_ref(), j.right.as_ref()];
            let (agg, other) = (inputs[agg_side], inputs[1 - agg_side]);
            for (l, r) in &j.on {
                let (o, a) = if agg_side == 1 { (l, r) } else { (r, l) };
                let (Expr::Column(oc), Expr::Column(ac)) = (o, a) else {
                    continue;
                };
                if group_column(agg, ac).is_none() {
                    continue;
                }
                let Some((chain, key)) = self.keys_of(other, oc) else {
                    continue;
                };
                let alias = format!("__freshet_keys_{n}");
                let keys = LogicalPlanBuilder::from(chain)
                    .project(vec![Expr::Column(key.clone())])?
                    .alias(alias.as_str())?
                    .build()?;
                let key = Column::new(Some(alias), key.name);
                let Some(reduced) = self.restrict(agg, ac, &keys, &key)? else {
                    continue;
                };
                *n += 1;
                let mut new_inputs = vec![j.left.as_ref().clone(), j.right.as_ref().clone()];
                new_inputs[agg_side] = reduced;
                return node
                    .with_new_exprs(node.expressions(), new_inputs)
                    .map(Some);
            }
        }
        Ok(None)
    }

    /// `plan` (an aggregate under projections, aliases and filters) with the aggregate's
    /// input restricted to the rows whose group column behind `col` is in `keys`' `key`.
    fn restrict(
        &self,
        plan: &LogicalPlan,
        col: &Column,
        keys: &LogicalPlan,
        key: &Column,
    ) -> Result<Option<LogicalPlan>> {
        if let LogicalPlan::Aggregate(a) = plan {
            let Some(c) = group_column(plan, col) else {
                return Ok(None);
            };
            let Some(input) = self.semi_join_at_table(&a.input, &c, keys, key)? else {
                return Ok(None);
            };
            let a = Aggregate::try_new(input.into(), a.group_expr.clone(), a.aggr_expr.clone())?;
            return Ok(Some(LogicalPlan::Aggregate(a)));
        }
        let Some(below) = column_below(plan, col) else {
            return Ok(None);
        };
        let Some(input) = plan.inputs().first().copied() else {
            return Ok(None);
        };
        let Some(new) = self.restrict(input, &below, keys, key)? else {
            return Ok(None);
        };
        plan.with_new_exprs(plan.expressions(), vec![new]).map(Some)
    }

    /// `plan` with `⋉ keys ON col = key` placed above the chain of filters and projections
    /// over the table `col` comes from: through projections, aliases, filters and inner
    /// joins, when that table is stored by a key leading with the column (the semi join then
    /// reads it from the table instead of keeping it as state).
    fn semi_join_at_table(
        &self,
        plan: &LogicalPlan,
        col: &Column,
        keys: &LogicalPlan,
        key: &Column,
    ) -> Result<Option<LogicalPlan>> {
        if let Some((relation, column, _)) = self.chain_table_column(plan, col) {
            let leads = self
                .stored_keys(relation)
                .iter()
                .any(|k| k.columns.first() == Some(&column));
            let same_type = match (
                plan.schema().qualified_field_from_column(col),
                keys.schema().qualified_field_from_column(key),
            ) {
                (Ok((_, a)), Ok((_, b))) => a.data_type() == b.data_type(),
                _ => false,
            };
            if !leads || !same_type {
                return Ok(None);
            }
            let semi = LogicalPlanBuilder::from(plan.clone())
                .join(
                    keys.clone(),
                    JoinType::LeftSemi,
                    (vec![col.clone()], vec![key.clone()]),
                    None,
                )?
                .build()?;
            return Ok(Some(semi));
        }
        let new_inputs = match plan {
            LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
                let left = j.left.schema().has_column(col);
                let side = if left { &j.left } else { &j.right };
                let Some(new) = self.semi_join_at_table(side, col, keys, key)? else {
                    return Ok(None);
                };
                if left {
                    vec![new, j.right.as_ref().clone()]
                } else {
                    vec![j.left.as_ref().clone(), new]
                }
            }
            LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) | LogicalPlan::Filter(_) => {
                let Some(below) = column_below(plan, col) else {
                    return Ok(None);
                };
                let Some(new) = self.semi_join_at_table(plan.inputs()[0], &below, keys, key)?
                else {
                    return Ok(None);
                };
                vec![new]
            }
            _ => return Ok(None),
        };
        plan.with_new_exprs(plan.expressions(), new_inputs)
            .map(Some)
    }

    /// A filtered table the values of `col` in `plan` are drawn from (a chain of filters
    /// and projections over a table scan, at least one filter), and the column there.
    fn keys_of(&self, plan: &LogicalPlan, col: &Column) -> Option<(LogicalPlan, Column)> {
        if let Some((relation, _, filtered)) = self.chain_table_column(plan, col) {
            let table = !self.stored_keys(relation).is_empty();
            return (filtered && table).then(|| (plan.clone(), col.clone()));
        }
        match plan {
            LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) | LogicalPlan::Filter(_) => {
                let below = column_below(plan, col)?;
                self.keys_of(plan.inputs()[0], &below)
            }
            LogicalPlan::Aggregate(a) => self.keys_of(&a.input, &group_column(plan, col)?),
            LogicalPlan::Join(j) => {
                let own_left = j.left.schema().has_column(col);
                let own = if own_left { &j.left } else { &j.right };
                if let Some(found) = self.keys_of(own, col) {
                    return Some(found);
                }
                // An equi-join key: its values are also the other side's, where that side
                // restricts the output.
                let restricts = match j.join_type {
                    JoinType::Inner => true,
                    JoinType::LeftSemi => own_left,
                    JoinType::RightSemi => !own_left,
                    _ => false,
                };
                if !restricts {
                    return None;
                }
                j.on.iter().find_map(|(l, r)| {
                    let (mine, theirs) = if own_left { (l, r) } else { (r, l) };
                    match (mine, theirs) {
                        (Expr::Column(m), Expr::Column(t)) if m == col => {
                            let other = if own_left { &j.right } else { &j.left };
                            self.keys_of(other, t)
                        }
                        _ => None,
                    }
                })
            }
            _ => None,
        }
    }

    /// When `plan` is a chain of filters, projections and aliases over a table scan and
    /// `col` a plain column all the way down: the relation, the column's index in it, and
    /// whether a filter lies in the chain.
    pub(super) fn chain_table_column(
        &self,
        plan: &LogicalPlan,
        col: &Column,
    ) -> Option<(freshet_common::TableId, usize, bool)> {
        match plan {
            LogicalPlan::TableScan(s) => {
                let i = s.projected_schema.index_of_column(col).ok()?;
                let column = s
                    .projection
                    .as_ref()
                    .map_or(Some(i), |p| p.get(i).copied())?;
                let (relation, _) = self.relations.resolve(s.table_name.table())?;
                Some((relation, column, !s.filters.is_empty()))
            }
            LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) | LogicalPlan::Filter(_) => {
                let below = column_below(plan, col)?;
                let (relation, column, filtered) =
                    self.chain_table_column(plan.inputs()[0], &below)?;
                Some((
                    relation,
                    column,
                    filtered || matches!(plan, LogicalPlan::Filter(_)),
                ))
            }
            _ => None,
        }
    }
}

/// The column of a projection's, alias's or filter's input that output column `col` is,
/// when it is a plain column.
fn column_below(plan: &LogicalPlan, col: &Column) -> Option<Column> {
    match plan {
        LogicalPlan::Projection(p) => {
            let i = p.schema.index_of_column(col).ok()?;
            match p.expr.get(i)?.clone().unalias() {
                Expr::Column(c) => Some(c),
                _ => None,
            }
        }
        LogicalPlan::SubqueryAlias(a) => {
            let i = a.schema.index_of_column(col).ok()?;
            Some(Column::from(a.input.schema().qualified_field(i)))
        }
        LogicalPlan::Filter(_) => Some(col.clone()),
        _ => None,
    }
}

/// The input column of the aggregate (under projections, aliases and filters) that output
/// column `col` of `plan` groups by, when it is a plain column.
fn group_column(plan: &LogicalPlan, col: &Column) -> Option<Column> {
    match plan {
        LogicalPlan::Aggregate(a) => {
            let i = a.schema.index_of_column(col).ok()?;
            if a.group_expr
                .iter()
                .any(|e| matches!(e, Expr::GroupingSet(_)))
            {
                return None;
            }
            match a.group_expr.get(i)?.clone().unalias() {
                Expr::Column(c) => Some(c),
                _ => None,
            }
        }
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) | LogicalPlan::Filter(_) => {
            group_column(plan.inputs()[0], &column_below(plan, col)?)
        }
        _ => None,
    }
}
