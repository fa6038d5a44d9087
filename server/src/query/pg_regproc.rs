//! `regproc` columns of the catalogs as function OIDs, as PostgreSQL stores them.
//!
//! datafusion-pg-catalog exports `pg_operator.oprcode`, `pg_type.typinput`, `pg_am.amhandler`
//! and the other `regproc` columns as the function's name, so `oprcode::oid` (pg_dump) or
//! `obj_description(oprcode, 'pg_proc')` (psql `\do+`) cannot read them. This overlay maps
//! each name to its `pg_proc` OID (`-` is 0, as PostgreSQL's "no function"), keeping every
//! other column as it is. Like every OID column here they are int4, so they print as numbers
//! where PostgreSQL prints a `regproc` by name.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};

use super::catalog_rows::{CatalogRows, Computed};
use datafusion::error::Result;

use super::pg_attribute::{column, oid_at, read_all};

/// (relation, its regproc columns).
const REGPROC: &[(&str, &[&str])] = &[
    (
        "pg_aggregate",
        &[
            "aggfnoid",
            "aggtransfn",
            "aggfinalfn",
            "aggcombinefn",
            "aggserialfn",
            "aggdeserialfn",
            "aggmtransfn",
            "aggminvtransfn",
            "aggmfinalfn",
        ],
    ),
    ("pg_am", &["amhandler"]),
    ("pg_amproc", &["amproc"]),
    ("pg_conversion", &["conproc"]),
    ("pg_operator", &["oprcode", "oprrest", "oprjoin"]),
    ("pg_proc", &["prosupport"]),
    ("pg_range", &["rngcanonical", "rngsubdiff"]),
    (
        "pg_ts_parser",
        &[
            "prsstart",
            "prstoken",
            "prsend",
            "prsheadline",
            "prslextype",
        ],
    ),
    ("pg_ts_template", &["tmplinit", "tmpllexize"]),
    (
        "pg_type",
        &[
            "typinput",
            "typoutput",
            "typreceive",
            "typsend",
            "typmodin",
            "typmodout",
            "typanalyze",
            "typsubscript",
        ],
    ),
];

/// Whether `name` is a catalog with regproc columns.
pub fn has_regproc_columns(name: &str) -> bool {
    REGPROC.iter().any(|(n, _)| *n == name)
}

/// `table` with its regproc columns as OIDs, if `name` has any exported as text.
pub fn overlay(
    name: &str,
    table: Arc<dyn TableProvider>,
    proc: Arc<dyn TableProvider>,
) -> Arc<dyn TableProvider> {
    let Some((_, columns)) = REGPROC.iter().find(|(n, _)| *n == name) else {
        return table;
    };
    let inner = table.schema();
    let is_text =
        |f: &Field| columns.contains(&f.name().as_str()) && *f.data_type() == DataType::Utf8;
    if !inner.fields().iter().any(|f| is_text(f)) {
        return table;
    }
    let fields: Vec<Field> = inner
        .fields()
        .iter()
        .map(|f| {
            if is_text(f) {
                Field::new(f.name(), DataType::Int32, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Computed(RegprocOids {
        schema: Arc::new(Schema::new_with_metadata(fields, inner.metadata().clone())),
        table,
        proc,
    }))
}

#[derive(Debug)]
struct RegprocOids {
    schema: SchemaRef,
    table: Arc<dyn TableProvider>,
    proc: Arc<dyn TableProvider>,
}

#[async_trait]
impl CatalogRows for RegprocOids {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        // Overloaded names keep their first OID (a catalog column names one of them).
        let mut oids: HashMap<String, i32> = HashMap::new();
        for b in read_all(&self.proc, state).await? {
            let (oid, name) = (
                column(&b, "oid")?,
                column(&b, "proname")?.as_string::<i32>(),
            );
            for i in 0..b.num_rows() {
                if let (Some(o), false) = (oid_at(oid, i), name.is_null(i)) {
                    let o = o as i32;
                    oids.entry(name.value(i).to_owned())
                        .and_modify(|v| *v = (*v).min(o))
                        .or_insert(o);
                }
            }
        }
        let mut out = Vec::new();
        for b in read_all(&self.table, state).await? {
            let mut columns = b.columns().to_vec();
            for (idx, field) in self.schema.fields().iter().enumerate() {
                if field.data_type() == b.schema().field(idx).data_type() {
                    continue;
                }
                let names = b.column(idx).as_string::<i32>();
                let mapped: Int32Array = names
                    .iter()
                    .map(|n| match n? {
                        "-" | "0" => Some(0),
                        n => oids.get(n.rsplit('.').next().unwrap_or(n)).copied(),
                    })
                    .collect();
                columns[idx] = Arc::new(mapped);
            }
            out.push(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::catalog::MemTable;
    use datafusion::prelude::SessionContext;

    fn table(schema: &str, rows: Vec<Arc<dyn Array>>) -> Arc<dyn TableProvider> {
        let fields: Vec<Field> = schema
            .split(',')
            .map(|c| {
                let (n, t) = c.split_once(' ').unwrap();
                Field::new(
                    n,
                    if t == "int" {
                        DataType::Int32
                    } else {
                        DataType::Utf8
                    },
                    true,
                )
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(Arc::clone(&schema), rows).unwrap();
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
    }

    #[tokio::test]
    async fn names_become_the_oids_of_pg_proc() {
        use datafusion::arrow::array::StringArray;
        let proc = table(
            "oid int,proname text",
            vec![
                Arc::new(Int32Array::from(vec![852, 9001, 9000])),
                Arc::new(StringArray::from(vec!["int48eq", "f", "f"])),
            ],
        );
        let op = table(
            "oid int,oprcode text,oprrest text,oprname text",
            vec![
                Arc::new(Int32Array::from(vec![15, 16])),
                Arc::new(StringArray::from(vec![
                    Some("int48eq"),
                    Some("pg_catalog.f"),
                ])),
                Arc::new(StringArray::from(vec![Some("-"), None])),
                Arc::new(StringArray::from(vec!["=", "<"])),
            ],
        );
        let t = overlay("pg_operator", op, proc);
        let ctx = SessionContext::new();
        ctx.register_table("o", t).unwrap();
        let batches = ctx
            .sql("SELECT oid, oprcode, oprrest, oprname FROM o ORDER BY oid")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let out = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(
            out.contains("| 15  | 852     | 0       | =       |"),
            "{out}"
        );
        assert!(
            out.contains("| 16  | 9000    |         | <       |"),
            "{out}"
        );
    }
}
