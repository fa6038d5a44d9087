//! A materialized view's contents as a DataFusion `TableProvider`: reads the rows the last
//! committed epoch left in RocksDB (never recomputes the query).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use freshet_common::Datum;
use freshet_dataflow::MaterializedView;
use freshet_sql::df_convert::rows_to_full_batch;

use super::provider::StatementSnapshot;
use crate::engine::Engine;

/// One materialized view, read at the statement's snapshot.
#[derive(Debug)]
pub struct ViewTable {
    engine: Arc<Engine>,
    view: Arc<MaterializedView>,
}

impl ViewTable {
    pub fn new(engine: Arc<Engine>, view: Arc<MaterializedView>) -> Self {
        Self { engine, view }
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.view.schema)
    }

    fn table_type(&self) -> TableType {
        // Served as a base relation: its rows are stored, not derived at read time.
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = StatementSnapshot::of(state, &self.engine);
        let stored = freshet_dataflow::read_view_rows(&snapshot, self.view.id)?;
        let mut batches = Vec::new();
        let mut rows: Vec<Vec<Datum>> = Vec::new();
        for (row, n) in stored {
            for _ in 0..n {
                rows.push(row.clone());
            }
            if rows.len() >= 8192 {
                batches.push(rows_to_full_batch(&rows, &self.view.schema)?);
                rows.clear();
            }
        }
        if !rows.is_empty() || batches.is_empty() {
            batches.push(rows_to_full_batch(&rows, &self.view.schema)?);
        }
        let source = MemorySourceConfig::try_new(&[batches], self.schema(), projection.cloned())?
            .with_limit(limit);
        Ok(DataSourceExec::from_data_source(source))
    }
}
