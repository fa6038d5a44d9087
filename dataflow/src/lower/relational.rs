//! Lowering of the relational plan nodes: filters, scans, UNNEST, LIMIT, joins and constant
//! relations.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::{DFSchema, NullEquality};
use datafusion::error::Result;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    EmptyRelation, Expr, FetchType, Filter, Join, JoinType, Limit, LogicalPlan, SkipType,
    TableScan, Unnest, Values,
};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;

use super::{nullable, unsupported, Lowering};

use crate::ops::{Edge, Expiries, JoinKind, JoinOp, Node, TemporalFilterOp};
use crate::lower::temporal::TimeEdge;

impl Lowering<'_> {
    /// A filter; the columns its scalar subqueries added are projected away again.
    pub(super) fn filter(&mut self, f: &Filter) -> Result<Node> {
        if crate::lower::temporal::mentions_now(&f.predicate) {
            return self.temporal_filter(f);
        }
        let (input, schema, exprs) =
            self.with_subqueries(&f.input, std::slice::from_ref(&f.predicate))?;
        let predicate = self.physical(&exprs[0], &schema)?;
        let mut input = input;
        crate::ops::limit_window_rows(&mut input, &predicate);
        let width = f.input.schema().fields().len();
        let filtered = Node::Filter {
            input: Box::new(input),
            predicate,
        };
        if schema.fields().len() == width {
            return Ok(filtered);
        }
        // Drop the subqueries' columns again.
        let out = nullable(f.input.schema().inner());
        let exprs = out
            .fields()
            .iter()
            .enumerate()
            .map(|(i, fd)| Arc::new(Column::new(fd.name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        Ok(Node::Project {
            input: Box::new(filtered),
            exprs,
            schema: out,
        })
    }

    /// A filter comparing `now()` with the rows: its other conjuncts filter first, then a
    /// temporal filter keeps each row for the time range its comparisons give.
    fn temporal_filter(&mut self, f: &Filter) -> Result<Node> {
        let (rest, range) = crate::lower::temporal::split(&f.predicate)?;
        let input = match conjunction(rest) {
            Some(p) => self.filter(&Filter::try_new(p, Arc::clone(&f.input))?)?,
            None => self.lower(&f.input)?,
        };
        let schema = f.input.schema();
        let edges = |edges: &[TimeEdge]| -> Result<Vec<Edge>> {
            edges
                .iter()
                .map(|e| {
                    Ok(Edge {
                        expr: self.physical(&e.expr, schema)?,
                        after: e.after,
                    })
                })
                .collect()
        };
        let (from, until) = (edges(&range.from)?, edges(&range.until)?);
        let op = TemporalFilterOp::new(self.op_prefix(), from, until, input.schema());
        Ok(Node::TemporalFilter {
            input: Box::new(input),
            op,
        })
    }

    /// A scan of a relation the view reads, with the filters pushed into it.
    pub(super) fn table_scan(&mut self, s: &TableScan) -> Result<Node> {
        if s.fetch.is_some() {
            return Err(unsupported("LIMIT"));
        }
        let name = s.table_name.table().to_owned();
        let (relation, full) = self
            .relations
            .resolve(&name)
            .ok_or_else(|| unsupported(format!("reading relation \"{name}\"")))?;
        let projection = s
            .projection
            .clone()
            .unwrap_or_else(|| (0..full.fields().len()).collect());
        let schema = nullable(s.projected_schema.inner());
        let mut node = Node::Scan {
            relation,
            name,
            projection,
            schema,
        };
        // Filters the provider took as inexact stay above the scan too; re-applying
        // them is harmless and keeps exact ones correct.
        if let Some(pred) = s.filters.iter().cloned().reduce(Expr::and) {
            let predicate = self.physical(&pred, &s.projected_schema)?;
            node = Node::Filter {
                input: Box::new(node),
                predicate,
            };
        }
        Ok(node)
    }

    pub(super) fn unnest(&mut self, u: &Unnest) -> Result<Node> {
        let input = self.lower(&u.input)?;
        Ok(Node::Unnest {
            input: Box::new(input),
            op: crate::ops::UnnestOp {
                lists: u
                    .list_type_columns
                    .iter()
                    .map(|(i, l)| (*i, l.depth))
                    .collect(),
                structs: u.struct_type_columns.clone(),
                options: u.options.clone(),
                schema: nullable(u.schema.inner()),
            },
        })
    }

    /// LIMIT / OFFSET with constants: a top-N, ordered when a sort is beneath.
    pub(super) fn limit(&mut self, l: &Limit) -> Result<Node> {
        let skip = match l.get_skip_type()? {
            SkipType::Literal(n) => n,
            SkipType::UnsupportedExpr => {
                return Err(unsupported("OFFSET with a non-constant expression"))
            }
        };
        let fetch = match l.get_fetch_type()? {
            FetchType::Literal(n) => n,
            FetchType::UnsupportedExpr => {
                return Err(unsupported("LIMIT with a non-constant expression"))
            }
        };
        match l.input.as_ref() {
            LogicalPlan::Sort(s) => self.top_n(&s.input, &s.expr, skip, fetch),
            // Without ORDER BY any rows are a right answer; ours are the first in
            // the rows' encoding order.
            input => self.top_n(input, &[], skip, fetch),
        }
    }

    pub(super) fn join(&mut self, j: &Join) -> Result<Node> {
        let kind = match j.join_type {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            JoinType::Right => JoinKind::Right,
            JoinType::Full => JoinKind::Full,
            JoinType::LeftSemi => JoinKind::LeftSemi,
            JoinType::LeftAnti if j.null_aware => {
                if j.on.len() != 1 || j.filter.is_some() {
                    return Err(unsupported(
                        "NOT IN (subquery) with several columns or conditions",
                    ));
                }
                JoinKind::NullAwareAnti
            }
            JoinType::LeftAnti => JoinKind::LeftAnti,
            other => return Err(unsupported(format!("{other} join"))),
        };
        let left = self.lower(&j.left)?;
        let right = self.lower(&j.right)?;
        let ls = j.left.schema();
        let rs = j.right.schema();
        let joined_df = ls.join(rs)?;
        let left_keys =
            j.on.iter()
                .map(|(l, _)| self.physical(l, ls))
                .collect::<Result<_>>()?;
        let right_keys =
            j.on.iter()
                .map(|(_, r)| self.physical(r, rs))
                .collect::<Result<_>>()?;
        let filter = j
            .filter
            .as_ref()
            .map(|f| self.physical(f, &joined_df))
            .transpose()?;
        let joined = nullable(joined_df.inner());
        let schema = match kind {
            JoinKind::LeftSemi | JoinKind::LeftAnti | JoinKind::NullAwareAnti => {
                nullable(ls.inner())
            }
            _ => Arc::clone(&joined),
        };
        let mut op = JoinOp {
            prefix: self.op_prefix(),
            cache: Default::default(),
            kind,
            null_equal: j.null_equality == NullEquality::NullEqualsNull,
            left_keys,
            right_keys,
            filter,
            left_width: ls.fields().len(),
            right_width: rs.fields().len(),
            joined,
            schema,
            expiry: Default::default(),
            tables: [None, None],
        };
        let relations = self.relations;
        op.expiry = Expiries::new(crate::event_time::join_expiry(&left, &right, &op, &|r| {
            relations.event_time_column(r)
        }));
        if self.table_reads {
            op.tables = crate::ops::table_sides(&left, &right, &op, self.reduction, self.pushdown, &|r| {
                self.stored_keys(r)
            });
        }
        Ok(Node::Join {
            left: Box::new(left),
            right: Box::new(right),
            op,
        })
    }

    /// VALUES: each row's expressions evaluated once, a constant relation.
    pub(super) fn values(&mut self, v: &Values) -> Result<Node> {
        let schema = nullable(v.schema.inner());
        let one = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let empty = DFSchema::empty();
        let mut batches = Vec::new();
        for row in &v.values {
            let exprs: Vec<Arc<dyn PhysicalExpr>> = row
                .iter()
                .map(|e| self.physical(e, &empty))
                .collect::<Result<_>>()?;
            batches.push(crate::ops::project_batch(&one, &exprs, &schema)?);
        }
        let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
        Ok(Node::Constant { batch })
    }
}

/// An empty relation, or the one row of a SELECT without FROM.
pub(super) fn empty_relation(e: &EmptyRelation) -> Result<Node> {
    let schema = nullable(e.schema.inner());
    let rows = usize::from(e.produce_one_row);
    let cols = schema
        .fields()
        .iter()
        .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), rows))
        .collect();
    let opts = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(Node::Constant {
        batch: RecordBatch::try_new_with_options(schema, cols, &opts)?,
    })
}
