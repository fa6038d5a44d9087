//! `pg_depend` with our views' and materialized views' dependencies on the relations they read (a
//! normal dependency of the view's relation on each input's, and of the view's `_RETURN`
//! rule in `pg_rewrite` on each, as PostgreSQL records them), so tools order and drop them
//! as PostgreSQL's do: pg_dump writes a view after what it reads, whatever their names, and
//! refreshes a view after the views it reads.
//! `pg_attrdef` with our columns' defaults (`adbin` holds the default's SQL text, which
//! `pg_get_expr` gives back).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};

use super::catalog_rows::CatalogRows;
use datafusion::error::{DataFusionError, Result};

use super::pg_attribute::{column, oid_at, public_oid, read_all};
use crate::coord::engine::Engine;

/// pg_class's OID (`classid` of a relation).
const PG_CLASS: i32 = 1259;
/// pg_rewrite's OID (`classid` of a rule).
const PG_REWRITE: i32 = 2618;

/// The OID of the `_RETURN` rule of the view whose relation OID is `view`.
pub fn rule_oid(view: i32) -> i32 {
    600_000_000 + view.rem_euclid(100_000_000)
}

#[derive(Debug)]
pub struct PgDepend {
    pub depend: Arc<dyn TableProvider>,
    /// pg_class as clients see it (our relations' OIDs).
    pub class: Arc<dyn TableProvider>,
    pub namespace: Arc<dyn TableProvider>,
    pub engine: Arc<Engine>,
}

#[async_trait]
impl CatalogRows for PgDepend {
    fn schema(&self) -> SchemaRef {
        self.depend.schema()
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let oids = our_oids(&self.class, &self.namespace, state).await?;
        let catalog = &self.engine.catalog;
        let mut names = HashMap::new();
        names.extend(catalog.tables().iter().map(|t| (t.id, t.name.clone())));
        names.extend(catalog.sources().iter().map(|s| (s.id, s.name.clone())));
        names.extend(catalog.views().iter().map(|v| (v.id, v.name.clone())));
        let plain = catalog.plain_views();
        names.extend(plain.iter().map(|v| (v.id, v.name.clone())));
        let mut deps = Vec::new();
        let views = catalog.views();
        let reads = views
            .iter()
            .map(|v| (&v.name, v.inputs.iter().chain(&v.views_read).collect::<Vec<_>>()))
            .chain(plain.iter().map(|v| (&v.name, v.inputs.iter().collect())));
        for (view, inputs) in reads {
            let Some(&objid) = oids.get(view) else {
                continue;
            };
            for input in inputs {
                if let Some(&refobjid) = names.get(input).and_then(|n| oids.get(n)) {
                    deps.push(Dependency { classid: PG_CLASS, objid, refobjid, refobjsubid: 0, deptype: "n" });
                    let rule = rule_oid(objid);
                    deps.push(Dependency { classid: PG_REWRITE, objid: rule, refobjid, refobjsubid: 0, deptype: "n" });
                }
            }
        }
        // An identity column's sequence belongs to the column (internally).
        for s in super::pg_sequence::identity_sequences(&self.engine) {
            if let Some(&refobjid) = oids.get(&s.table.name) {
                let refobjsubid = i32::from(s.attnum);
                deps.push(Dependency { classid: PG_CLASS, objid: s.oid, refobjid, refobjsubid, deptype: "i" });
            }
        }
        let mut out = read_all(&self.depend, state).await?;
        out.push(rows(&self.schema(), &deps)?);
        Ok(out)
    }
}

/// The pg_class OIDs of our relations (those in `public`), by name.
pub(super) async fn our_oids(
    class: &Arc<dyn TableProvider>,
    namespace: &Arc<dyn TableProvider>,
    state: &dyn Session,
) -> Result<HashMap<String, i32>> {
    let public = public_oid(namespace, state).await?;
    oids_in(&read_all(class, state).await?, public)
}

/// The OIDs of the relations in namespace `public`, by name, among pg_class's `classes`.
pub(super) fn oids_in(classes: &[RecordBatch], public: Option<i64>) -> Result<HashMap<String, i32>> {
    let mut oids = HashMap::new();
    for b in classes {
        let (oid, name, ns) = (
            column(b, "oid")?,
            column(b, "relname")?.as_string::<i32>(),
            column(b, "relnamespace")?,
        );
        for i in 0..b.num_rows() {
            if public.is_some() && oid_at(ns, i) == public {
                if let Some(o) = oid_at(oid, i) {
                    oids.insert(name.value(i).to_owned(), o as i32);
                }
            }
        }
    }
    Ok(oids)
}

/// pg_attrdef with a row per default of our tables' columns.
#[derive(Debug)]
pub struct PgAttrdef {
    pub attrdef: Arc<dyn TableProvider>,
    pub class: Arc<dyn TableProvider>,
    pub namespace: Arc<dyn TableProvider>,
    pub engine: Arc<Engine>,
}

/// The OID of the default of column `attnum` of table `id`: stable, above the OIDs our
/// relations take and below the indexes' (1e9 + id).
fn default_oid(id: u64, attnum: usize) -> i32 {
    700_000_000 + ((id % 200_000) * 1_600) as i32 + attnum as i32
}

#[async_trait]
impl CatalogRows for PgAttrdef {
    fn schema(&self) -> SchemaRef {
        self.attrdef.schema()
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let oids = our_oids(&self.class, &self.namespace, state).await?;
        let (mut oid, mut relid, mut num, mut bin) = (vec![], vec![], vec![], vec![]);
        for table in self.engine.catalog.tables() {
            let Some(&rel) = oids.get(&table.name) else {
                continue;
            };
            for (i, col) in table.columns.iter().enumerate() {
                if let Some(default) = &col.default {
                    oid.push(default_oid(table.id.0, i + 1));
                    relid.push(rel);
                    num.push(i as i64 + 1);
                    bin.push(default.clone());
                }
            }
        }
        let schema = self.schema();
        let given: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(oid)),
            Arc::new(Int32Array::from(relid)),
            Arc::new(datafusion::arrow::array::Int64Array::from(num)),
            Arc::new(StringArray::from(bin)),
        ];
        let mut columns = Vec::new();
        for (f, name) in schema
            .fields()
            .iter()
            .zip(["oid", "adrelid", "adnum", "adbin"])
        {
            if f.name() != name {
                return Err(DataFusionError::Internal(format!(
                    "pg_attrdef.{} unexpected",
                    f.name()
                )));
            }
        }
        for (f, a) in schema.fields().iter().zip(given) {
            columns.push(datafusion::arrow::compute::cast(&a, f.data_type())?);
        }
        let mut out = read_all(&self.attrdef, state).await?;
        out.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
        Ok(out)
    }
}

/// A dependency of object `objid` (a relation, or a rule) on relation `refobjid` (its column
/// `refobjsubid`, or 0).
struct Dependency {
    classid: i32,
    objid: i32,
    refobjid: i32,
    refobjsubid: i32,
    deptype: &'static str,
}

/// pg_depend rows of dependencies between relations.
fn rows(schema: &SchemaRef, deps: &[Dependency]) -> Result<RecordBatch> {
    let n = deps.len();
    let ints = |v: Vec<i32>| Arc::new(Int32Array::from(v)) as ArrayRef;
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let array = match f.name().as_str() {
                "classid" => ints(deps.iter().map(|d| d.classid).collect()),
                "refclassid" => ints(vec![PG_CLASS; n]),
                "objid" => ints(deps.iter().map(|d| d.objid).collect()),
                "refobjid" => ints(deps.iter().map(|d| d.refobjid).collect()),
                "objsubid" => ints(vec![0; n]),
                "refobjsubid" => ints(deps.iter().map(|d| d.refobjsubid).collect()),
                "deptype" => Arc::new(StringArray::from(deps.iter().map(|d| d.deptype).collect::<Vec<_>>())),
                other => {
                    return Err(DataFusionError::Internal(format!(
                        "pg_depend.{other} unexpected"
                    )))
                }
            };
            if array.data_type() == f.data_type() {
                Ok(array)
            } else if *f.data_type() == DataType::Utf8 || f.data_type().is_integer() {
                Ok(datafusion::arrow::compute::cast(&array, f.data_type())?)
            } else {
                Err(DataFusionError::Internal(format!(
                    "pg_depend.{} type",
                    f.name()
                )))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
