//! `TableProvider` over a source: for planning views over it, and for ad-hoc `SELECT`s,
//! which re-read from the broker every message the source has committed as of the
//! statement's snapshot (so a SELECT agrees with the views read in the same statement).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use freshet_catalog::SourceDef;

use super::StatementSnapshot;
use crate::coord::engine::Engine;

/// A source as a relation.
#[derive(Debug)]
pub struct SourceTable {
    engine: Arc<Engine>,
    def: Arc<SourceDef>,
    schema: SchemaRef,
}

impl SourceTable {
    pub fn new(engine: Arc<Engine>, def: Arc<SourceDef>) -> Self {
        let schema = Arc::new(crate::coord::sources::source_schema(&def));
        Self {
            engine,
            def,
            schema,
        }
    }
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::access::StatementIdentity::require_select(state, &self.def.name)?;
        let snapshot = StatementSnapshot::of(state, &self.engine);
        // Decode only the payload columns the query reads.
        let payload = self.def.payload_columns().len();
        let columns: Option<Vec<usize>> =
            projection.map(|p| p.iter().copied().filter(|&i| i < payload).collect());
        let batches = crate::coord::sources::replay_committed(
            &self.engine,
            &snapshot,
            self.def.id,
            columns.map(|c| freshet_common::Selection::columns_whole(&c)),
        )
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let exec = MemorySourceConfig::try_new_exec(
            &[batches],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}
