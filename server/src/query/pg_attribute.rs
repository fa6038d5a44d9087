//! `pg_catalog.pg_attribute` with our declared column types, and `pg_class` with
//! materialized views as relkind `m` (psql `\dm`, `\d view`).
//!
//! datafusion-pg-catalog derives `pg_attribute` from Arrow types alone, so `numeric(10,2)`
//! reads as `numeric`, `varchar(20)` loses its length and `jsonb` reads as `text`. This
//! overlay runs that table (keeping its relation OIDs, which `pg_class` shares) and rewrites
//! `atttypid`, `atttypmod`, `attlen` and `attndims` of our tables' columns from the catalog.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int16Array, Int32Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{Int16Type, Int32Type, SchemaRef, UInt32Type};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::collect;
use freshet_catalog::DEFAULT_SCHEMA;
use freshet_common::SqlType;

use super::catalog_rows::{CatalogRows, Computed};
use crate::coord::engine::Engine;

/// `pg_catalog` as datafusion-pg-catalog builds it, with `pg_attribute` replaced.
#[derive(Debug)]
pub struct PgCatalogOverlay {
    inner: Arc<dyn SchemaProvider>,
    engine: Arc<Engine>,
}

impl PgCatalogOverlay {
    pub fn new(inner: Arc<dyn SchemaProvider>, engine: Arc<Engine>) -> Self {
        Self { inner, engine }
    }

    /// The overlays computed at each scan from `table` (datafusion-pg-catalog's `name`) and
    /// our catalog (`pg_depend.rs`, `pg_class_oids.rs`); `None` when `name` has none.
    async fn computed(
        &self,
        name: &str,
        table: &Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let inner = Arc::clone(table);
        Ok(Some(match name {
            "pg_attrdef" | "pg_depend" => {
                let (Some(class), Some(namespace)) = (
                    self.inner.table("pg_class").await?,
                    self.inner.table("pg_namespace").await?,
                ) else {
                    return Ok(None);
                };
                let engine = Arc::clone(&self.engine);
                if name == "pg_attrdef" {
                    let rows = super::pg_depend::PgAttrdef { attrdef: inner, class, namespace, engine };
                    Arc::new(Computed(rows))
                } else {
                    let rows = super::pg_depend::PgDepend { depend: inner, class, namespace, engine };
                    Arc::new(Computed(rows))
                }
            }
            "pg_proc" => Arc::new(Computed(super::pg_proc::PgProcArrays::new(inner))),
            "pg_collation" => Arc::new(Computed(super::pg_collation::PgCollation::new(inner))),
            "pg_sequence" => Arc::new(Computed(super::pg_sequence::PgSequence {
                sequence: inner,
                engine: Arc::clone(&self.engine),
            })),
            "pg_rewrite" => {
                let Some(class) = self.table("pg_class").await? else {
                    return Ok(None);
                };
                let Some(namespace) = self.table("pg_namespace").await? else {
                    return Ok(None);
                };
                let engine = Arc::clone(&self.engine);
                Arc::new(Computed(super::pg_class_oids::PgRewrite { rewrite: inner, class, namespace, engine }))
            }
            "pg_namespace" | "pg_init_privs" => {
                let owner = self
                    .engine
                    .catalog
                    .roles()
                    .into_iter()
                    .find(|r| r.oid == 10)
                    .map_or_else(|| "10".to_owned(), |r| freshet_catalog::quote_role(&r.name));
                if name == "pg_namespace" {
                    Arc::new(Computed(super::pg_class_oids::PgNamespace { namespace: inner, owner }))
                } else {
                    Arc::new(Computed(super::pg_class_oids::PgInitPrivs { init_privs: inner, owner }))
                }
            }
            _ => return Ok(None),
        }))
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        let ours = super::pg_roles::ROLE_TABLES.iter().copied();
        for t in ours.chain(["pg_indexes", "pg_stat_activity"]).chain(super::pg_empty::names()) {
            if !names.iter().any(|n| n == t) {
                names.push(t.to_owned());
            }
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if super::pg_roles::ROLE_TABLES.contains(&name) {
            return super::pg_roles::role_table(&self.engine.catalog, name);
        }
        if let Some(empty) = super::pg_empty::table(name)? {
            return Ok(Some(empty));
        }
        if let Some(views) = super::pg_views::table(&self.engine.catalog, name)? {
            return Ok(Some(views));
        }
        if name == "pg_settings" {
            return Ok(Some(Arc::new(Computed(super::pg_settings::PgSettings))));
        }
        if name == "pg_stat_activity" {
            let Some(database) = self.inner.table("pg_database").await? else {
                return Ok(None);
            };
            return Ok(Some(Arc::new(Computed(super::pg_stat_activity::PgStatActivity {
                engine: Arc::clone(&self.engine),
                database,
            }))));
        }
        if name == "pg_indexes" {
            let (Some(class), Some(namespace)) = (
                self.inner.table("pg_class").await?,
                self.inner.table("pg_namespace").await?,
            ) else {
                return Ok(None);
            };
            return Ok(Some(Arc::new(Computed(super::pg_index::PgIndexes::new(
                class,
                namespace,
                Arc::clone(&self.engine),
            )))));
        }
        let mut table = self.inner.table(name).await?;
        if super::pg_regproc::has_regproc_columns(name) {
            if let (Some(t), Some(proc)) = (table.clone(), self.inner.table("pg_proc").await?) {
                table = Some(super::pg_regproc::overlay(name, t, proc));
            }
        }
        let keys = match name {
            "pg_index" => Some(super::pg_index::Which::PgIndex),
            "pg_constraint" => Some(super::pg_index::Which::PgConstraint),
            _ => None,
        };
        if let (Some(which), Some(inner)) = (keys, table.clone()) {
            let (Some(class), Some(namespace)) = (
                self.inner.table("pg_class").await?,
                self.inner.table("pg_namespace").await?,
            ) else {
                return Ok(table);
            };
            return Ok(Some(Arc::new(Computed(super::pg_index::KeyCatalog::new(
                which,
                inner,
                class,
                namespace,
                Arc::clone(&self.engine),
            )))));
        }
        if let Some(t) = &table {
            if let Some(computed) = self.computed(name, t).await? {
                return Ok(Some(computed));
            }
        }
        if name == "pg_class" {
            let (Some(class), Some(namespace)) =
                (table.clone(), self.inner.table("pg_namespace").await?)
            else {
                return Ok(table);
            };
            let mut fields = class.schema().fields().to_vec();
            fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
                "reloptions",
                datafusion::arrow::datatypes::DataType::List(Arc::new(
                    datafusion::arrow::datatypes::Field::new("item", datafusion::arrow::datatypes::DataType::Utf8, true),
                )),
                true,
            )));
            fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
                "relacl",
                datafusion::arrow::datatypes::DataType::List(Arc::new(
                    datafusion::arrow::datatypes::Field::new("item", datafusion::arrow::datatypes::DataType::Utf8, true),
                )),
                true,
            )));
            return Ok(Some(Arc::new(Computed(MatviewPgClass {
                schema: Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
                class,
                namespace,
                engine: Arc::clone(&self.engine),
            }))));
        }
        if name != "pg_attribute" {
            return Ok(table);
        }
        let Some(attribute) = table else {
            return Ok(None);
        };
        let Some(class) = self.inner.table("pg_class").await? else {
            return Ok(Some(attribute));
        };
        let Some(namespace) = self.inner.table("pg_namespace").await? else {
            return Ok(Some(attribute));
        };
        Ok(Some(Arc::new(Computed(TypedPgAttribute {
            attribute,
            class,
            namespace,
            engine: Arc::clone(&self.engine),
        }))))
    }

    fn table_exist(&self, name: &str) -> bool {
        super::pg_roles::ROLE_TABLES.contains(&name)
            || name == "pg_indexes"
            || name == "pg_stat_activity"
            || super::pg_empty::names().any(|n| n == name)
            || self.inner.table_exist(name)
    }
}

#[derive(Debug)]
struct TypedPgAttribute {
    attribute: Arc<dyn TableProvider>,
    class: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    engine: Arc<Engine>,
}

pub(super) async fn read_all(table: &Arc<dyn TableProvider>, state: &dyn Session) -> Result<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

/// The OID of `public` in pg_namespace.
pub(super) async fn public_oid(
    namespace: &Arc<dyn TableProvider>,
    state: &dyn Session,
) -> Result<Option<i64>> {
    let mut public = None;
    for b in read_all(namespace, state).await? {
        let (oid, name) = (
            column(&b, "oid")?,
            column(&b, "nspname")?.as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            if name.value(i) == DEFAULT_SCHEMA {
                public = oid_at(oid, i);
            }
        }
    }
    Ok(public)
}

/// pg_class with relkind `m` for our materialized views, our objects' owners in `relowner`
/// and their grants in `relacl`.
#[derive(Debug)]
struct MatviewPgClass {
    schema: SchemaRef,
    class: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    engine: Arc<Engine>,
}

#[async_trait]
impl CatalogRows for MatviewPgClass {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let public = public_oid(&self.namespace, state).await?;
        let namespaces = super::pg_class_oids::namespace_renumbering(&self.namespace, state).await?;
        let mut out = Vec::new();
        let classes = read_all(&self.class, state).await?;
        for b in &classes {
            let (name, ns) = (
                column(&b, "relname")?.as_string::<i32>(),
                column(&b, "relnamespace")?,
            );
            let kinds = column(&b, "relkind")?.as_string::<i32>();
            let patched: StringArray = (0..b.num_rows())
                .map(|i| {
                    let view = public.is_some()
                        && oid_at(ns, i) == public
                        && self.engine.catalog.view(name.value(i)).is_some();
                    if view {
                        Some("m")
                    } else {
                        kinds.is_valid(i).then(|| kinds.value(i))
                    }
                })
                .collect();
            let idx = b.schema().index_of("relkind")?;
            let mut cols = b.columns().to_vec();
            cols[idx] = Arc::new(patched);
            let idx = b.schema().index_of("oid")?;
            cols[idx] = Arc::new(catalog_oids(&b)?);
            let idx = b.schema().index_of("relnamespace")?;
            cols[idx] = Arc::new(super::pg_class_oids::renumber(&b, "relnamespace", &namespaces)?);
            let (owners, acl) = self.access(&b, public)?;
            let idx = b.schema().index_of("relowner")?;
            cols[idx] = owners;
            let has_index: BooleanArray = (0..b.num_rows())
                .map(|i| {
                    let ours = public.is_some() && oid_at(ns, i) == public;
                    Some(ours && self.engine.catalog.table(name.value(i)).is_some_and(|t| t.has_indexes()))
                })
                .collect();
            let idx = b.schema().index_of("relhasindex")?;
            cols[idx] = Arc::new(has_index);
            // Our materialized views always hold their rows (pg_dump refreshes only
            // populated ones after a restore).
            let idx = b.schema().index_of("relispopulated")?;
            let populated = b.column(idx).as_boolean();
            let populated: BooleanArray = (0..b.num_rows())
                .map(|i| {
                    let view = public.is_some()
                        && oid_at(ns, i) == public
                        && self.engine.catalog.view(name.value(i)).is_some();
                    Some(view || (populated.is_valid(i) && populated.value(i)))
                })
                .collect();
            cols[idx] = Arc::new(populated);
            cols.push(datafusion::arrow::array::new_null_array(&acl.data_type().clone(), b.num_rows()));
            cols.push(acl);
            out.push(RecordBatch::try_new(Arc::clone(&self.schema), cols)?);
        }
        let indexes = super::pg_index::indexes_of(&self.engine, &classes, public)?;
        let catalog = &self.engine.catalog;
        let owner = |t: &freshet_catalog::TableDef| catalog.role(&t.owner).map_or(10, |r| r.oid as i32);
        out.push(super::pg_index::class_rows(&self.schema, public, &indexes, &owner)?);
        let sequences = super::pg_sequence::identity_sequences(&self.engine);
        out.push(super::pg_sequence::class_rows(&self.schema, public, &sequences, &owner)?);
        Ok(out)
    }
}

/// pg_class's `oid` column with PostgreSQL's OIDs for its own catalog relations.
fn catalog_oids(b: &RecordBatch) -> Result<Int32Array> {
    let (oid, name, ns) = (
        column(b, "oid")?,
        column(b, "relname")?.as_string::<i32>(),
        column(b, "relnamespace")?,
    );
    Ok((0..b.num_rows())
        .map(|i| {
            let fixed = (oid_at(ns, i) == Some(PG_CATALOG_OID))
                .then(|| super::pg_class_oids::catalog_oid(name.value(i)))
                .flatten();
            fixed.or_else(|| oid_at(oid, i).map(|o| o as i32))
        })
        .collect())
}

/// pg_catalog's namespace OID.
const PG_CATALOG_OID: i64 = 11;

impl MatviewPgClass {
    /// `relowner` and `relacl` of a pg_class batch: our objects' from the catalog.
    fn access(&self, b: &RecordBatch, public: Option<i64>) -> Result<(ArrayRef, ArrayRef)> {
        use datafusion::arrow::array::{ListBuilder, StringBuilder};
        let name = column(b, "relname")?.as_string::<i32>();
        let ns = column(b, "relnamespace")?;
        let owners = column(b, "relowner")?.as_primitive::<Int32Type>();
        let catalog = &self.engine.catalog;
        let mut owner_out = Vec::with_capacity(b.num_rows());
        let mut acl_out = ListBuilder::new(StringBuilder::new());
        for i in 0..b.num_rows() {
            let ours = (public.is_some() && oid_at(ns, i) == public)
                .then(|| catalog.object_access(name.value(i)))
                .flatten();
            let Some(a) = ours else {
                // The system's relations belong to the bootstrap superuser (10), as in
                // PostgreSQL; datafusion-pg-catalog leaves 0 (no role) for many.
                owner_out.push(match owners.value(i) {
                    0 => 10,
                    o => o,
                });
                acl_out.append(false);
                continue;
            };
            owner_out.push(catalog.role(&a.owner).map_or(10, |r| r.oid as i32));
            let all = freshet_catalog::Privileges::ALL_TABLE;
            match freshet_catalog::render_acl(&a.owner, all, &a.acl) {
                Some(items) => {
                    for item in items {
                        acl_out.values().append_value(item);
                    }
                    acl_out.append(true);
                }
                None => acl_out.append(false),
            }
        }
        Ok((Arc::new(Int32Array::from(owner_out)), Arc::new(acl_out.finish())))
    }
}

pub(super) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog column {name} missing")))
}

/// Reads an OID-ish column (Int32 or UInt32 depending on the table) as i64.
pub(super) fn oid_at(a: &ArrayRef, i: usize) -> Option<i64> {
    if a.is_null(i) {
        return None;
    }
    if let Some(v) = a.as_primitive_opt::<Int32Type>() {
        return Some(v.value(i) as i64);
    }
    a.as_primitive_opt::<UInt32Type>()
        .map(|v| v.value(i) as i64)
}

/// PostgreSQL's `atttypmod` for a declared type (`-1` when it has none).
fn typmod(ty: &SqlType) -> i32 {
    match ty {
        SqlType::Numeric { precision, scale } => {
            ((i32::from(*precision) << 16) | i32::from(*scale as u8)) + 4
        }
        SqlType::Varchar(Some(n)) | SqlType::Char(n) => *n as i32 + 4,
        SqlType::Array(inner) => typmod(inner),
        _ => -1,
    }
}

fn typlen(ty: &SqlType) -> i16 {
    match ty {
        SqlType::Bool => 1,
        SqlType::Int2 => 2,
        SqlType::Int4 | SqlType::Float4 | SqlType::Date => 4,
        SqlType::Int8
        | SqlType::Float8
        | SqlType::Time
        | SqlType::Timestamp
        | SqlType::TimestampTz => 8,
        SqlType::Interval => 16,
        _ => -1,
    }
}

#[async_trait]
impl CatalogRows for TypedPgAttribute {
    fn schema(&self) -> SchemaRef {
        attacl_as_list(&self.attribute.schema())
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        // Our tables and views by pg_class OID: the OID of `public`, then pg_class rows in it.
        let public_oid = public_oid(&self.namespace, state).await?;
        let mut tables = HashMap::new();
        let mut renumbered = HashMap::new();
        for b in read_all(&self.class, state).await? {
            let (oid, name, ns) = (
                column(&b, "oid")?,
                column(&b, "relname")?.as_string::<i32>(),
                column(&b, "relnamespace")?,
            );
            for i in 0..b.num_rows() {
                if oid_at(ns, i) == Some(PG_CATALOG_OID) {
                    if let (Some(old), Some(new)) = (
                        oid_at(oid, i),
                        super::pg_class_oids::catalog_oid(name.value(i)),
                    ) {
                        renumbered.insert(old, new);
                    }
                }
                if public_oid.is_some() && oid_at(ns, i) == public_oid {
                    let columns = match self.engine.catalog.table(name.value(i)) {
                        Some(def) => Some(def.columns.clone()),
                        None => self
                            .engine
                            .catalog
                            .view(name.value(i))
                            .map(|v| v.columns.clone())
                            .or_else(|| {
                                self.engine
                                    .catalog
                                    .source(name.value(i))
                                    .map(|s| s.columns.clone())
                            })
                            .or_else(|| {
                                let v = self.engine.catalog.plain_view(name.value(i))?;
                                Some(v.columns.clone())
                            }),
                    };
                    if let (Some(oid), Some(columns)) = (oid_at(oid, i), columns) {
                        tables.insert(oid, columns);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for b in read_all(&self.attribute, state).await? {
            out.push(patch(&b, &tables, &renumbered)?);
        }
        Ok(out)
    }
}

fn patch(
    b: &RecordBatch,
    tables: &HashMap<i64, Vec<freshet_catalog::ColumnDef>>,
    renumbered: &HashMap<i64, i32>,
) -> Result<RecordBatch> {
    let relid = column(b, "attrelid")?;
    let relids: Int32Array = (0..b.num_rows())
        .map(|i| oid_at(relid, i).map(|r| renumbered.get(&r).copied().unwrap_or(r as i32)))
        .collect();
    let attnum = column(b, "attnum")?.as_primitive::<Int16Type>();
    let mut typid: Vec<i32> = column(b, "atttypid")?
        .as_primitive::<Int32Type>()
        .values()
        .to_vec();
    let mut typmods: Vec<i32> = column(b, "atttypmod")?
        .as_primitive::<Int32Type>()
        .values()
        .to_vec();
    let mut lens: Vec<i16> = column(b, "attlen")?
        .as_primitive::<Int16Type>()
        .values()
        .to_vec();
    let mut identity: Vec<Option<&str>> = column(b, "attidentity")?
        .as_string::<i32>()
        .iter()
        .collect();
    let mut has_default: Vec<bool> = column(b, "atthasdef")?
        .as_boolean()
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect();
    let mut ndims: Vec<i32> = column(b, "attndims")?
        .as_primitive::<Int32Type>()
        .values()
        .to_vec();
    for i in 0..b.num_rows() {
        let Some(columns) = oid_at(relid, i).and_then(|r| tables.get(&r)) else {
            continue;
        };
        let Some(col) = usize::try_from(attnum.value(i) - 1)
            .ok()
            .and_then(|n| columns.get(n))
        else {
            continue;
        };
        typid[i] = col.ty.oid() as i32;
        typmods[i] = typmod(&col.ty);
        lens[i] = typlen(&col.ty);
        ndims[i] = i32::from(matches!(col.ty, SqlType::Array(_)));
        has_default[i] = col.default.is_some();
        identity[i] = Some(match col.identity {
            Some(freshet_catalog::Identity::Always) => "a",
            Some(freshet_catalog::Identity::ByDefault) => "d",
            None => "",
        });
    }
    let schema = b.schema();
    let mut columns = b.columns().to_vec();
    // No column privileges or options: NULL arrays (datafusion-pg-catalog makes them text).
    for name in LIST_COLUMNS {
        if let Ok(idx) = schema.index_of(name) {
            columns[idx] = datafusion::arrow::array::new_null_array(&acl_type(), b.num_rows());
        }
    }
    for (name, array) in [
        ("attrelid", Arc::new(relids) as ArrayRef),
        ("atttypid", Arc::new(Int32Array::from(typid))),
        ("atttypmod", Arc::new(Int32Array::from(typmods))),
        ("attlen", Arc::new(Int16Array::from(lens))),
        ("attndims", Arc::new(Int32Array::from(ndims))),
        ("atthasdef", Arc::new(BooleanArray::from(has_default))),
        ("attidentity", Arc::new(StringArray::from(identity))),
    ] {
        let (idx, _) = schema
            .column_with_name(name)
            .ok_or_else(|| DataFusionError::Internal(format!("pg_attribute.{name} missing")))?;
        columns[idx] = array;
    }
    Ok(RecordBatch::try_new(attacl_as_list(&schema), columns)?)
}

/// The type of an aclitem[] column: a list of text.
fn acl_type() -> datafusion::arrow::datatypes::DataType {
    use datafusion::arrow::datatypes::{DataType, Field};
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// pg_attribute's array columns: privileges (aclitem[]) and options (text[]).
const LIST_COLUMNS: [&str; 3] = ["attacl", "attoptions", "attfdwoptions"];

/// `schema` with its [`LIST_COLUMNS`] typed as lists of text.
fn attacl_as_list(schema: &SchemaRef) -> SchemaRef {
    use datafusion::arrow::datatypes::{Field, Schema};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if LIST_COLUMNS.contains(&f.name().as_str()) {
                Field::new(f.name(), acl_type(), true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}
