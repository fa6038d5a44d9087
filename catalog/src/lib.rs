//! freshet-catalog: durable metadata.
//!
//! Owns the definitions of schemas and tables (columns, types, NOT NULL, primary key) and
//! persists them through `freshet-state` under the `'m'` keyspace. Every DDL change is one
//! write batch: the definition, the id counter and (for DROP) the deletion of the table's rows
//! commit together. It knows nothing of SQL text parsing, DataFusion or pgwire.

mod access;
mod error;
mod index;
mod plain_view;
mod role;
mod table;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use freshet_common::TableId;
use freshet_state::{meta_key, table_prefix, Store, WriteBatch};

pub use access::{ObjectAccess, ObjectKind};
pub use error::{Error, Result};
pub use role::{
    grant, quote_role, render_acl, revoke, AclItem, Privileges, RoleDef, ScramSecret, BOOTSTRAP_ROLE_OID,
};
pub use index::{IndexKind, TableIndex};
pub use table::{
    CheckDef, ColumnDef, Identity, IndexDef, PlainViewDef, SinkDef, SourceDef, TableDef, UniqueDef,
    ViewDef,
};

/// The only schema for now; `search_path` resolves to it.
pub const DEFAULT_SCHEMA: &str = "public";

pub(crate) const NEXT_ID_KEY: &[u8] = b"next_id";
const TABLE_KEY_PREFIX: &[u8] = b"table/";
const VIEW_KEY_PREFIX: &[u8] = b"view/";
const SOURCE_KEY_PREFIX: &[u8] = b"source/";
const SINK_KEY_PREFIX: &[u8] = b"sink/";

/// The in-memory mirror of the persisted catalog. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Catalog {
    store: Store,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tables: BTreeMap<String, Arc<TableDef>>,
    views: BTreeMap<String, Arc<ViewDef>>,
    plain_views: BTreeMap<String, Arc<PlainViewDef>>,
    sources: BTreeMap<String, Arc<SourceDef>>,
    sinks: BTreeMap<String, Arc<SinkDef>>,
    roles: BTreeMap<String, Arc<RoleDef>>,
    /// Grants on the schema `public`.
    schema_acl: Vec<AclItem>,
    next_id: u64,
}

/// What a `CREATE … IF NOT EXISTS` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The object was created.
    Created,
    /// It existed already and `IF NOT EXISTS` was given.
    AlreadyExists,
}

impl Catalog {
    /// Loads the catalog persisted in `store`.
    pub fn open(store: Store) -> Result<Catalog> {
        let snap = store.snapshot();
        let prefix = meta_key(TABLE_KEY_PREFIX);
        let mut inner = Inner::default();
        let mut lower = prefix.clone();
        loop {
            let page = snap.scan(&prefix, &lower, None, 1024)?;
            let Some((last, _)) = page.last() else { break };
            lower = freshet_state::next_key(last);
            for (_, v) in &page {
                let def: TableDef = serde_json::from_slice(v).map_err(Error::Decode)?;
                inner.tables.insert(def.name.clone(), Arc::new(def));
            }
        }
        for (_, v) in snap.scan_prefix(&meta_key(VIEW_KEY_PREFIX))? {
            let def: ViewDef = serde_json::from_slice(&v).map_err(Error::Decode)?;
            inner.views.insert(def.name.clone(), Arc::new(def));
        }
        for (_, v) in snap.scan_prefix(&meta_key(plain_view::PLAIN_VIEW_KEY_PREFIX))? {
            let def: PlainViewDef = serde_json::from_slice(&v).map_err(Error::Decode)?;
            inner.plain_views.insert(def.name.clone(), Arc::new(def));
        }
        for (_, v) in snap.scan_prefix(&meta_key(SOURCE_KEY_PREFIX))? {
            let def: SourceDef = serde_json::from_slice(&v).map_err(Error::Decode)?;
            inner.sources.insert(def.name.clone(), Arc::new(def));
        }
        for (_, v) in snap.scan_prefix(&meta_key(SINK_KEY_PREFIX))? {
            let def: SinkDef = serde_json::from_slice(&v).map_err(Error::Decode)?;
            inner.sinks.insert(def.name.clone(), Arc::new(def));
        }
        for (_, v) in snap.scan_prefix(&meta_key(access::ROLE_KEY_PREFIX))? {
            let def: RoleDef = serde_json::from_slice(&v).map_err(Error::Decode)?;
            inner.roles.insert(def.name.clone(), Arc::new(def));
        }
        if let Some(v) = snap.get(&meta_key(access::SCHEMA_ACL_KEY))? {
            inner.schema_acl = serde_json::from_slice(&v).map_err(Error::Decode)?;
        }
        inner.next_id = match snap.get(&meta_key(NEXT_ID_KEY))? {
            Some(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| Error::Corrupt)?),
            None => 1,
        };
        tracing::info!(
            tables = inner.tables.len(),
            views = inner.views.len(),
            "catalog loaded"
        );
        Ok(Catalog {
            store,
            inner: RwLock::new(inner),
        })
    }

    /// The table called `name`, if it exists.
    pub fn table(&self, name: &str) -> Option<Arc<TableDef>> {
        self.read().tables.get(name).cloned()
    }

    /// Every table, ordered by name.
    pub fn tables(&self) -> Vec<Arc<TableDef>> {
        self.read().tables.values().cloned().collect()
    }

    /// Creates a table. `def.id` is ignored: the catalog assigns the id.
    pub fn create_table(
        &self,
        mut def: TableDef,
        if_not_exists: bool,
    ) -> Result<(CreateOutcome, Arc<TableDef>)> {
        def.validate()?;
        let mut inner = self.write();
        if let Some(existing) = inner.tables.get(&def.name) {
            if if_not_exists {
                return Ok((CreateOutcome::AlreadyExists, Arc::clone(existing)));
            }
            return Err(Error::DuplicateTable(def.name));
        }
        if inner.taken(&def.name) {
            return Err(Error::DuplicateTable(def.name));
        }
        def.id = TableId(inner.next_id);
        for (i, u) in def.uniques.iter_mut().enumerate() {
            u.id = TableId(inner.next_id + 1 + i as u64);
        }
        let next_id = inner.next_id + 1 + def.uniques.len() as u64;
        let mut batch = WriteBatch::default();
        batch.put(meta_key(NEXT_ID_KEY), next_id.to_be_bytes());
        batch.put(
            table_key(def.id),
            serde_json::to_vec(&def).map_err(Error::Decode)?,
        );
        // A fresh id owns no rows, but clear the range anyway so a reused data dir cannot leak
        // (only when it holds something: every key flushed with a range deletion is checked
        // against it).
        for id in def.storage_ids() {
            let prefix = table_prefix(id);
            if self.store.any_key_with_prefix(&prefix)? {
                Store::delete_prefix(&mut batch, &prefix);
            }
        }
        self.store.write(batch)?;
        inner.next_id = next_id;
        let def = Arc::new(def);
        inner.tables.insert(def.name.clone(), Arc::clone(&def));
        tracing::info!(table = %def.name, id = %def.id, "table created");
        Ok((CreateOutcome::Created, def))
    }

    /// Drops a table and all its rows in one atomic write. Returns the dropped definition, or
    /// `None` when it did not exist and `if_exists` was given.
    pub fn drop_table(&self, name: &str, if_exists: bool) -> Result<Option<Arc<TableDef>>> {
        let mut inner = self.write();
        let Some(def) = inner.tables.get(name).cloned() else {
            if if_exists {
                return Ok(None);
            }
            return Err(Error::UndefinedTable(name.to_owned()));
        };
        let mut batch = WriteBatch::default();
        batch.delete(table_key(def.id));
        for id in def.storage_ids() {
            Store::delete_prefix(&mut batch, &table_prefix(id));
        }
        self.store.write(batch)?;
        inner.tables.remove(name);
        tracing::info!(table = %name, id = %def.id, "table dropped");
        Ok(Some(def))
    }

    /// The materialized view called `name`.
    pub fn view(&self, name: &str) -> Option<Arc<ViewDef>> {
        self.read().views.get(name).cloned()
    }

    /// Every materialized view, in creation (id) order.
    pub fn views(&self) -> Vec<Arc<ViewDef>> {
        let mut v: Vec<_> = self.read().views.values().cloned().collect();
        v.sort_by_key(|d| d.id);
        v
    }

    /// Whether view `id` was defined in `snapshot` (a view created after it has no contents
    /// or state there).
    pub fn view_defined_in(snapshot: &freshet_state::Snapshot, id: TableId) -> Result<bool> {
        Ok(snapshot.get(&view_key(id))?.is_some())
    }

    /// Reserves the id a new view will get, so its state keys can be written before
    /// [`Catalog::create_view`] commits them. Only call under the engine's writer lock.
    pub fn peek_next_id(&self) -> TableId {
        TableId(self.read().next_id)
    }

    /// Whether `name` is taken by a table, view, source or sink.
    pub fn name_taken(&self, name: &str) -> bool {
        self.read().taken(name)
    }

    /// Creates a view, committing `batch` (its backfilled state and contents) in the same
    /// write. `def.id` must be [`Catalog::peek_next_id`].
    pub fn create_view(&self, def: ViewDef, batch: WriteBatch) -> Result<Arc<ViewDef>> {
        let (name, id) = (def.name.clone(), def.id);
        let def = self.create_with_id(&name, id, view_key(id), def, batch, |i| &mut i.views)?;
        tracing::info!(view = %def.name, id = %def.id, "materialized view created");
        Ok(def)
    }

    /// Persists `def` (under `key`, as JSON) with `batch` and the next id in one write, and
    /// registers it in the map `map` picks. `id` must be [`Catalog::peek_next_id`].
    fn create_with_id<T: serde::Serialize>(
        &self,
        name: &str,
        id: TableId,
        key: Vec<u8>,
        def: T,
        mut batch: WriteBatch,
        map: impl FnOnce(&mut Inner) -> &mut BTreeMap<String, Arc<T>>,
    ) -> Result<Arc<T>> {
        let mut inner = self.write();
        if inner.taken(name) {
            return Err(Error::DuplicateTable(name.to_owned()));
        }
        if id.0 != inner.next_id {
            return Err(Error::Corrupt);
        }
        batch.put(meta_key(NEXT_ID_KEY), (inner.next_id + 1).to_be_bytes());
        batch.put(key, serde_json::to_vec(&def).map_err(Error::Decode)?);
        self.store.write(batch)?;
        inner.next_id += 1;
        let def = Arc::new(def);
        map(&mut inner).insert(name.to_owned(), Arc::clone(&def));
        Ok(def)
    }

    /// Drops views (their definitions, state and contents) in one write.
    pub fn drop_views(&self, names: &[String]) -> Result<()> {
        let mut inner = self.write();
        let mut batch = WriteBatch::default();
        for name in names {
            let def = inner
                .views
                .get(name)
                .ok_or_else(|| Error::UndefinedTable(name.clone()))?;
            batch.delete(view_key(def.id));
            delete_view_data(&mut batch, def.id);
        }
        self.store.write(batch)?;
        for name in names {
            inner.views.remove(name);
            tracing::info!(view = %name, "materialized view dropped");
        }
        Ok(())
    }

    /// The source called `name`.
    pub fn source(&self, name: &str) -> Option<Arc<SourceDef>> {
        self.read().sources.get(name).cloned()
    }

    /// Every source, in id order.
    pub fn sources(&self) -> Vec<Arc<SourceDef>> {
        let mut v: Vec<_> = self.read().sources.values().cloned().collect();
        v.sort_by_key(|d| d.id);
        v
    }

    /// Creates a source, committing `batch` (its initial progress) in the same write.
    /// `def.id` must be [`Catalog::peek_next_id`].
    pub fn create_source(&self, def: SourceDef, batch: WriteBatch) -> Result<Arc<SourceDef>> {
        let (name, id) = (def.name.clone(), def.id);
        let def = self.create_with_id(&name, id, source_key(id), def, batch, |i| &mut i.sources)?;
        tracing::info!(source = %def.name, id = %def.id, "source created");
        Ok(def)
    }

    /// Drops sources (definitions, progress and bad-message records) in one write.
    pub fn drop_sources(&self, names: &[String]) -> Result<()> {
        let mut inner = self.write();
        let mut batch = WriteBatch::default();
        for name in names {
            let def = inner
                .sources
                .get(name)
                .ok_or_else(|| Error::UndefinedTable(name.clone()))?;
            batch.delete(source_key(def.id));
            Store::delete_prefix(&mut batch, &freshet_state::source_prefix(def.id));
        }
        self.store.write(batch)?;
        for name in names {
            inner.sources.remove(name);
            tracing::info!(source = %name, "source dropped");
        }
        Ok(())
    }

    /// The sink called `name`.
    pub fn sink(&self, name: &str) -> Option<Arc<SinkDef>> {
        self.read().sinks.get(name).cloned()
    }

    /// Every sink, in id order.
    pub fn sinks(&self) -> Vec<Arc<SinkDef>> {
        let mut v: Vec<_> = self.read().sinks.values().cloned().collect();
        v.sort_by_key(|d| d.id);
        v
    }

    /// Creates a sink, committing `batch` (its initial progress) in the same write.
    /// `def.id` must be [`Catalog::peek_next_id`].
    pub fn create_sink(&self, def: SinkDef, batch: WriteBatch) -> Result<Arc<SinkDef>> {
        let (name, id) = (def.name.clone(), def.id);
        let def = self.create_with_id(&name, id, sink_key(id), def, batch, |i| &mut i.sinks)?;
        tracing::info!(sink = %def.name, id = %def.id, "sink created");
        Ok(def)
    }

    /// Drops sinks (definitions, and `batch`: their progress) in one write.
    pub fn drop_sinks(&self, names: &[String], mut batch: WriteBatch) -> Result<()> {
        let mut inner = self.write();
        for name in names {
            let def = inner
                .sinks
                .get(name)
                .ok_or_else(|| Error::UndefinedTable(name.clone()))?;
            batch.delete(sink_key(def.id));
        }
        self.store.write(batch)?;
        for name in names {
            inner.sinks.remove(name);
            tracing::info!(sink = %name, "sink dropped");
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A poisoned lock means a panic mid-update of the in-memory map; the persisted state is
        // intact, and the map is only replaced whole, so reading on is safe.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn taken(&self, name: &str) -> bool {
        self.tables.contains_key(name)
            || self.views.contains_key(name)
            || self.plain_views.contains_key(name)
            || self.sources.contains_key(name)
            || self.sinks.contains_key(name)
    }
}

pub(crate) fn source_key(id: TableId) -> Vec<u8> {
    let mut k = meta_key(SOURCE_KEY_PREFIX);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

pub(crate) fn sink_key(id: TableId) -> Vec<u8> {
    let mut k = meta_key(SINK_KEY_PREFIX);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

pub(crate) fn view_key(id: TableId) -> Vec<u8> {
    let mut k = meta_key(VIEW_KEY_PREFIX);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

pub(crate) fn table_key(id: TableId) -> Vec<u8> {
    let mut k = meta_key(TABLE_KEY_PREFIX);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use freshet_common::SqlType;
    use freshet_state::StateConfig;

    use super::*;

    fn def(name: &str) -> TableDef {
        TableDef {
            id: TableId(0),
            schema: DEFAULT_SCHEMA.into(),
            name: name.into(),
            columns: vec![ColumnDef::new("a", SqlType::Int4, true)],
            primary_key: vec![0],
            checks: Vec::new(),
            uniques: Vec::new(),
            indexes: Vec::new(),
            owner: String::new(),
            acl: Vec::new(),
        }
    }

    #[test]
    fn tables_survive_reopen_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StateConfig::for_test()).unwrap();
        let cat = Catalog::open(store.clone()).unwrap();
        let (_, t1) = cat.create_table(def("t1"), false).unwrap();
        assert!(matches!(
            cat.create_table(def("t1"), false),
            Err(Error::DuplicateTable(_))
        ));
        assert_eq!(
            cat.create_table(def("t1"), true).unwrap().0,
            CreateOutcome::AlreadyExists
        );
        cat.drop_table("t1", false).unwrap();
        let (_, t2) = cat.create_table(def("t2"), false).unwrap();
        assert!(t2.id > t1.id);
        let reopened = Catalog::open(store).unwrap();
        assert!(reopened.table("t1").is_none());
        assert_eq!(*reopened.table("t2").unwrap(), *t2);
        let (_, t3) = reopened.create_table(def("t3"), false).unwrap();
        assert!(t3.id > t2.id);
    }
}

/// Adds to `batch` the deletion of everything view `id` keeps: contents, operator state,
/// contents log, changelog and recorded row errors.
pub fn delete_view_data(batch: &mut WriteBatch, id: TableId) {
    for prefix in [
        freshet_state::view_prefix(id),
        freshet_state::aggregate_view_prefix(id),
        freshet_state::contents_log_prefix(id),
        freshet_state::view_state_prefix(id),
        freshet_state::changelog::changelog_prefix(id),
        freshet_state::changelog::view_errors_prefix(id),
    ] {
        Store::delete_prefix(batch, &prefix);
    }
    batch.delete(freshet_state::changelog::since_key(id));
}

/// The key ranges of everything the views of ids `from..` keep (ids past any catalog
/// object's: the dataflows of `SUBSCRIBE (query)`, which a restart leaves behind).
pub fn view_ranges_from(from: TableId) -> Vec<(Vec<u8>, Vec<u8>)> {
    let last = TableId(u64::MAX);
    [
        freshet_state::view_prefix,
        freshet_state::aggregate_view_prefix,
        freshet_state::contents_log_prefix,
        freshet_state::view_state_prefix,
        freshet_state::changelog::changelog_prefix,
        freshet_state::changelog::view_errors_prefix,
    ]
    .into_iter()
    .map(|prefix| {
        let mut end = prefix(last);
        end.extend_from_slice(&[0xFF; 16]);
        (prefix(from), end)
    })
    .collect()
}
