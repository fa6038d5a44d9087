//! `information_schema`: DataFusion's, plus `table_privileges` from the catalog's owners and
//! grants (computed when a statement scans it), and `views` with our views (not materialized
//! ones, as in PostgreSQL). As in PostgreSQL, `table_privileges` shows the grants whose
//! grantor or grantee is one of the current user's roles, or PUBLIC.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use freshet_catalog::{Catalog, ObjectKind, Privileges, DEFAULT_SCHEMA};

use super::DATABASE_NAME;

const TABLE_PRIVILEGES: &str = "table_privileges";

/// DataFusion's information schema with `table_privileges` added.
#[derive(Debug)]
pub struct InformationSchemaOverlay {
    inner: Arc<dyn SchemaProvider>,
    catalog: Arc<Catalog>,
}

impl InformationSchemaOverlay {
    pub fn new(inner: Arc<dyn SchemaProvider>, catalog: Arc<Catalog>) -> Self {
        Self { inner, catalog }
    }
}

#[async_trait]
impl SchemaProvider for InformationSchemaOverlay {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.push(TABLE_PRIVILEGES.to_owned());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name == TABLE_PRIVILEGES {
            return Ok(Some(Arc::new(TablePrivileges {
                catalog: Arc::clone(&self.catalog),
            })));
        }
        if name == "views" {
            return views(&self.catalog).map(Some);
        }
        self.inner.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        name == TABLE_PRIVILEGES || self.inner.table_exist(name)
    }
}

/// `information_schema.table_privileges`, for the statement's user.
#[derive(Debug)]
struct TablePrivileges {
    catalog: Arc<Catalog>,
}

#[async_trait]
impl TableProvider for TablePrivileges {
    fn schema(&self) -> SchemaRef {
        table_privileges_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let enabled = state
            .config()
            .get_extension::<crate::access::StatementIdentity>()
            .map(|s| {
                let mut roles = self.catalog.roles_of(&s.identity.current_user);
                if s.identity.unlisted_superuser {
                    // Acts as the bootstrap superuser, who owns what it creates.
                    if let Some(b) = self.catalog.bootstrap_role() {
                        roles.insert(b.name.clone());
                    }
                }
                roles
            });
        table_privileges(&self.catalog, enabled.as_ref())?
            .scan(state, projection, filters, limit)
            .await
    }
}

fn table_privileges_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        text("grantor"),
        text("grantee"),
        text("table_catalog"),
        text("table_schema"),
        text("table_name"),
        text("privilege_type"),
        text("is_grantable"),
        text("with_hierarchy"),
    ]))
}

/// One row per privilege held on a table, view or source: the owner's, and each grant's;
/// with `enabled`, only those whose grantor or grantee is among those roles, or PUBLIC.
fn table_privileges(
    catalog: &Catalog,
    enabled: Option<&std::collections::BTreeSet<String>>,
) -> Result<Arc<dyn TableProvider>> {
    let mut rows: Vec<[String; 6]> = Vec::new();
    for a in catalog.objects_access() {
        if a.kind == ObjectKind::Sink {
            continue;
        }
        let mut push = |grantor: &str, grantee: &str, privileges: Privileges| {
            let shown = enabled.is_none_or(|roles| {
                grantee == "PUBLIC" || roles.contains(grantor) || roles.contains(grantee)
            });
            if !shown {
                return;
            }
            for p in privileges.names() {
                let hierarchy = if p == "SELECT" { "YES" } else { "NO" };
                rows.push([
                    grantor.to_owned(),
                    grantee.to_owned(),
                    a.name.clone(),
                    p.to_owned(),
                    if grantee == a.owner { "YES" } else { "NO" }.to_owned(),
                    hierarchy.to_owned(),
                ]);
            }
        };
        push(&a.owner, &a.owner, Privileges::ALL_TABLE);
        for item in &a.acl {
            let grantee = if item.grantee.is_empty() { "PUBLIC" } else { &item.grantee };
            if grantee != a.owner {
                push(&item.grantor, grantee, item.privileges);
            }
        }
    }
    let schema = table_privileges_schema();
    let col = |f: &dyn Fn(&[String; 6]) -> String| -> ArrayRef {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
    };
    let columns = vec![
        col(&|r| r[0].clone()),
        col(&|r| r[1].clone()),
        col(&|_| DATABASE_NAME.to_owned()),
        col(&|_| DEFAULT_SCHEMA.to_owned()),
        col(&|r| r[2].clone()),
        col(&|r| r[3].clone()),
        col(&|r| r[4].clone()),
        col(&|r| r[5].clone()),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `information_schema.views`: PostgreSQL's columns, a row per view (`CREATE VIEW`). Our
/// views are read-only (`is_updatable` NO).
fn views(catalog: &Catalog) -> Result<Arc<dyn TableProvider>> {
    let names = [
        "table_catalog",
        "table_schema",
        "table_name",
        "view_definition",
        "check_option",
        "is_updatable",
        "is_insertable_into",
        "is_trigger_updatable",
        "is_trigger_deletable",
        "is_trigger_insertable_into",
    ];
    let schema = Arc::new(Schema::new(
        names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect::<Vec<_>>(),
    ));
    let views = catalog.plain_views();
    let column = |i: usize| -> ArrayRef {
        Arc::new(
            views
                .iter()
                .map(|v| match i {
                    0 => Some(DATABASE_NAME.to_owned()),
                    1 => Some(DEFAULT_SCHEMA.to_owned()),
                    2 => Some(v.name.clone()),
                    3 => crate::functions::view_definition(catalog, &v.name),
                    _ => Some("NO".to_owned()),
                })
                .collect::<StringArray>(),
        )
    };
    let mut columns: Vec<ArrayRef> = (0..names.len()).map(column).collect();
    columns[4] = Arc::new(StringArray::from(vec!["NONE"; views.len()]));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
