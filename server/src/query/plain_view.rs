//! Views (`CREATE VIEW`) as DataFusion `TableProvider`s: the view's query, planned when a
//! statement names the view, run as its owner.
//!
//! A view is not inlined into the statement's plan (DataFusion inlines providers that offer
//! their logical plan): it stays one scan, so reading it needs SELECT on the view only, and
//! its query reads the relations under it with its owner's privileges, as in PostgreSQL.
//! Filters, projections and limits of the statement are handed to the scan, which plans them
//! on top of the view's query (the optimizer pushes them further down). A materialized view
//! over a view maintains the view's query inside its own dataflow ([`inline`]).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::Column;
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use freshet_catalog::PlainViewDef;
use freshet_common::{PgError, TableId};

use crate::access::{Identity, StatementIdentity};
use crate::coord::engine::Engine;

/// One view, its query planned for the statement that names it.
#[derive(Debug)]
pub struct PlainViewTable {
    engine: Arc<Engine>,
    def: Arc<PlainViewDef>,
    /// The view's query, its output columns named as the view's.
    plan: LogicalPlan,
}

impl PlainViewTable {
    /// Plans `def`'s query with the server's definer state.
    pub async fn plan(engine: &Arc<Engine>, def: Arc<PlainViewDef>) -> Result<Self> {
        let state = engine
            .definer
            .state()
            .ok_or_else(|| DataFusionError::Plan("views are not available yet".into()))?;
        let plan = plan_query(state, &def.sql)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let plan = named(plan, &def.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>())?;
        Ok(Self {
            engine: Arc::clone(engine),
            def,
            plan,
        })
    }

    /// The view's definition.
    pub fn def(&self) -> &PlainViewDef {
        &self.def
    }

    /// The session state the view's query runs with: the statement's, reading as the view's
    /// owner.
    fn owner_state(&self, state: &dyn Session) -> Result<SessionState> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("a view scanned outside a session".into()))?;
        let mut state = state.clone();
        if let Some(access) = self.engine.catalog.object_access(&self.def.name) {
            state.config_mut().set_extension(Arc::new(StatementIdentity {
                identity: Identity::login(&access.owner, false),
                catalog: Arc::clone(&self.engine.catalog),
            }));
        }
        Ok(state)
    }
}

/// Plans the text of one SELECT (as stored in a view's definition).
pub async fn plan_query(state: &SessionState, sql: &str) -> Result<LogicalPlan, PgError> {
    let mut stmts = freshet_sql::parse(sql)?;
    let (Some(stmt), true) = (stmts.pop(), stmts.is_empty()) else {
        return Err(PgError::internal(format!("a view's query is not one statement: {sql}")));
    };
    super::plan_statement(state, stmt).await
}

/// `plan` with its output columns renamed to `names` (the first `names.len()` of them).
pub fn named(plan: LogicalPlan, names: &[String]) -> Result<LogicalPlan> {
    let columns = plan.schema().columns();
    if columns.len() != names.len() {
        return Err(DataFusionError::Plan(format!(
            "a view's query has {} columns where the view has {}: recreate the view",
            columns.len(),
            names.len()
        )));
    }
    let exprs: Vec<Expr> = columns
        .into_iter()
        .zip(names)
        .map(|(c, n)| Expr::Column(c).alias(n))
        .collect();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

#[async_trait]
impl TableProvider for PlainViewTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(self.plan.schema().inner())
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.def.sql)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Applied on top of the view's query in `scan`.
        Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        StatementIdentity::require_select(state, &self.def.name)?;
        let mut plan = LogicalPlanBuilder::from(self.plan.clone());
        // The statement's filters name the view's columns under the statement's alias for it;
        // the view's output columns are unqualified.
        if let Some(filter) = filters.iter().cloned().map(unnormalize_col).reduce(Expr::and) {
            plan = plan.filter(filter)?;
        }
        if let Some(projection) = projection {
            let schema = self.plan.schema();
            let fields = projection
                .iter()
                .map(|&i| Expr::Column(Column::from(schema.qualified_field(i))));
            plan = plan.project(fields)?;
        }
        if let Some(limit) = limit {
            plan = plan.limit(0, Some(limit))?;
        }
        let plan = plan.build()?;
        self.owner_state(state)?.create_physical_plan(&plan).await
    }
}

/// The provider behind `scan`, when it is a view's.
fn plain_view_of(scan: &datafusion::logical_expr::TableScan) -> Option<Arc<dyn TableProvider>> {
    let provider = source_as_provider(&scan.source).ok()?;
    let any: &dyn std::any::Any = provider.as_ref();
    any.is::<PlainViewTable>().then_some(provider)
}

/// `plan` with every scan of a view replaced by the view's query (nested views too), for a
/// materialized view's dataflow; and the ids of the views it read.
pub fn inline(plan: LogicalPlan) -> Result<(LogicalPlan, Vec<TableId>)> {
    let mut read = Vec::new();
    let plan = plan
        .transform_down_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(provider) = plain_view_of(scan) else {
                return Ok(Transformed::no(node));
            };
            let any: &dyn std::any::Any = provider.as_ref();
            let view = any.downcast_ref::<PlainViewTable>().expect("checked above");
            read.push(view.def.id);
            let mut b = LogicalPlanBuilder::from(view.plan.clone());
            if let Some(filter) = scan.filters.iter().cloned().map(unnormalize_col).reduce(Expr::and) {
                b = b.filter(filter)?;
            }
            if let Some(projection) = &scan.projection {
                let schema = view.plan.schema();
                b = b.project(
                    projection
                        .iter()
                        .map(|&i| Expr::Column(Column::from(schema.qualified_field(i)))),
                )?;
            }
            if let Some(fetch) = scan.fetch {
                b = b.limit(0, Some(fetch))?;
            }
            Ok(Transformed::yes(b.alias(scan.table_name.clone())?.build()?))
        })?
        .data;
    read.sort();
    read.dedup();
    Ok((plan, read))
}

/// The names of the relations in `public` (tables, views, materialized views, sources) that
/// `plan` scans, views included as one scan each.
pub fn relations_scanned(plan: &LogicalPlan) -> Vec<String> {
    let mut out = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let ours = scan
                .table_name
                .schema()
                .is_none_or(|s| s == freshet_catalog::DEFAULT_SCHEMA);
            if ours {
                out.push(scan.table_name.table().to_owned());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out.sort();
    out.dedup();
    out
}
