//! A materialized view's contents as a DataFusion `TableProvider`: streams the rows the last
//! committed epoch left in RocksDB (never recomputes the query). Contents are keyed by the
//! memcomparable encoding of the row, so filters on the view's first column read only their
//! key range.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;
use freshet_common::Datum;
use freshet_dataflow::{decode_contents, MaterializedView};
use freshet_sql::df_convert::rows_to_batch;
use freshet_state::{next_key, Snapshot};

use super::provider::StatementSnapshot;
use super::scan::{column_range, KeyRange};
use crate::engine::Engine;

/// Rows per batch read from a view.
const BATCH_ROWS: usize = 4096;

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

    /// Whether the view keeps a contents log (readers fold it first).
    pub fn has_contents_log(&self) -> bool {
        self.view.has_contents_log()
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

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters narrow the key range; DataFusion still re-applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::access::StatementIdentity::require_select(state, &self.view.name)?;
        let prefix = self.view.contents_prefix();
        let range = self
            .view
            .schema
            .fields()
            .first()
            .and_then(|f| column_range(&prefix, f.name(), f.data_type(), filters))
            .unwrap_or_default();
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.view.schema.fields().len()).collect(),
        };
        let schema = Arc::new(self.view.schema.project(&columns)?);
        let scan = ViewScan {
            snapshot: StatementSnapshot::of(state, &self.engine),
            prefix,
            range,
            schema: Arc::clone(&schema),
            columns,
            limit,
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![Arc::new(scan)],
            None,
            vec![],
            false,
            limit,
        )?))
    }
}

#[derive(Debug)]
struct ViewScan {
    snapshot: Arc<Snapshot>,
    prefix: Vec<u8>,
    range: KeyRange,
    schema: SchemaRef,
    columns: Vec<usize>,
    limit: Option<usize>,
}

impl PartitionStream for ViewScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let snapshot = Arc::clone(&self.snapshot);
        let prefix = self.prefix.clone();
        let upper = self.range.upper.clone();
        let mut next = Some(self.range.lower.clone().unwrap_or_else(|| prefix.clone()));
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        let schema = Arc::clone(&self.schema);
        let columns = self.columns.clone();
        let iter = std::iter::from_fn(move || {
            let lower = next.take()?;
            if remaining == 0 {
                return None;
            }
            let page = match snapshot.scan(&prefix, &lower, upper.as_deref(), BATCH_ROWS) {
                Ok(p) => p,
                Err(e) => return Some(Err(DataFusionError::External(Box::new(e)))),
            };
            if page.len() == BATCH_ROWS {
                next = page.last().map(|(k, _)| next_key(k));
            }
            let mut rows: Vec<Vec<Datum>> = Vec::with_capacity(page.len());
            for (_, v) in &page {
                let (n, row) = match decode_contents(v) {
                    Ok(x) => x,
                    Err(e) => return Some(Err(e)),
                };
                for _ in 0..n {
                    if remaining == 0 {
                        break;
                    }
                    remaining -= 1;
                    rows.push(row.clone());
                }
            }
            if rows.is_empty() && next.is_none() {
                return None;
            }
            Some(rows_to_batch(&rows, &schema, &columns))
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(iter),
        ))
    }
}
