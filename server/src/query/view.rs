//! A materialized view's contents as a DataFusion `TableProvider`: streams the rows the last
//! committed epoch left in RocksDB (never recomputes the query). Contents are keyed by the
//! memcomparable encoding of the row, so filters on the view's first column read only their
//! key range.

use std::collections::{BTreeMap, HashSet};
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
use freshet_common::{Datum, PgError, TableId};
use freshet_dataflow::{contents_key, decode_contents, EpochChanges, MaterializedView};
use freshet_sql::df_convert::rows_to_batch;
use freshet_state::{next_key, row_codec, Snapshot};

use super::pending::{Pending, StatementWrites};
use super::provider::StatementSnapshot;
use super::scan::{column_range, KeyRange};
use crate::coord::engine::Engine;

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
        // In a transaction block, the view as its pending writes change it.
        let pending = match state.config().get_extension::<StatementWrites>() {
            Some(w) => pending_changes(&self.engine, &self.view, &w)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            None => None,
        };
        let scan = ViewScan {
            snapshot: StatementSnapshot::of(state, &self.engine),
            prefix,
            range,
            schema: Arc::clone(&schema),
            columns,
            limit,
            pending: pending.map(Arc::new),
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
    /// A transaction block's changes to the view's rows, laid over the stored ones.
    pending: Option<Arc<Vec<(Vec<Datum>, i64)>>>,
}

impl PartitionStream for ViewScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        if let Some(pending) = &self.pending {
            let batches =
                overlaid(&self.snapshot, &self.prefix, pending, self.limit).and_then(|rows| {
                    rows.chunks(BATCH_ROWS)
                        .map(|c| rows_to_batch(c, &self.schema, &self.columns))
                        .collect::<Result<Vec<_>>>()
                });
            let stream: Vec<Result<_>> = match batches {
                Ok(b) => b.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            return Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                futures::stream::iter(stream),
            ));
        }
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

/// The view's base relations (tables and sources): what it reads, through other views.
fn base_relations(engine: &Engine, view: &MaterializedView) -> HashSet<TableId> {
    let mut out = HashSet::new();
    let mut todo = view.inputs.clone();
    let mut seen = HashSet::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        match engine.dataflows.get(id) {
            Some(v) => todo.extend(v.inputs.iter().copied()),
            None => {
                out.insert(id);
            }
        }
    }
    out
}

/// Whether a transaction block's pending writes touch a relation `view` reads.
pub fn block_touches(engine: &Engine, view: &MaterializedView, writes: &StatementWrites) -> bool {
    if writes.block.is_empty() {
        return false;
    }
    let tables = base_relations(engine, view);
    writes.block.values().any(|p| tables.contains(&p.table))
}

/// What a transaction block's pending writes change in `view`'s rows (`None`: they touch
/// nothing it reads): its base tables' changes run through its dataflow as a preview epoch
/// over the block's snapshot (`Dataflows::preview`), whose writes are thrown away. Nothing
/// is recomputed: the epoch does the work COMMIT will do.
pub async fn pending_changes(
    engine: &Engine,
    view: &MaterializedView,
    writes: &StatementWrites,
) -> Result<Option<Vec<(Vec<Datum>, i64)>>, PgError> {
    if !block_touches(engine, view, writes) {
        return Ok(None);
    }
    let tables = base_relations(engine, view);
    let snapshot = &writes.snapshot;
    if !freshet_catalog::Catalog::view_defined_in(snapshot, view.id).map_err(PgError::internal)? {
        return Err(PgError::not_supported(format!(
            "reading materialized view \"{}\", created after this transaction's snapshot, \
             over the transaction's own writes",
            view.name
        )));
    }
    let touched: Vec<(&Vec<u8>, &Pending)> = writes
        .block
        .iter()
        .filter(|(_, p)| tables.contains(&p.table))
        .collect();
    let keys: Vec<&Vec<u8>> = touched.iter().map(|(k, _)| *k).collect();
    let olds = snapshot.multi_get(&keys).map_err(PgError::internal)?;
    let decode = |b: &[u8]| row_codec::decode_row(b).map_err(PgError::internal);
    let mut changes = EpochChanges::default();
    for ((_, p), old) in touched.into_iter().zip(olds) {
        if let Some(old) = old {
            changes.add(p.table, [decode(&old)?], -1);
        }
        if let Some(row) = &p.row {
            changes.add(p.table, [decode(row)?], 1);
        }
    }
    // Between epochs: operators share per-epoch buffers.
    let _writer = engine.begin_write().await;
    engine
        .dataflows
        .preview(view.id, changes, snapshot)
        .map(Some)
        .map_err(|e| freshet_sql::error::map_df_error(&e))
}

/// The view's rows in `snapshot` with `changes` applied, in contents order, each as many
/// times as it is held (at most `limit` rows).
fn overlaid(
    snapshot: &Snapshot,
    prefix: &[u8],
    changes: &[(Vec<Datum>, i64)],
    limit: Option<usize>,
) -> Result<Vec<Vec<Datum>>> {
    let mut counted: BTreeMap<Vec<u8>, (Vec<Datum>, i64)> = BTreeMap::new();
    let mut add = |row: Vec<Datum>, n: i64| {
        let key = contents_key(&[], &row);
        counted.entry(key).or_insert((row, 0)).1 += n;
    };
    for (_, v) in snapshot
        .scan_prefix(prefix)
        .map_err(|e| DataFusionError::External(Box::new(e)))?
    {
        let (n, row) = decode_contents(&v)?;
        add(row, n);
    }
    for (row, n) in changes {
        add(row.clone(), *n);
    }
    let mut rows = Vec::new();
    let limit = limit.unwrap_or(usize::MAX);
    for (row, n) in counted.into_values() {
        for _ in 0..n.max(0) {
            if rows.len() == limit {
                return Ok(rows);
            }
            rows.push(row.clone());
        }
    }
    Ok(rows)
}
