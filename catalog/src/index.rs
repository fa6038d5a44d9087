//! The indexes of tables as the catalogs list them: each primary key, `UNIQUE` constraint and
//! `CREATE INDEX`, and the `CREATE INDEX`/`DROP INDEX` statements.

use std::sync::Arc;

use freshet_common::TableId;
use freshet_state::{meta_key, table_prefix, Store, WriteBatch};

use crate::{table_key, Catalog, CreateOutcome, Error, IndexDef, Result, TableDef, NEXT_ID_KEY};

/// What an index of a table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// The table's primary key (`<table>_pkey`), under the table's own id.
    Primary,
    /// A `UNIQUE` constraint.
    Unique,
    /// A `CREATE INDEX`.
    Plain,
}

/// One index of a table: its name, the id that names its OID, and its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableIndex<'a> {
    pub name: String,
    pub id: TableId,
    pub kind: IndexKind,
    pub columns: &'a [usize],
}

impl TableDef {
    /// Whether it has any index: a primary key, a unique constraint or a `CREATE INDEX`.
    pub fn has_indexes(&self) -> bool {
        self.has_primary_key() || !self.uniques.is_empty() || !self.indexes.is_empty()
    }

    /// Its indexes: the primary key's, the unique constraints', then `CREATE INDEX`es.
    pub fn all_indexes(&self) -> Vec<TableIndex<'_>> {
        let mut out = Vec::new();
        if self.has_primary_key() {
            out.push(TableIndex {
                name: format!("{}_pkey", self.name),
                id: self.id,
                kind: IndexKind::Primary,
                columns: &self.primary_key,
            });
        }
        out.extend(self.uniques.iter().map(|u| TableIndex {
            name: u.name.clone(),
            id: u.id,
            kind: IndexKind::Unique,
            columns: &u.columns,
        }));
        out.extend(self.indexes.iter().map(|i| TableIndex {
            name: i.name.clone(),
            id: i.id,
            kind: IndexKind::Plain,
            columns: &i.columns,
        }));
        out
    }
}

impl Catalog {
    /// The table that has an index called `name`.
    pub fn index_table(&self, name: &str) -> Option<Arc<TableDef>> {
        self.read()
            .tables
            .values()
            .find(|t| t.all_indexes().iter().any(|i| i.name == name))
            .cloned()
    }

    /// Whether an index or a relation is called `name`.
    pub fn index_name_taken(&self, name: &str) -> bool {
        let inner = self.read();
        inner.taken(name)
            || inner
                .tables
                .values()
                .any(|t| t.all_indexes().iter().any(|i| i.name == name))
    }

    /// `CREATE INDEX name ON table (columns)` under the id `index.id`, which must be the next
    /// id (`peek_next_id`), committing `entries` (the index's entries for the rows the table
    /// already has, built under that id) with the definition.
    pub fn create_index(
        &self,
        table: &str,
        index: IndexDef,
        if_not_exists: bool,
        mut entries: WriteBatch,
    ) -> Result<CreateOutcome> {
        let mut inner = self.write();
        let taken = inner.taken(&index.name)
            || inner
                .tables
                .values()
                .any(|t| t.all_indexes().iter().any(|i| i.name == index.name));
        if taken {
            if if_not_exists {
                return Ok(CreateOutcome::AlreadyExists);
            }
            return Err(Error::DuplicateTable(index.name));
        }
        let Some(def) = inner.tables.get(table) else {
            return Err(Error::UndefinedTable(table.to_owned()));
        };
        let mut def = TableDef::clone(def);
        let id = TableId(inner.next_id);
        if index.id != id {
            return Err(Error::State(freshet_state::Error::Corrupt(format!(
                "index {} built under id {} but the next id is {id}",
                index.name, index.id
            ))));
        }
        def.indexes.push(index);
        entries.put(meta_key(NEXT_ID_KEY), (id.0 + 1).to_be_bytes());
        entries.put(
            table_key(def.id),
            serde_json::to_vec(&def).map_err(Error::Decode)?,
        );
        self.store.write(entries)?;
        inner.next_id = id.0 + 1;
        inner.tables.insert(def.name.clone(), Arc::new(def));
        Ok(CreateOutcome::Created)
    }

    /// `DROP INDEX name`: `Ok(false)` when there is none and `if_exists` was given.
    pub fn drop_index(&self, name: &str, if_exists: bool) -> Result<bool> {
        let mut inner = self.write();
        let found = inner.tables.values().find_map(|t| {
            t.all_indexes()
                .iter()
                .find(|i| i.name == name)
                .map(|i| (Arc::clone(t), i.kind))
        });
        let Some((table, kind)) = found else {
            if inner.taken(name) {
                return Err(Error::NotAnIndex(name.to_owned()));
            }
            if if_exists {
                return Ok(false);
            }
            return Err(Error::UndefinedIndex(name.to_owned()));
        };
        if kind != IndexKind::Plain {
            return Err(Error::IndexRequired(name.to_owned(), table.name.clone()));
        }
        let id = table.indexes.iter().find(|i| i.name == name).map(|i| i.id);
        if let Some(view) = inner
            .views
            .values()
            .find(|v| id.is_some_and(|id| v.indexes_read.contains(&id)))
        {
            return Err(Error::IndexInUse(name.to_owned(), view.name.clone()));
        }
        let mut def = TableDef::clone(&table);
        let mut batch = WriteBatch::default();
        for i in def.indexes.iter().filter(|i| i.name == name) {
            Store::delete_prefix(&mut batch, &table_prefix(i.id));
        }
        def.indexes.retain(|i| i.name != name);
        batch.put(
            table_key(def.id),
            serde_json::to_vec(&def).map_err(Error::Decode)?,
        );
        self.store.write(batch)?;
        inner.tables.insert(def.name.clone(), Arc::new(def));
        Ok(true)
    }
}
