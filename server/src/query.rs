//! DataFusion integration: our catalog as DataFusion catalog and schema providers, tables as
//! `TableProvider`s that scan RocksDB snapshots and write through the engine.
//!
//! This is the only module of the server besides `session` that names DataFusion types.

mod catalog_rows;
mod copy;
pub mod dml;
pub mod insert;
mod information_schema;
mod internal;
pub mod pending;
mod pg_attribute;
mod pg_class_oids;
mod pg_collation;
mod pg_depend;
mod pg_empty;
mod pg_proc;
mod pg_regproc;
pub(crate) mod pg_index;
mod pg_roles;
mod pg_sequence;
pub mod pg_settings;
mod pg_stat_activity;
pub mod plain_view;
mod pg_views;
pub mod point;
mod provider;
mod rowexpr;
mod scan;
mod source;
mod table;
pub(crate) mod indexes;
mod view;
mod write;

pub use copy::CopyIn;
pub use information_schema::InformationSchemaOverlay;
pub use internal::{InternalSchema, INTERNAL_SCHEMA};
pub use pg_attribute::PgCatalogOverlay;
pub use provider::{FreshetCatalogProvider, StatementSnapshot};
pub use source::SourceTable;
pub use crate::coord::engine::table_schema;
pub use table::StoredTable;
pub use view::ViewTable;
pub use write::truncate;

/// Name of our DataFusion catalog; also the database name clients connect to.
pub use crate::DATABASE_NAME;

/// Whether `plan` (subqueries included) scans a materialized view keeping a contents log.
pub fn reads_logged_view(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::logical_expr::LogicalPlan;
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let logged = datafusion::datasource::source_as_provider(&scan.source)
                .ok()
                .and_then(|p| {
                    let any: &dyn std::any::Any = p.as_ref();
                    any.downcast_ref::<ViewTable>()
                        .map(ViewTable::has_contents_log)
                })
                .unwrap_or(false);
            if logged {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Plans one statement with `state`. PostgreSQL allows output columns of the same name
/// (`SELECT id, id::text`); DataFusion does not: such a statement is planned again with its
/// columns aliased apart.
pub async fn plan_statement(
    state: &datafusion::execution::SessionState,
    stmt: freshet_sql::ast::Statement,
) -> Result<datafusion::logical_expr::LogicalPlan, freshet_common::PgError> {
    use datafusion::sql::parser::Statement as DfStatement;
    let df = |e: datafusion::error::DataFusionError| freshet_sql::error::map_df_error(&e);
    match state
        .statement_to_plan(DfStatement::Statement(Box::new(stmt.clone())))
        .await
    {
        Err(e) if e.to_string().contains("require unique expression names") => {
            let mut stmt = stmt;
            if !freshet_sql::names::alias_output_columns(&mut stmt) {
                return Err(df(e));
            }
            state
                .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
                .await
                .map_err(df)
        }
        r => r.map_err(df),
    }
}
