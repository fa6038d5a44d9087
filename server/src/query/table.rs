//! A catalog table as a DataFusion `TableProvider`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::streaming::StreamingTableExec;
use datafusion::physical_plan::ExecutionPlan;
use freshet_catalog::TableDef;
use freshet_common::PgError;

use super::pending::StatementWrites;
use super::provider::StatementSnapshot;
use super::scan::{scan_ranges, RowCheck, TableScan, KEY_COLUMN};
use super::write::TableSink;
use crate::coord::engine::{table_schema, Engine};

/// One table of the catalog, bound to the engine for reads and INSERTs.
#[derive(Debug)]
pub struct StoredTable {
    engine: Arc<Engine>,
    def: Arc<TableDef>,
    schema: SchemaRef,
}

impl StoredTable {
    /// Wraps a table definition.
    pub fn new(engine: Arc<Engine>, def: Arc<TableDef>) -> Self {
        let schema = Arc::new(table_schema(&def));
        Self {
            engine,
            def,
            schema,
        }
    }

    /// The table as a DELETE or UPDATE reads its target: its columns and then
    /// [`KEY_COLUMN`], each row's store key (see `dml.rs`).
    pub fn keyed(engine: Arc<Engine>, def: Arc<TableDef>) -> Self {
        let mut fields = table_schema(&def).fields().to_vec();
        fields.push(Arc::new(Field::new(KEY_COLUMN, DataType::Binary, false)));
        Self {
            engine,
            def,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

#[async_trait]
impl TableProvider for StoredTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters on the leading column of the primary key or an index narrow the scan, and
        // comparisons of a column with a literal skip rows undecoded; DataFusion still
        // re-applies them (Inexact).
        Ok(filters
            .iter()
            .map(|f| {
                let narrows = scan_ranges(&self.def, &self.schema, std::slice::from_ref(*f));
                if narrows.is_some() || RowCheck::of(&self.def, &self.schema, f).is_some() {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // A DELETE's or UPDATE's own target (keyed) is checked with the statement.
        if self.schema.fields().len() == self.def.columns.len() {
            crate::access::StatementIdentity::require_select(state, &self.def.name)?;
        }
        let snapshot = StatementSnapshot::of(state, &self.engine);
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let projected = Arc::new(self.schema.project(&columns)?);
        let ranges = scan_ranges(&self.def, &self.schema, filters).unwrap_or_default();
        let overlay = state
            .config()
            .get_extension::<StatementWrites>()
            .map(|w| Arc::clone(&w.block));
        let scan = TableScan::new(
            Arc::clone(&self.def),
            snapshot,
            projected,
            columns,
            ranges,
            limit,
        )
        .with_overlay(overlay)
        .with_checks(
            filters
                .iter()
                .filter_map(|f| RowCheck::of(&self.def, &self.schema, f))
                .collect(),
        );
        let schema = Arc::clone(scan.schema_ref());
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![Arc::new(scan)],
            None,
            vec![],
            false,
            limit,
        )?))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.schema.fields().len() != self.def.columns.len() {
            return Err(PgError::not_supported("INSERT into a DML target scan").into_df());
        }
        if insert_op != InsertOp::Append {
            return Err(PgError::not_supported(format!("INSERT {insert_op}")).into_df());
        }
        let sink = TableSink::new(Arc::clone(&self.def), Arc::clone(&self.schema));
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    // DELETE, UPDATE and TRUNCATE never reach DataFusion's DML hooks (which would write
    // while the plan is built): the session plans and runs them itself (`dml.rs`).
    async fn delete_from(
        &self,
        _state: &dyn Session,
        _filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(PgError::not_supported("DELETE through this path").into_df())
    }

    async fn update(
        &self,
        _state: &dyn Session,
        _assignments: Vec<(String, Expr)>,
        _filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(PgError::not_supported("UPDATE through this path").into_df())
    }

    async fn truncate(&self, _state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        Err(PgError::not_supported("TRUNCATE through this path").into_df())
    }
}

/// Wraps our error for DataFusion; the server unwraps it again with its SQLSTATE intact.
pub trait IntoDataFusion {
    /// Boxes into `DataFusionError::External`.
    fn into_df(self) -> datafusion::error::DataFusionError;
}

impl IntoDataFusion for PgError {
    fn into_df(self) -> datafusion::error::DataFusionError {
        datafusion::error::DataFusionError::External(Box::new(self))
    }
}
