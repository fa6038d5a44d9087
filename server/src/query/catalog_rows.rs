//! Catalog relations computed in memory at each scan (the overlays on datafusion-pg-catalog's
//! relations): a [`CatalogRows`] gives the rows, [`Computed`] serves them as a table.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

/// The rows of a catalog relation, as of a scan.
#[async_trait]
pub(super) trait CatalogRows: std::fmt::Debug + Send + Sync + 'static {
    fn schema(&self) -> SchemaRef;

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>>;
}

/// A [`CatalogRows`] as a (view-like) table.
#[derive(Debug)]
pub(super) struct Computed<T>(pub T);

#[async_trait]
impl<T: CatalogRows> TableProvider for Computed<T> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = self.0.rows(state).await?;
        super::pg_index::memory_scan(rows, self.0.schema(), projection, limit)
    }
}
