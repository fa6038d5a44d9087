//! Catalog and schema providers over [`freshet_catalog::Catalog`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use freshet_catalog::DEFAULT_SCHEMA;
use freshet_state::Snapshot;

use super::table::StoredTable;
use super::view::ViewTable;
use crate::coord::engine::Engine;

/// The read snapshot of the running statement, stored in the session config's extensions so
/// every table a statement scans reads the same point in time.
#[derive(Debug)]
pub struct StatementSnapshot(pub Arc<Snapshot>);

impl StatementSnapshot {
    /// The running statement's snapshot, or a fresh one outside a statement.
    pub fn of(state: &dyn datafusion::catalog::Session, engine: &Engine) -> Arc<Snapshot> {
        match state.config().get_extension::<StatementSnapshot>() {
            Some(s) => Arc::clone(&s.0),
            None => Arc::new(engine.store.snapshot()),
        }
    }
}

/// The `freshet` catalog: `public` (our tables) plus schemas others register (`pg_catalog`).
#[derive(Debug)]
pub struct FreshetCatalogProvider {
    public: Arc<PublicSchema>,
    others: Schemas,
}

/// Schemas registered beside `public`.
type Schemas = Arc<RwLock<HashMap<String, Arc<dyn SchemaProvider>>>>;

fn read(schemas: &Schemas) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<dyn SchemaProvider>>> {
    schemas
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FreshetCatalogProvider {
    /// A catalog provider reading `engine`'s catalog live.
    pub fn new(engine: Arc<Engine>) -> Self {
        let others = Schemas::default();
        Self {
            public: Arc::new(PublicSchema {
                engine,
                others: Arc::clone(&others),
            }),
            others,
        }
    }
}

impl CatalogProvider for FreshetCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        let mut names = vec![DEFAULT_SCHEMA.to_owned()];
        names.extend(read(&self.others).keys().cloned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == DEFAULT_SCHEMA {
            return Some(Arc::clone(&self.public) as Arc<dyn SchemaProvider>);
        }
        if name == DML_SCHEMA {
            return Some(Arc::new(DmlTargets {
                engine: Arc::clone(&self.public.engine),
            }) as Arc<dyn SchemaProvider>);
        }
        read(&self.others).get(name).cloned()
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        if name == DEFAULT_SCHEMA {
            return Err(DataFusionError::Plan(
                "schema \"public\" is managed by freshet".into(),
            ));
        }
        Ok(self
            .others
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), schema))
    }
}

/// The schema a DELETE's or UPDATE's read query names its target in (see `dml.rs`); not
/// listed among the catalog's schemas.
pub const DML_SCHEMA: &str = freshet_sql::DML_TARGET_SCHEMA;

/// [`DML_SCHEMA`]: every table, with its hidden key column ([`StoredTable::keyed`]).
#[derive(Debug)]
struct DmlTargets {
    engine: Arc<Engine>,
}

#[async_trait]
impl SchemaProvider for DmlTargets {
    fn table_names(&self) -> Vec<String> {
        Vec::new()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.engine.catalog.table(name).map(|def| {
            Arc::new(StoredTable::keyed(Arc::clone(&self.engine), def)) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.engine.catalog.table(name).is_some()
    }
}

/// `public`: every table in the catalog, resolved at each lookup so DDL in one session is
/// visible to the next statement of every other. An unqualified name that is none of ours
/// is looked up in `pg_catalog`, which PostgreSQL's search path always holds (`pg_type`,
/// `pg_class`, `pg_roles` …, as drivers and ORMs write them).
#[derive(Debug)]
struct PublicSchema {
    engine: Arc<Engine>,
    others: Schemas,
}

impl PublicSchema {
    fn pg_catalog(&self) -> Option<Arc<dyn SchemaProvider>> {
        read(&self.others).get("pg_catalog").cloned()
    }
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .engine
            .catalog
            .tables()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        names.extend(self.engine.catalog.views().iter().map(|v| v.name.clone()));
        names.extend(self.engine.catalog.plain_views().iter().map(|v| v.name.clone()));
        names.extend(self.engine.catalog.sources().iter().map(|s| s.name.clone()));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(def) = self.engine.catalog.table(name) {
            return Ok(Some(
                Arc::new(StoredTable::new(Arc::clone(&self.engine), def)) as Arc<dyn TableProvider>,
            ));
        }
        if let Some(def) = self.engine.catalog.source(name) {
            return Ok(Some(
                Arc::new(super::SourceTable::new(Arc::clone(&self.engine), def))
                    as Arc<dyn TableProvider>,
            ));
        }
        if let Some(def) = self.engine.catalog.plain_view(name) {
            let view = super::plain_view::PlainViewTable::plan(&self.engine, def).await?;
            return Ok(Some(Arc::new(view) as Arc<dyn TableProvider>));
        }
        let view = self
            .engine
            .catalog
            .view(name)
            .and_then(|def| self.engine.dataflows.get(def.id));
        if let Some(v) = view {
            return Ok(Some(
                Arc::new(ViewTable::new(Arc::clone(&self.engine), v)) as Arc<dyn TableProvider>,
            ));
        }
        if self.engine.catalog.name_taken(name) {
            return Ok(None);
        }
        if let Some(sequence) = crate::coord::sequences::sequence_relation(&self.engine, name) {
            return sequence.map(Some);
        }
        match self.pg_catalog() {
            Some(pg) => pg.table(name).await,
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.engine.catalog.name_taken(name)
            || self.pg_catalog().is_some_and(|pg| pg.table_exist(name))
    }
}
