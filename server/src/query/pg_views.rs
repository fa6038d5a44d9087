//! `pg_views` and `pg_matviews` from our catalog: a row per view and per materialized view,
//! with its owner and `pg_get_viewdef`'s text of its query.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use freshet_catalog::{Catalog, DEFAULT_SCHEMA};

/// `pg_views` or `pg_matviews` as the catalog is now; `None` for other names.
pub fn table(catalog: &Catalog, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
    let names: Vec<String> = match name {
        "pg_views" => catalog.plain_views().iter().map(|v| v.name.clone()).collect(),
        "pg_matviews" => catalog.views().iter().map(|v| v.name.clone()).collect(),
        _ => return Ok(None),
    };
    let text = |values: Vec<Option<String>>| Arc::new(StringArray::from(values)) as ArrayRef;
    let owner = |n: &String| catalog.object_access(n).map(|a| a.owner);
    let mut fields = vec![
        Field::new("schemaname", DataType::Utf8, true),
        Field::new(if name == "pg_views" { "viewname" } else { "matviewname" }, DataType::Utf8, true),
        Field::new(if name == "pg_views" { "viewowner" } else { "matviewowner" }, DataType::Utf8, true),
    ];
    let mut columns = vec![
        text(names.iter().map(|_| Some(DEFAULT_SCHEMA.to_owned())).collect()),
        text(names.iter().map(|n| Some(n.clone())).collect()),
        text(names.iter().map(owner).collect()),
    ];
    if name == "pg_matviews" {
        fields.push(Field::new("tablespace", DataType::Utf8, true));
        fields.push(Field::new("hasindexes", DataType::Boolean, true));
        fields.push(Field::new("ispopulated", DataType::Boolean, true));
        columns.push(text(names.iter().map(|_| None).collect()));
        columns.push(Arc::new(BooleanArray::from(vec![false; names.len()])));
        columns.push(Arc::new(BooleanArray::from(vec![true; names.len()])));
    }
    fields.push(Field::new("definition", DataType::Utf8, true));
    columns.push(text(
        names
            .iter()
            .map(|n| crate::functions::view_definition(catalog, n))
            .collect(),
    ));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?)))
}
