//! The OIDs PostgreSQL 15 gives its catalog relations, for pg_catalog's rows of `pg_class`
//! and `pg_attribute` (datafusion-pg-catalog numbers them as it registers them). Tools rely
//! on them: pg_dump finds a schema by (`tableoid` = 2615, oid) and a type by
//! (1247, oid), and the other catalogs' data (`pg_type.typrelid`, `pg_description.classoid`,
//! `pg_depend.classid`) already use them. Likewise `information_schema`'s namespace OID,
//! which pg_type and pg_proc rows of that schema name.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};

use super::catalog_rows::CatalogRows;
use datafusion::error::Result;

use super::pg_attribute::{column, oid_at, read_all};

/// (relation in pg_catalog, its OID in PostgreSQL 15).
const OIDS: &[(&str, i32)] = &[
    ("pg_aggregate", 2600),
    ("pg_am", 2601),
    ("pg_amop", 2602),
    ("pg_amproc", 2603),
    ("pg_attrdef", 2604),
    ("pg_attribute", 1249),
    ("pg_auth_members", 1261),
    ("pg_authid", 1260),
    ("pg_cast", 2605),
    ("pg_class", 1259),
    ("pg_collation", 3456),
    ("pg_constraint", 2606),
    ("pg_conversion", 2607),
    ("pg_database", 1262),
    ("pg_db_role_setting", 2964),
    ("pg_default_acl", 826),
    ("pg_depend", 2608),
    ("pg_description", 2609),
    ("pg_enum", 3501),
    ("pg_event_trigger", 3466),
    ("pg_extension", 3079),
    ("pg_foreign_data_wrapper", 2328),
    ("pg_foreign_server", 1417),
    ("pg_foreign_table", 3118),
    ("pg_index", 2610),
    ("pg_indexes", 12043),
    ("pg_inherits", 2611),
    ("pg_init_privs", 3394),
    ("pg_language", 2612),
    ("pg_largeobject", 2613),
    ("pg_largeobject_metadata", 2995),
    ("pg_matviews", 12038),
    ("pg_namespace", 2615),
    ("pg_opclass", 2616),
    ("pg_operator", 2617),
    ("pg_opfamily", 2753),
    ("pg_partitioned_table", 3350),
    ("pg_policy", 3256),
    ("pg_proc", 1255),
    ("pg_publication", 6104),
    ("pg_publication_namespace", 6237),
    ("pg_publication_rel", 6106),
    ("pg_range", 3541),
    ("pg_replication_origin", 6000),
    ("pg_replication_slots", 12257),
    ("pg_rewrite", 2618),
    ("pg_roles", 12000),
    ("pg_seclabel", 3596),
    ("pg_seclabels", 12099),
    ("pg_sequence", 2224),
    ("pg_settings", 12104),
    ("pg_shdepend", 1214),
    ("pg_shdescription", 2396),
    ("pg_shseclabel", 3592),
    ("pg_stat_gssapi", 12253),
    ("pg_stat_user_tables", 12161),
    ("pg_statistic", 2619),
    ("pg_statistic_ext", 3381),
    ("pg_statistic_ext_data", 3429),
    ("pg_subscription", 6100),
    ("pg_subscription_rel", 6102),
    ("pg_tables", 12033),
    ("pg_tablespace", 1213),
    ("pg_transform", 3576),
    ("pg_trigger", 2620),
    ("pg_ts_config", 3602),
    ("pg_ts_dict", 3600),
    ("pg_ts_parser", 3601),
    ("pg_ts_template", 3764),
    ("pg_type", 1247),
    ("pg_user", 12014),
    ("pg_user_mapping", 1418),
    ("pg_views", 12028),
];

/// PostgreSQL's OID of the catalog relation `name`.
pub fn catalog_oid(name: &str) -> Option<i32> {
    OIDS.iter().find(|(n, _)| *n == name).map(|(_, oid)| *oid)
}

/// (schema, its OID in PostgreSQL 15) for the system's schemas other than pg_catalog (11).
const NAMESPACES: &[(&str, i32)] = &[("information_schema", 13283)];

/// Old → PostgreSQL's OID of the system's schemas, from datafusion-pg-catalog's pg_namespace.
pub async fn namespace_renumbering(
    namespace: &Arc<dyn TableProvider>,
    state: &dyn Session,
) -> Result<HashMap<i64, i32>> {
    renumbering_of(&read_all(namespace, state).await?)
}

/// [`namespace_renumbering`] of pg_namespace's rows.
fn renumbering_of(namespaces: &[RecordBatch]) -> Result<HashMap<i64, i32>> {
    let mut out = HashMap::new();
    for b in namespaces {
        let (oid, name) = (column(b, "oid")?, column(b, "nspname")?.as_string::<i32>());
        for i in 0..b.num_rows() {
            let fixed = NAMESPACES.iter().find(|(n, _)| *n == name.value(i));
            if let (Some(old), Some((_, new))) = (oid_at(oid, i), fixed) {
                out.insert(old, *new);
            }
        }
    }
    Ok(out)
}

/// `column` of `b` (an OID column) renumbered by `map`.
pub fn renumber(b: &RecordBatch, name: &str, map: &HashMap<i64, i32>) -> Result<Int32Array> {
    let oids = column(b, name)?;
    Ok((0..b.num_rows())
        .map(|i| oid_at(oids, i).map(|o| map.get(&o).copied().unwrap_or(o as i32)))
        .collect())
}

/// pg_namespace with the system's schemas at PostgreSQL's OIDs, and the privileges every
/// schema has here: its owner's, and USAGE for PUBLIC (`{owner=UC/owner,=U/owner}`).
#[derive(Debug)]
pub struct PgNamespace {
    pub namespace: Arc<dyn TableProvider>,
    /// The name of the bootstrap superuser (OID 10), who owns them.
    pub owner: String,
}

#[async_trait]
impl CatalogRows for PgNamespace {
    fn schema(&self) -> SchemaRef {
        self.namespace.schema()
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let namespaces = read_all(&self.namespace, state).await?;
        let map = renumbering_of(&namespaces)?;
        let mut out = Vec::new();
        for b in namespaces {
            let mut columns = b.columns().to_vec();
            columns[b.schema().index_of("oid")?] = Arc::new(renumber(&b, "oid", &map)?);
            let acl = format!("{{{o}=UC/{o},=U/{o}}}", o = self.owner);
            let idx = b.schema().index_of("nspacl")?;
            let given = b.column(idx).as_string::<i32>();
            columns[idx] = Arc::new(
                given
                    .iter()
                    .map(|a| Some(a.unwrap_or(&acl).to_owned()))
                    .collect::<datafusion::arrow::array::StringArray>(),
            );
            out.push(RecordBatch::try_new(b.schema(), columns)?);
        }
        Ok(out)
    }
}

/// pg_rewrite with the rules of relations pg_class has: datafusion-pg-catalog's rows are
/// PostgreSQL 15's, with the rules of system views freshet does not have (`pg_shadow`, …),
/// which pg_dump refuses ("parent table … of pg_rewrite entry … not found"); and the
/// `_RETURN` rule of each of our materialized views, which its dependencies hang from
/// (`pg_depend.rs`).
#[derive(Debug)]
pub struct PgRewrite {
    pub rewrite: Arc<dyn TableProvider>,
    pub class: Arc<dyn TableProvider>,
    pub namespace: Arc<dyn TableProvider>,
    pub engine: Arc<crate::coord::engine::Engine>,
}

#[async_trait]
impl CatalogRows for PgRewrite {
    fn schema(&self) -> SchemaRef {
        self.rewrite.schema()
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let classes = read_all(&self.class, state).await?;
        let mut relations = std::collections::HashSet::new();
        for b in &classes {
            let oid = column(b, "oid")?;
            relations.extend((0..b.num_rows()).filter_map(|i| oid_at(oid, i)));
        }
        let mut out = Vec::new();
        for b in read_all(&self.rewrite, state).await? {
            let class = column(&b, "ev_class")?;
            let keep: datafusion::arrow::array::BooleanArray = (0..b.num_rows())
                .map(|i| Some(oid_at(class, i).is_some_and(|c| relations.contains(&c))))
                .collect();
            out.push(datafusion::arrow::compute::filter_record_batch(&b, &keep)?);
        }
        let public = super::pg_attribute::public_oid(&self.namespace, state).await?;
        let oids = super::pg_depend::oids_in(&classes, public)?;
        let catalog = &self.engine.catalog;
        let views: Vec<i32> = catalog
            .views()
            .iter()
            .map(|v| &v.name)
            .chain(catalog.plain_views().iter().map(|v| &v.name))
            .filter_map(|name| oids.get(name).copied())
            .collect();
        let n = views.len();
        let text = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
        let given: std::collections::HashMap<&str, ArrayRef> = [
            (
                "oid",
                Arc::new(Int32Array::from_iter_values(
                    views.iter().map(|&v| super::pg_depend::rule_oid(v)),
                )) as ArrayRef,
            ),
            ("rulename", text("_RETURN")),
            (
                "ev_class",
                Arc::new(Int32Array::from(views.clone())) as ArrayRef,
            ),
            ("ev_type", text("1")),
            ("ev_enabled", text("O")),
            (
                "is_instead",
                Arc::new(datafusion::arrow::array::BooleanArray::from(vec![true; n])) as ArrayRef,
            ),
        ]
        .into_iter()
        .collect();
        out.push(super::pg_index::rows_with(&self.schema(), n, &given)?);
        Ok(out)
    }
}

/// pg_init_privs with the initial privileges of functions and schemas, the schemas' granted
/// by their owner here (PostgreSQL's rows name a `postgres` role). Those of relations and
/// columns are PostgreSQL's, which freshet's catalogs do not reproduce (`relacl` and
/// `attacl` are NULL): pg_dump would "restore" them as GRANTs and REVOKEs.
#[derive(Debug)]
pub struct PgInitPrivs {
    pub init_privs: Arc<dyn TableProvider>,
    /// The bootstrap superuser's name (see [`PgNamespace::owner`]).
    pub owner: String,
}

#[async_trait]
impl CatalogRows for PgInitPrivs {
    fn schema(&self) -> SchemaRef {
        self.init_privs.schema()
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        const PG_PROC: i64 = 1255;
        const PG_NAMESPACE: i64 = 2615;
        let mut out = Vec::new();
        for b in read_all(&self.init_privs, state).await? {
            let class = column(&b, "classoid")?;
            let keep: datafusion::arrow::array::BooleanArray = (0..b.num_rows())
                .map(|i| Some(matches!(oid_at(class, i), Some(PG_PROC | PG_NAMESPACE))))
                .collect();
            let mut columns = b.columns().to_vec();
            let idx = b.schema().index_of("initprivs")?;
            let privs = b.column(idx).as_string::<i32>();
            columns[idx] = Arc::new(
                (0..b.num_rows())
                    .map(|i| {
                        let p = privs.is_valid(i).then(|| privs.value(i))?;
                        Some(match oid_at(class, i) {
                            Some(PG_NAMESPACE) => p.replace("postgres", &self.owner),
                            _ => p.to_owned(),
                        })
                    })
                    .collect::<datafusion::arrow::array::StringArray>(),
            );
            let b = RecordBatch::try_new(b.schema(), columns)?;
            out.push(datafusion::arrow::compute::filter_record_batch(&b, &keep)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relations_pg_dump_looks_up() {
        assert_eq!(catalog_oid("pg_namespace"), Some(2615));
        assert_eq!(catalog_oid("pg_type"), Some(1247));
        assert_eq!(catalog_oid("pg_class"), Some(1259));
        assert_eq!(catalog_oid("t"), None);
        let mut oids: Vec<i32> = OIDS.iter().map(|(_, o)| *o).collect();
        oids.sort_unstable();
        oids.dedup();
        assert_eq!(oids.len(), OIDS.len());
        assert!(oids.iter().all(|o| *o < 16384), "below FirstNormalObjectId");
    }
}
