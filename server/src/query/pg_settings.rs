//! `pg_settings` with the session's variables (`SHOW ALL`'s), as PostgreSQL's view shows
//! them: the value, the default (`boot_val`, `reset_val`), where the value came from
//! (`default`, or `session` once SET) and whether a session may change it (`context`).
//! psql's `\dconfig` lists those not at their default. (datafusion-pg-catalog's view has one
//! row and no `boot_val`.)

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::error::Result;

use super::catalog_rows::CatalogRows;

/// One variable as a statement's session has it.
#[derive(Debug, Clone)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub default: String,
    /// Set by the session (SET, or a startup parameter).
    pub set: bool,
    /// Only the server sets it.
    pub read_only: bool,
}

/// The session's variables, as a statement's state carries them: read when asked.
pub struct SessionSettings(pub Box<dyn Fn() -> Vec<Setting> + Send + Sync>);

impl std::fmt::Debug for SessionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSettings")
    }
}

#[derive(Debug)]
pub struct PgSettings;

impl PgSettings {
    const COLUMNS: [&'static str; 17] = [
        "name",
        "setting",
        "unit",
        "category",
        "short_desc",
        "extra_desc",
        "context",
        "vartype",
        "source",
        "min_val",
        "max_val",
        "enumvals",
        "boot_val",
        "reset_val",
        "sourcefile",
        "sourceline",
        "pending_restart",
    ];
}

#[async_trait]
impl CatalogRows for PgSettings {
    fn schema(&self) -> SchemaRef {
        let fields = Self::COLUMNS.iter().map(|&c| match c {
            "sourceline" => Field::new(c, DataType::Int32, true),
            "pending_restart" => Field::new(c, DataType::Boolean, true),
            "enumvals" => Field::new(c, DataType::new_list(DataType::Utf8, true), true),
            _ => Field::new(c, DataType::Utf8, true),
        });
        Arc::new(Schema::new(fields.collect::<Vec<_>>()))
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let settings = state
            .config()
            .get_extension::<SessionSettings>()
            .map(|s| (s.0)())
            .unwrap_or_default();
        let n = settings.len();
        let text = |f: &dyn Fn(&Setting) -> Option<String>| -> ArrayRef {
            Arc::new(settings.iter().map(f).collect::<StringArray>())
        };
        let schema = self.schema();
        let columns = Self::COLUMNS
            .iter()
            .zip(schema.fields())
            .map(|(&c, field)| match c {
                "name" => text(&|s| Some(s.name.clone())),
                "setting" => text(&|s| Some(s.value.clone())),
                "context" => text(&|s| Some(if s.read_only { "internal" } else { "user" }.into())),
                "vartype" => text(&|_| Some("string".into())),
                "source" => text(&|s| Some(if s.set { "session" } else { "default" }.into())),
                "boot_val" | "reset_val" => text(&|s| Some(s.default.clone())),
                "sourceline" => Arc::new(Int32Array::new_null(n)) as ArrayRef,
                "pending_restart" => Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef,
                _ => datafusion::arrow::array::new_null_array(field.data_type(), n),
            })
            .collect();
        Ok(vec![RecordBatch::try_new(schema, columns)?])
    }
}
