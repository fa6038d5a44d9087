//! Lowering: an optimized DataFusion `LogicalPlan` becomes a tree of incremental operators.
//!
//! Every construct without an incremental operator is refused with 0A000 naming it, so a
//! view never silently computes something else than its query.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, NullEquality};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Distinct, Expr, ExprSchemable, JoinType, LogicalPlan, Volatility};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use freshet_common::{PgError, TableId};
use freshet_state::operator_prefix;

use crate::ops::{AggKind, AggSpec, AggregateOp, JoinKind, JoinOp, Node};

/// Resolves a relation a view reads: its id and full (unprojected) schema.
pub trait Relations {
    fn resolve(&self, name: &str) -> Option<(TableId, SchemaRef)>;
}

/// 0A000 naming `what`, as a DataFusion error (the SQL layer unwraps it).
pub fn unsupported(what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(Box::new(PgError::not_supported(format!(
        "{what} in a materialized view"
    ))))
}

/// Refuses expressions whose value is not a function of the row: a view maintained from
/// them would drift from its query (`random()`, `now()` …). Run on the plan before
/// optimization, which folds `now()` into a constant.
pub fn check_deterministic(plan: &LogicalPlan) -> Result<()> {
    let mut bad: Option<String> = None;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if f.func.signature().volatility != Volatility::Immutable {
                        bad = Some(f.func.name().to_owned());
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if bad.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    match bad {
        Some(name) => Err(unsupported(format!("non-deterministic function {name}()"))),
        None => Ok(()),
    }
}

/// Lowers plans of one view, numbering its stateful operators.
pub struct Lowering<'a> {
    view: TableId,
    next_op: u32,
    props: &'a ExecutionProps,
    relations: &'a dyn Relations,
}

impl<'a> Lowering<'a> {
    pub fn new(view: TableId, props: &'a ExecutionProps, relations: &'a dyn Relations) -> Self {
        Self {
            view,
            next_op: 0,
            props,
            relations,
        }
    }

    fn op_prefix(&mut self) -> Vec<u8> {
        self.next_op += 1;
        operator_prefix(self.view, self.next_op)
    }

    fn physical(&self, e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        create_physical_expr(e, schema, self.props, &PhysicalPlanningContext::default())
    }

    pub fn lower(&mut self, plan: &LogicalPlan) -> Result<Node> {
        match plan {
            LogicalPlan::Projection(p) => {
                let input = self.lower(&p.input)?;
                let exprs = p
                    .expr
                    .iter()
                    .map(|e| self.physical(e, p.input.schema()))
                    .collect::<Result<_>>()?;
                Ok(Node::Project {
                    input: Box::new(input),
                    exprs,
                    schema: nullable(p.schema.inner()),
                })
            }
            LogicalPlan::Filter(f) => {
                let input = self.lower(&f.input)?;
                let predicate = self.physical(&f.predicate, f.input.schema())?;
                Ok(Node::Filter {
                    input: Box::new(input),
                    predicate,
                })
            }
            LogicalPlan::TableScan(s) => {
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
            LogicalPlan::SubqueryAlias(a) => self.lower(&a.input),
            LogicalPlan::Sort(s) => {
                if s.fetch.is_some() {
                    return Err(unsupported("ORDER BY … LIMIT (top-N)"));
                }
                // A view is a multiset: ORDER BY alone has no effect on it.
                self.lower(&s.input)
            }
            LogicalPlan::Limit(_) => Err(unsupported("LIMIT/OFFSET")),
            LogicalPlan::Window(_) => Err(unsupported("window functions")),
            LogicalPlan::Aggregate(a) => {
                self.aggregate(&a.input, &a.group_expr, &a.aggr_expr, a.schema.inner())
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let group: Vec<Expr> = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                self.aggregate(input, &group, &[], input.schema().inner())
            }
            LogicalPlan::Distinct(Distinct::On(_)) => Err(unsupported("DISTINCT ON")),
            LogicalPlan::Join(j) => {
                let kind = match j.join_type {
                    JoinType::Inner => JoinKind::Inner,
                    JoinType::Left => JoinKind::Left,
                    JoinType::Right => JoinKind::Right,
                    JoinType::Full => JoinKind::Full,
                    JoinType::LeftSemi => JoinKind::LeftSemi,
                    JoinType::LeftAnti if j.null_aware => {
                        return Err(unsupported("NOT IN (subquery)"))
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
                    JoinKind::LeftSemi | JoinKind::LeftAnti => nullable(ls.inner()),
                    _ => Arc::clone(&joined),
                };
                let op = JoinOp {
                    prefix: self.op_prefix(),
                    kind,
                    null_equal: j.null_equality == NullEquality::NullEqualsNull,
                    left_keys,
                    right_keys,
                    filter,
                    left_width: ls.fields().len(),
                    right_width: rs.fields().len(),
                    joined,
                    schema,
                };
                Ok(Node::Join {
                    left: Box::new(left),
                    right: Box::new(right),
                    op,
                })
            }
            LogicalPlan::Union(u) => {
                let inputs = u
                    .inputs
                    .iter()
                    .map(|i| self.lower(i))
                    .collect::<Result<_>>()?;
                Ok(Node::Union {
                    inputs,
                    schema: nullable(u.schema.inner()),
                })
            }
            LogicalPlan::EmptyRelation(e) => {
                let schema = nullable(e.schema.inner());
                let rows = usize::from(e.produce_one_row);
                let cols = schema
                    .fields()
                    .iter()
                    .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), rows))
                    .collect();
                let opts =
                    datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
                Ok(Node::Constant {
                    batch: RecordBatch::try_new_with_options(schema, cols, &opts)?,
                })
            }
            LogicalPlan::Values(v) => {
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
            other => Err(unsupported(format!("the plan node {}", other.display()))),
        }
    }

    fn aggregate(
        &mut self,
        input: &LogicalPlan,
        group_expr: &[Expr],
        aggr_expr: &[Expr],
        out: &SchemaRef,
    ) -> Result<Node> {
        let in_schema = input.schema();
        let node = self.lower(input)?;
        let mut group = Vec::with_capacity(group_expr.len());
        for g in group_expr {
            if matches!(g, Expr::GroupingSet(_)) {
                return Err(unsupported("GROUPING SETS / ROLLUP / CUBE"));
            }
            group.push(self.physical(g, in_schema)?);
        }
        let mut aggs = Vec::with_capacity(aggr_expr.len());
        for (i, e) in aggr_expr.iter().enumerate() {
            let e = match e {
                Expr::Alias(a) => a.expr.as_ref(),
                e => e,
            };
            let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
                return Err(unsupported(format!("aggregate expression {e}")));
            };
            let name = func.name().to_ascii_lowercase();
            if !params.order_by.is_empty() {
                return Err(unsupported(format!("{name}(… ORDER BY …)")));
            }
            let kind = match (name.as_str(), params.distinct) {
                ("count", false) => AggKind::Count,
                ("count", true) => AggKind::CountDistinct,
                ("sum", false) => AggKind::Sum,
                ("avg" | "mean", false) => AggKind::Avg,
                ("min", _) => AggKind::Min,
                ("max", _) => AggKind::Max,
                ("bool_and", _) => AggKind::BoolAnd,
                ("bool_or", _) => AggKind::BoolOr,
                (n, true) => return Err(unsupported(format!("{n}(DISTINCT …)"))),
                (n, false) => return Err(unsupported(format!("the aggregate function {n}"))),
            };
            if params.args.len() > 1 {
                return Err(unsupported(format!(
                    "{name} with {} arguments",
                    params.args.len()
                )));
            }
            let arg = params
                .args
                .first()
                .map(|a| self.physical(a, in_schema))
                .transpose()?;
            let arg_type = match params.args.first() {
                Some(a) => a.to_field(in_schema)?.1.data_type().clone(),
                None => DataType::Null,
            };
            if matches!(kind, AggKind::Min | AggKind::Max) && !orderable(&arg_type) {
                return Err(unsupported(format!("{name} over {arg_type}")));
            }
            if matches!(kind, AggKind::Sum | AggKind::Avg) && !summable(&arg_type) {
                return Err(unsupported(format!("{name} over {arg_type}")));
            }
            let filter = params
                .filter
                .as_ref()
                .map(|f| self.physical(f, in_schema))
                .transpose()?;
            let out_type = out.field(group_expr.len() + i).data_type().clone();
            aggs.push(AggSpec {
                kind,
                arg,
                filter,
                arg_type,
                out_type,
            });
        }
        let op = AggregateOp {
            prefix: self.op_prefix(),
            group,
            aggs,
            schema: nullable(out),
        };
        Ok(Node::Aggregate {
            input: Box::new(node),
            op,
        })
    }
}

fn orderable(t: &DataType) -> bool {
    t.is_integer()
        || t.is_floating()
        || matches!(
            t,
            DataType::Boolean
                | DataType::Decimal128(..)
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Date32
                | DataType::Time64(_)
                | DataType::Timestamp(..)
        )
}

fn summable(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Int8
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
    )
}

/// `schema` with every field nullable: deltas carry outer-join padding and empty aggregates.
pub fn nullable(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}
