//! Views (`CREATE VIEW`): named queries, persisted under `'m' plainview/<id>` as JSON.

use std::sync::Arc;

use freshet_state::{meta_key, WriteBatch};

use crate::{Catalog, Error, PlainViewDef, Result, NEXT_ID_KEY};

pub(crate) const PLAIN_VIEW_KEY_PREFIX: &[u8] = b"plainview/";

pub(crate) fn plain_view_key(id: freshet_common::TableId) -> Vec<u8> {
    let mut k = meta_key(PLAIN_VIEW_KEY_PREFIX);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

impl Catalog {
    /// The view (`CREATE VIEW`) called `name`.
    pub fn plain_view(&self, name: &str) -> Option<Arc<PlainViewDef>> {
        self.read().plain_views.get(name).cloned()
    }

    /// Every view (`CREATE VIEW`), in id order.
    pub fn plain_views(&self) -> Vec<Arc<PlainViewDef>> {
        let mut v: Vec<_> = self.read().plain_views.values().cloned().collect();
        v.sort_by_key(|d| d.id);
        v
    }

    /// Creates the view `def` (its id is assigned here), or with `replace` replaces the view of
    /// that name, which keeps its id, owner and grants.
    pub fn create_plain_view(&self, mut def: PlainViewDef, replace: bool) -> Result<Arc<PlainViewDef>> {
        let mut inner = self.write();
        let mut batch = WriteBatch::default();
        match inner.plain_views.get(&def.name) {
            Some(old) if replace => {
                def.id = old.id;
                def.owner = old.owner.clone();
                def.acl = old.acl.clone();
            }
            _ => {
                if inner.taken(&def.name) {
                    return Err(Error::DuplicateTable(def.name));
                }
                def.id = freshet_common::TableId(inner.next_id);
                batch.put(meta_key(NEXT_ID_KEY), (inner.next_id + 1).to_be_bytes());
            }
        }
        batch.put(plain_view_key(def.id), serde_json::to_vec(&def).map_err(Error::Decode)?);
        self.store.write(batch)?;
        if inner.next_id == def.id.0 {
            inner.next_id += 1;
        }
        let def = Arc::new(def);
        inner.plain_views.insert(def.name.clone(), Arc::clone(&def));
        tracing::info!(view = %def.name, id = %def.id, replace, "view created");
        Ok(def)
    }

    /// Drops views (`CREATE VIEW`) in one write.
    pub fn drop_plain_views(&self, names: &[String]) -> Result<()> {
        let mut inner = self.write();
        let mut batch = WriteBatch::default();
        for name in names {
            let def = inner
                .plain_views
                .get(name)
                .ok_or_else(|| Error::UndefinedTable(name.clone()))?;
            batch.delete(plain_view_key(def.id));
        }
        self.store.write(batch)?;
        for name in names {
            inner.plain_views.remove(name);
            tracing::info!(view = %name, "view dropped");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use freshet_common::{SqlType, TableId};
    use freshet_state::{StateConfig, Store};

    use super::*;
    use crate::{ColumnDef, DEFAULT_SCHEMA};

    fn def(name: &str, sql: &str) -> PlainViewDef {
        PlainViewDef {
            id: TableId(0),
            schema: DEFAULT_SCHEMA.into(),
            name: name.into(),
            sql: sql.into(),
            columns: vec![ColumnDef::new("a", SqlType::Int4, false)],
            inputs: Vec::new(),
            owner: "alice".into(),
            acl: Vec::new(),
        }
    }

    #[test]
    fn views_persist_and_replace_keeps_id_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StateConfig::for_test()).unwrap();
        let cat = Catalog::open(store.clone()).unwrap();
        let v1 = cat.create_plain_view(def("v", "SELECT 1 AS a"), false).unwrap();
        assert!(matches!(
            cat.create_plain_view(def("v", "SELECT 2 AS a"), false),
            Err(Error::DuplicateTable(_))
        ));
        let mut other = def("v", "SELECT 2 AS a");
        other.owner = "bob".into();
        let v2 = cat.create_plain_view(other, true).unwrap();
        assert_eq!((v2.id, v2.owner.as_str(), v2.sql.as_str()), (v1.id, "alice", "SELECT 2 AS a"));
        assert!(cat.name_taken("v"));
        let w = cat.create_plain_view(def("w", "SELECT 3 AS a"), false).unwrap();
        assert!(w.id > v1.id);
        let reopened = Catalog::open(store.clone()).unwrap();
        assert_eq!(*reopened.plain_view("v").unwrap(), *v2);
        reopened.drop_plain_views(&["v".to_owned()]).unwrap();
        let reopened = Catalog::open(store).unwrap();
        assert!(reopened.plain_view("v").is_none());
        assert_eq!(reopened.plain_views().len(), 1);
        assert!(reopened.peek_next_id() > w.id);
    }
}
