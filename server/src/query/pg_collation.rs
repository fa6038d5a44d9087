//! `pg_collation` with PostgreSQL 15's columns (the version freshet answers as): the ICU
//! locale is `colliculocale` (datafusion-pg-catalog exports PostgreSQL 17's `colllocale`),
//! and there is no `collicurules`. psql's `\dO` reads `colliculocale`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;

use super::catalog_rows::CatalogRows;
use super::pg_attribute::read_all;

#[derive(Debug)]
pub(super) struct PgCollation {
    schema: SchemaRef,
    /// The exported columns kept, in order.
    kept: Vec<usize>,
    collation: Arc<dyn TableProvider>,
}

impl PgCollation {
    pub(super) fn new(collation: Arc<dyn TableProvider>) -> Self {
        let inner = collation.schema();
        let mut kept = Vec::new();
        let mut fields = Vec::new();
        for (i, f) in inner.fields().iter().enumerate() {
            match f.name().as_str() {
                "collicurules" => continue,
                "colllocale" => fields.push(Field::new("colliculocale", f.data_type().clone(), true)),
                _ => fields.push(f.as_ref().clone()),
            }
            kept.push(i);
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, inner.metadata().clone()));
        PgCollation { schema, kept, collation }
    }
}

#[async_trait]
impl CatalogRows for PgCollation {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        read_all(&self.collation, state)
            .await?
            .into_iter()
            .map(|b| {
                let columns = self.kept.iter().map(|&i| Arc::clone(b.column(i))).collect();
                Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
            })
            .collect()
    }
}
