//! PostgreSQL's size functions, over our relations' names (`sql/src/by_oid.rs` puts
//! the name in place of the OID): the bytes a relation takes in the store's table files
//! (what is still only in the memtables is not counted).

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::coord::engine::Engine;

/// Registers the functions on `ctx`.
pub fn register(ctx: &SessionContext, engine: &Arc<Engine>) {
    for (name, kind) in [
        ("pg_table_size", "table"),
        ("pg_relation_size", "table"),
        ("pg_total_relation_size", "total"),
        ("pg_indexes_size", "indexes"),
    ] {
        let e = Arc::clone(engine);
        ctx.register_udf(crate::functions::unary_udf(
            name,
            DataType::Utf8,
            DataType::Int64,
            Volatility::Volatile,
            move |a| {
                let sizes: Int64Array = a
                    .as_string::<i32>()
                    .iter()
                    .map(|name| Some(relation_size(&e, name?, kind)))
                    .collect();
                Arc::new(sizes)
            },
        ));
    }
    let e = Arc::clone(engine);
    ctx.register_udf(ScalarUDF::new_from_impl(DatabaseSize {
        engine: e,
        signature: Signature::any(1, Volatility::Volatile),
    }));
}

/// `pg_database_size(name | oid)`: every table file of the store (one database).
struct DatabaseSize {
    engine: Arc<Engine>,
    signature: Signature,
}

impl std::fmt::Debug for DatabaseSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pg_database_size")
    }
}

impl PartialEq for DatabaseSize {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.engine, &other.engine)
    }
}

impl Eq for DatabaseSize {}

impl std::hash::Hash for DatabaseSize {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "pg_database_size".hash(state);
    }
}

impl ScalarUDFImpl for DatabaseSize {
    fn name(&self) -> &str {
        "pg_database_size"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let size = self
            .engine
            .store
            .disk_size()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(size as i64))))
    }
}

/// The bytes `name` takes; `kind` is `table`, `indexes` or `total`: a table's rows (with its
/// unique constraints' and indexes' entries, `total`), a materialized view's contents (with
/// its operators' state and retained changes, `total`). Sources and catalogs take 0.
fn relation_size(engine: &Engine, name: &str, kind: &str) -> i64 {
    use freshet_state::{
        aggregate_view_prefix, contents_log_prefix, table_prefix, view_prefix, view_state_prefix,
    };
    let catalog = &engine.catalog;
    let prefixes = if let Some(t) = catalog.table(name) {
        let rows = vec![table_prefix(t.id)];
        let indexes: Vec<Vec<u8>> = t.storage_ids().skip(1).map(table_prefix).collect();
        match kind {
            "table" => rows,
            "indexes" => indexes,
            _ => rows.into_iter().chain(indexes).collect(),
        }
    } else if let Some(v) = catalog.view(name) {
        let contents = vec![view_prefix(v.id), aggregate_view_prefix(v.id)];
        match kind {
            "table" => contents,
            "indexes" => vec![],
            _ => {
                let mut all = contents;
                all.push(contents_log_prefix(v.id));
                all.push(view_state_prefix(v.id));
                all.push(freshet_state::changelog::changelog_prefix(v.id));
                all
            }
        }
    } else {
        vec![]
    };
    engine.store.approximate_disk_size(&prefixes) as i64
}
