//! Lowering: an optimized DataFusion `LogicalPlan` becomes a tree of incremental operators.
//!
//! Every construct without an incremental operator is refused with 0A000 naming it, so a
//! view never silently computes something else than its query.

mod reduce;
mod relational;
mod semi_push;
pub mod temporal;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Distinct, Expr, ExprSchemable, LogicalPlan, SortExpr, Subquery,
    Window,
};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{create_physical_expr, create_physical_sort_exprs, PhysicalExpr};
use datafusion::physical_planner::create_window_expr;
use freshet_common::{PgError, TableId};
use freshet_state::operator_prefix;

use crate::ops::{AggKind, AggSpec, AggregateOp, JoinKind, JoinOp, Node, OrderedMode, OrderedOp};

/// Resolves a relation a view reads: its id and full (unprojected) schema.
pub trait Relations {
    fn resolve(&self, name: &str) -> Option<(TableId, SchemaRef)>;

    /// The event-time column of a relation with a watermark (a source declared
    /// `WATERMARK FOR`).
    fn event_time_column(&self, _relation: TableId) -> Option<usize> {
        None
    }

    /// How a table is stored in key order: by its primary key (first, when it has one) and
    /// through each of its indexes; none for views and sources.
    fn stored_keys(&self, _relation: TableId) -> Vec<crate::ops::TableKey> {
        Vec::new()
    }
}

/// 0A000 naming `what`, as a DataFusion error (the SQL layer unwraps it).
pub fn unsupported(what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(Box::new(PgError::not_supported(format!(
        "{what} in a materialized view"
    ))))
}

/// Lowers plans of one view, numbering its stateful operators.
pub struct Lowering<'a> {
    view: TableId,
    next_op: u32,
    props: &'a ExecutionProps,
    relations: &'a dyn Relations,
    /// Aggregates keep MIN/MAX values as one entry per occurrence (see
    /// `AggregateOp::with_occurrences`).
    occurrences: bool,
    /// Joins read sides that are tables joined on their key from the tables (see
    /// `ops/join_tables.rs`).
    table_reads: bool,
    /// The indexes they may read through (`None`: any).
    index_reads: Option<Vec<TableId>>,
    /// Semi joins read their left side from its table too, and
    /// [`Lowering::reduce_aggregates`] applies (see `lower/reduce.rs`).
    reduction: bool,
    /// [`Lowering::push_semi_joins`] applies (see `lower/semi_push.rs`).
    pushdown: bool,
}

impl<'a> Lowering<'a> {
    pub fn new(view: TableId, props: &'a ExecutionProps, relations: &'a dyn Relations) -> Self {
        Self {
            view,
            next_op: 0,
            props,
            relations,
            occurrences: false,
            table_reads: false,
            index_reads: None,
            reduction: false,
            pushdown: false,
        }
    }

    /// Semi joins read a left side that is a table joined on its key from the table (it
    /// never reaches the output unmatched), which lets [`Lowering::reduce_aggregates`] restrict
    /// aggregates joined on their group key without state (new views do; existing views keep
    /// the layout their catalog entry records).
    pub fn with_semi_join_reduction(mut self, on: bool) -> Self {
        self.reduction = on;
        self
    }

    /// Joins that only filter become semi joins, selective semi joins are pushed below
    /// inner joins, and a semi join may read both sides from tables (`ops::table_sides`;
    /// new views do; existing views keep the plan their catalog entry records).
    pub fn with_semi_join_pushdown(mut self, on: bool) -> Self {
        self.pushdown = on;
        self
    }

    /// `plan` with the rewrites this lowering's views take: semi joins pushed down, then
    /// aggregates restricted to joined keys, each where enabled.
    pub fn rewrite(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let plan = match self.pushdown {
            true => self.push_semi_joins(plan)?.0,
            false => plan,
        };
        Ok(match self.reduction {
            true => self.reduce_aggregates(plan)?.0,
            false => plan,
        })
    }

    /// Joins read sides that are tables joined on a prefix of their primary key or of an
    /// index from the tables instead of keeping them as state (new views do; existing views
    /// keep the layout their catalog entry records). `indexes`: the indexes they may read
    /// through (`None`: any, for a new view; a view planned again at start reads through the
    /// ones its catalog entry records, whatever indexes were created since).
    pub fn with_table_reads(mut self, on: bool, indexes: Option<Vec<TableId>>) -> Self {
        self.table_reads = on;
        self.index_reads = indexes;
        self
    }

    /// How `relation` is stored in key order, as far as this view may read it.
    pub(crate) fn stored_keys(&self, relation: TableId) -> Vec<crate::ops::TableKey> {
        let mut keys = self.relations.stored_keys(relation);
        if let Some(allowed) = &self.index_reads {
            keys.retain(|k| k.index.is_none_or(|i| allowed.contains(&i)));
        }
        keys
    }

    /// Aggregates keep MIN/MAX values as one entry per occurrence (new views do; existing
    /// views keep the layout their catalog entry records).
    pub fn with_occurrences(mut self, on: bool) -> Self {
        self.occurrences = on;
        self
    }

    /// A new aggregate operator, numbered next.
    fn aggregate_op(
        &mut self,
        group: Vec<Arc<dyn PhysicalExpr>>,
        aggs: Vec<AggSpec>,
        schema: SchemaRef,
    ) -> AggregateOp {
        AggregateOp::new(self.op_prefix(), group, aggs, schema).with_occurrences(self.occurrences)
    }

    /// `root` under an `EMIT ON WINDOW CLOSE` gate closing on its first output column bounded
    /// by a source's watermark (see `crate::event_time`); 0A000 without one.
    pub fn emit_on_window_close(&mut self, root: Node) -> Result<Node> {
        let relations = self.relations;
        let bounds = crate::event_time::bounds(&root, &|r| relations.event_time_column(r));
        let Some((column, bound)) = bounds
            .into_iter()
            .enumerate()
            .find_map(|(c, b)| Some((c, b?)))
        else {
            return Err(unsupported(
                "EMIT ON WINDOW CLOSE without a column that follows a source's watermark \
                 (such as window_start or window_end of TUMBLE or HOP over a source declared \
                 with WATERMARK FOR, in GROUP BY)",
            ));
        };
        let op = crate::ops::WindowCloseOp {
            prefix: self.op_prefix(),
            column,
            bound,
            schema: root.schema(),
        };
        Ok(Node::WindowClose {
            input: Box::new(root),
            op,
        })
    }

    fn op_prefix(&mut self) -> Vec<u8> {
        self.next_op += 1;
        operator_prefix(self.view, self.next_op)
    }

    fn physical(&self, e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        if e.exists(|e| Ok(matches!(e, Expr::ScalarSubquery(_))))? {
            return Err(unsupported(format!("the scalar subquery in {e}")));
        }
        if temporal::mentions_now(e) {
            return Err(unsupported(format!(
                "now() in {e} (only a WHERE clause may compare now() with the rows)"
            )));
        }
        let physical =
            create_physical_expr(e, schema, self.props, &PhysicalPlanningContext::default())?;
        // PostgreSQL's arithmetic, as ad-hoc queries have it.
        freshet_sql::arith::pg_expr(physical)
    }

    pub fn lower(&mut self, plan: &LogicalPlan) -> Result<Node> {
        match plan {
            LogicalPlan::Projection(p) => {
                let (input, schema, exprs) = self.with_subqueries(&p.input, &p.expr)?;
                let exprs = exprs
                    .iter()
                    .map(|e| self.physical(e, &schema))
                    .collect::<Result<_>>()?;
                Ok(Node::Project {
                    input: Box::new(input),
                    exprs,
                    schema: nullable(p.schema.inner()),
                })
            }
            LogicalPlan::Filter(f) => self.filter(f),
            LogicalPlan::TableScan(s) => self.table_scan(s),
            LogicalPlan::SubqueryAlias(a) => self.lower(&a.input),
            LogicalPlan::Unnest(u) => self.unnest(u),
            LogicalPlan::Sort(s) => match s.fetch {
                Some(fetch) => self.top_n(&s.input, &s.expr, 0, Some(fetch)),
                // A view is a multiset: ORDER BY alone has no effect on it.
                None => self.lower(&s.input),
            },
            LogicalPlan::Limit(l) => self.limit(l),
            LogicalPlan::Window(w) => self.window(w),
            LogicalPlan::RecursiveQuery(_) => Err(unsupported("WITH RECURSIVE")),
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
            LogicalPlan::Join(j) => self.join(j),
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
            LogicalPlan::EmptyRelation(e) => relational::empty_relation(e),
            LogicalPlan::Values(v) => self.values(v),
            other => Err(unsupported(format!("the plan node {}", other.display()))),
        }
    }

    /// Lowers `input` for expressions `exprs` that may hold uncorrelated scalar subqueries:
    /// each subquery becomes a one-row relation (a global aggregate that refuses a second row
    /// with 21000, as PostgreSQL does) cross-joined to the input, and its occurrences become
    /// references to that column. Returns the node, its schema and the rewritten expressions.
    fn with_subqueries(
        &mut self,
        input: &LogicalPlan,
        exprs: &[Expr],
    ) -> Result<(Node, DFSchema, Vec<Expr>)> {
        let mut subqueries: Vec<Subquery> = Vec::new();
        for e in exprs {
            e.apply(|e| {
                if let Expr::ScalarSubquery(sq) = e {
                    if !subqueries.contains(sq) {
                        subqueries.push(sq.clone());
                    }
                    return Ok(TreeNodeRecursion::Jump);
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        let mut node = self.lower(input)?;
        let mut schema = input.schema().as_ref().clone();
        if subqueries.is_empty() {
            return Ok((node, schema, exprs.to_vec()));
        }
        let mut names = Vec::with_capacity(subqueries.len());
        for (i, sq) in subqueries.iter().enumerate() {
            if !sq.outer_ref_columns.is_empty() {
                return Err(unsupported("a correlated scalar subquery in this position"));
            }
            let sq_schema = sq.subquery.schema();
            if sq_schema.fields().len() != 1 {
                return Err(unsupported(
                    "a scalar subquery returning more than one column",
                ));
            }
            let name = format!("__freshet_scalar_subquery_{}_{i}", self.next_op + 1);
            let field = sq_schema
                .field(0)
                .as_ref()
                .clone()
                .with_name(&name)
                .with_nullable(true);
            let one_row = Arc::new(Schema::new(vec![field.clone()]));
            let sq_node = self.lower(&sq.subquery)?;
            let single = AggSpec {
                kind: AggKind::Single,
                arg: Some(Arc::new(Column::new(sq_schema.field(0).name(), 0))),
                filter: None,
                arg_type: field.data_type().clone(),
                out_type: field.data_type().clone(),
                order: vec![],
                delimiter: String::new(),
            };
            let agg = self.aggregate_op(vec![], vec![single], Arc::clone(&one_row));
            let right = Node::Aggregate {
                input: Box::new(sq_node),
                op: agg,
            };
            let right_df = DFSchema::try_from(one_row.as_ref().clone())?;
            let joined_df = schema.join(&right_df)?;
            let joined = nullable(joined_df.inner());
            let op = JoinOp {
                prefix: self.op_prefix(),
                cache: Default::default(),
                kind: JoinKind::Inner,
                null_equal: false,
                left_keys: vec![],
                right_keys: vec![],
                filter: None,
                left_width: schema.fields().len(),
                right_width: 1,
                joined: Arc::clone(&joined),
                schema: joined,
                expiry: Default::default(),
                tables: [None, None],
            };
            node = Node::Join {
                left: Box::new(node),
                right: Box::new(right),
                op,
            };
            schema = joined_df;
            names.push(name);
        }
        let rewritten = exprs
            .iter()
            .map(|e| {
                e.clone()
                    .transform(|e| match &e {
                        Expr::ScalarSubquery(sq) => {
                            let i = subqueries.iter().position(|s| s == sq).unwrap_or(0);
                            Ok(Transformed::new(
                                Expr::Column(datafusion::common::Column::new_unqualified(
                                    &names[i],
                                )),
                                true,
                                TreeNodeRecursion::Jump,
                            ))
                        }
                        _ => Ok(Transformed::no(e)),
                    })
                    .map(|t| t.data)
            })
            .collect::<Result<_>>()?;
        Ok((node, schema, rewritten))
    }

    fn top_n(
        &mut self,
        input: &LogicalPlan,
        order: &[SortExpr],
        skip: usize,
        fetch: Option<usize>,
    ) -> Result<Node> {
        let node = self.lower(input)?;
        let order_by = create_physical_sort_exprs(
            order,
            input.schema(),
            self.props,
            &PhysicalPlanningContext::default(),
        )?;
        let schema = node.schema();
        let op = OrderedOp {
            prefix: self.op_prefix(),
            partition_by: vec![],
            order_by,
            mode: OrderedMode::TopN { skip, fetch },
            input_schema: Arc::clone(&schema),
            schema,
            prune: false,
        };
        Ok(Node::Ordered {
            input: Box::new(node),
            op,
        })
    }

    fn window(&mut self, w: &Window) -> Result<Node> {
        let in_schema = w.input.schema();
        let mut shape: Option<(&Vec<Expr>, &Vec<SortExpr>)> = None;
        for e in &w.window_expr {
            let f = match e {
                Expr::Alias(a) => match a.expr.as_ref() {
                    Expr::WindowFunction(f) => f,
                    _ => return Err(unsupported(format!("window expression {e}"))),
                },
                Expr::WindowFunction(f) => f,
                _ => return Err(unsupported(format!("window expression {e}"))),
            };
            if f.params.distinct {
                return Err(unsupported("DISTINCT in a window function"));
            }
            let this = (&f.params.partition_by, &f.params.order_by);
            match shape {
                None => shape = Some(this),
                Some(s) if s == this => {}
                Some(_) => {
                    return Err(unsupported(
                        "window functions with different PARTITION BY / ORDER BY in one window",
                    ))
                }
            }
        }
        let Some((partition, order)) = shape else {
            return self.lower(&w.input);
        };
        let node = self.lower(&w.input)?;
        let ctx = PhysicalPlanningContext::default();
        let exprs = w
            .window_expr
            .iter()
            .map(|e| create_window_expr(e, in_schema, self.props, &ctx))
            .collect::<Result<_>>()?;
        let partition_by = partition
            .iter()
            .map(|e| self.physical(e, in_schema))
            .collect::<Result<_>>()?;
        let order_by = create_physical_sort_exprs(order, in_schema, self.props, &ctx)?;
        let op = OrderedOp {
            prefix: self.op_prefix(),
            partition_by,
            order_by,
            mode: OrderedMode::Window {
                exprs,
                rows: None,
                row_numbers: w.window_expr.iter().all(is_row_number),
            },
            input_schema: node.schema(),
            schema: nullable(w.schema.inner()),
            prune: false,
        };
        Ok(Node::Ordered {
            input: Box::new(node),
            op,
        })
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
            let kind = match (name.as_str(), params.distinct) {
                ("count", false) => AggKind::Count,
                ("count", true) => AggKind::CountDistinct,
                ("sum", false) => AggKind::Sum,
                ("avg" | "mean", false) => AggKind::Avg,
                ("min", _) => AggKind::Min,
                ("max", _) => AggKind::Max,
                ("bool_and", _) => AggKind::BoolAnd,
                ("bool_or", _) => AggKind::BoolOr,
                ("string_agg", false) => AggKind::StringAgg,
                ("array_agg", false) => AggKind::ArrayAgg,
                ("first_value" | "last_value", false) => AggKind::FirstValue,
                (n, true) => return Err(unsupported(format!("{n}(DISTINCT …)"))),
                (n, false) => return Err(unsupported(format!("the aggregate function {n}"))),
            };
            if params.null_treatment == Some(NullTreatment::IgnoreNulls) {
                return Err(unsupported(format!("{name}(… IGNORE NULLS)")));
            }
            // string_agg's delimiter: a constant.
            let mut delimiter = String::new();
            if kind == AggKind::StringAgg && params.args.len() == 2 {
                match &params.args[1] {
                    Expr::Literal(v, _) => {
                        if let Some(d) = v.try_as_str().flatten() {
                            delimiter = d.to_owned();
                        }
                    }
                    _ => return Err(unsupported("string_agg with a non-constant delimiter")),
                }
            } else if params.args.len() > 1 {
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
            // Only these depend on the order of their inputs; last_value is first_value in
            // the reverse order.
            let order = match name.as_str() {
                "string_agg" | "array_agg" | "first_value" => params.order_by.clone(),
                "last_value" => params
                    .order_by
                    .iter()
                    .map(|o| SortExpr::new(o.expr.clone(), !o.asc, !o.nulls_first))
                    .collect(),
                _ => vec![],
            };
            let order = create_physical_sort_exprs(
                &order,
                in_schema,
                self.props,
                &PhysicalPlanningContext::default(),
            )?;
            aggs.push(AggSpec {
                kind,
                arg,
                filter,
                arg_type,
                out_type,
                order,
                delimiter,
            });
        }
        let relations = self.relations;
        let closing =
            crate::event_time::closing(&node, &group, &|r| relations.event_time_column(r));
        let op = self
            .aggregate_op(group, aggs, nullable(out))
            .with_closing(closing);
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

/// `root` with its unsigned integer columns (which PostgreSQL has no type for: `row_number()`,
/// `rank()` …) cast to signed ones, as PostgreSQL's `bigint` results are.
pub fn storable(root: Node) -> Result<Node> {
    check_state_types(&root)?;
    let schema = root.schema();
    let target = |t: &DataType| match t {
        DataType::UInt8 => Some(DataType::Int16),
        DataType::UInt16 => Some(DataType::Int32),
        DataType::UInt32 | DataType::UInt64 => Some(DataType::Int64),
        _ => None,
    };
    if !schema
        .fields()
        .iter()
        .any(|f| target(f.data_type()).is_some())
    {
        return Ok(root);
    }
    let mut exprs: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
    let mut fields = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let col: Arc<dyn PhysicalExpr> = Arc::new(
            datafusion::physical_expr::expressions::Column::new(f.name(), i),
        );
        match target(f.data_type()) {
            Some(t) => {
                exprs.push(datafusion::physical_expr::expressions::cast(
                    col,
                    &schema,
                    t.clone(),
                )?);
                fields.push(f.as_ref().clone().with_data_type(t));
            }
            None => {
                exprs.push(col);
                fields.push(f.as_ref().clone());
            }
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Ok(Node::Project {
        input: Box::new(root),
        exprs,
        schema,
    })
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

/// Refuses stateful operators over columns whose values cannot be kept in state (structs,
/// e.g. a source's nested JSON objects): only their scalar fields may reach joins, aggregates
/// and ordered operators.
fn check_state_types(node: &Node) -> Result<()> {
    fn nested(t: &DataType) -> bool {
        match t {
            DataType::Struct(_) | DataType::Map(_, _) | DataType::Union(_, _) => true,
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                nested(f.data_type())
            }
            _ => false,
        }
    }
    let mut inputs: Vec<&Node> = Vec::new();
    match node {
        Node::Aggregate { input, .. } | Node::Ordered { input, .. } => inputs.push(input),
        Node::Join { left, right, .. } => {
            inputs.push(left);
            inputs.push(right);
        }
        _ => {}
    }
    for i in &inputs {
        if let Some(f) = i.schema().fields().iter().find(|f| nested(f.data_type())) {
            return Err(unsupported(format!(
                "a join, aggregate or ordering over the nested column \"{}\" (select its fields, e.g. (col).field, instead)",
                f.name()
            )));
        }
    }
    node.children().into_iter().try_for_each(check_state_types)
}

/// Whether a window expression is `row_number()` (aliased or not).
fn is_row_number(e: &Expr) -> bool {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    matches!(e, Expr::WindowFunction(f) if f.fun.name() == "row_number")
}
