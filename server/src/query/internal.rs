//! `freshet_internal`: system relations about the running server, computed when a statement
//! looks them up.
//!
//! - `metrics (name text, value bigint)`: counters such as `state_entries_read_at_startup`,
//!   the number of table rows, view rows and operator state entries read while the server
//!   started (materialized views resume from their stored state, so this stays 0 however large
//!   the views are).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;

use crate::engine::Engine;

/// The schema name.
pub const INTERNAL_SCHEMA: &str = "freshet_internal";

const TABLES: &[&str] = &["metrics"];

/// The `freshet_internal` schema.
#[derive(Debug)]
pub struct InternalSchema {
    engine: Arc<Engine>,
}

impl InternalSchema {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    fn metrics(&self) -> Result<Arc<dyn TableProvider>> {
        let rows: Vec<(&str, i64)> = vec![
            (
                "state_entries_read_at_startup",
                clamp(self.engine.startup_entries_read()),
            ),
            (
                "state_entries_read",
                clamp(freshet_state::data_entries_read()),
            ),
            ("tables", self.engine.catalog.tables().len() as i64),
            (
                "materialized_views",
                self.engine.catalog.views().len() as i64,
            ),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|(n, _)| *n))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, v)| *v))),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl SchemaProvider for InternalSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| (*t).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match name {
            "metrics" => self.metrics().map(Some),
            _ => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
