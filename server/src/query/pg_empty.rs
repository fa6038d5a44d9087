//! Catalog relations that are always empty in freshet (no transforms, security labels, event
//! triggers, publications, extended statistics, user mappings or privileges on parameters),
//! with PostgreSQL's columns and types: datafusion-pg-catalog lacks some of them and exports
//! the array columns of others as text, which `unnest`, `= ANY` and subscripts refuse.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::error::Result;

/// (relation, columns as `name type`, types as PostgreSQL names them).
const EMPTY: &[(&str, &str)] = &[
    (
        "pg_transform",
        "oid oid, trftype oid, trflang oid, trffromsql regproc, trftosql regproc",
    ),
    (
        "pg_seclabels",
        "objoid oid, classoid oid, objsubid int4, objtype text, objnamespace oid, objname text, \
         provider text, label text",
    ),
    (
        "pg_event_trigger",
        "oid oid, evtname name, evtevent name, evtowner oid, evtfoid oid, evtenabled char, \
         evttags text[]",
    ),
    // No privileges are granted on configuration parameters.
    ("pg_parameter_acl", "oid oid, parname text, paracl text[]"),
    // No extended statistics (`CREATE STATISTICS`); `stxkind` is an array, as psql's `\dX` reads it.
    (
        "pg_statistic_ext",
        "oid oid, stxrelid oid, stxname name, stxnamespace oid, stxowner oid, stxstattarget int4, \
         stxkeys text, stxkind char[], stxexprs text",
    ),
    // No foreign servers, so no user mappings.
    (
        "pg_user_mappings",
        "umid oid, srvid oid, srvname name, umuser oid, usename name, umoptions text[]",
    ),
    (
        "pg_publication_rel",
        "oid oid, prpubid oid, prrelid oid, prqual text, prattrs int2[]",
    ),
];

/// The names, for `table_names`.
pub fn names() -> impl Iterator<Item = &'static str> {
    EMPTY.iter().map(|(name, _)| *name)
}

/// The empty relation `name`, if it is one of these.
pub fn table(name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
    let Some((_, columns)) = EMPTY.iter().find(|(n, _)| *n == name) else {
        return Ok(None);
    };
    let fields: Vec<Field> = columns
        .split(',')
        .map(|c| {
            let (col, ty) = c.trim().split_once(' ').unwrap_or((c.trim(), "text"));
            Field::new(col, arrow_type(ty), true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![]])?)))
}

fn arrow_type(ty: &str) -> DataType {
    if let Some(element) = ty.strip_suffix("[]") {
        return DataType::List(Arc::new(Field::new("item", arrow_type(element), true)));
    }
    match ty {
        // OIDs are int4, as in the rest of datafusion-pg-catalog.
        "oid" | "regproc" | "int4" => DataType::Int32,
        "int2" => DataType::Int16,
        _ => DataType::Utf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_relation_has_its_columns() {
        for name in names() {
            let t = table(name).unwrap().unwrap();
            assert!(t.schema().fields().len() >= 3, "{name}");
        }
        let t = table("pg_publication_rel").unwrap().unwrap();
        assert!(matches!(
            t.schema().field_with_name("prattrs").unwrap().data_type(),
            DataType::List(f) if f.data_type() == &DataType::Int16
        ));
        assert!(table("pg_class").unwrap().is_none());
    }
}
