//! The catalog's roles, object ownership and grants.

use std::collections::BTreeSet;
use std::sync::Arc;

use freshet_state::{meta_key, WriteBatch};

use crate::role::{AclItem, RoleDef, BOOTSTRAP_ROLE_OID};
use crate::{Catalog, Error, Inner, Result};

pub(crate) const ROLE_KEY_PREFIX: &[u8] = b"role/";
pub(crate) const SCHEMA_ACL_KEY: &[u8] = b"schema_acl/public";

/// What kind of object a name is, for privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Table,
    /// A materialized view.
    View,
    /// A view (`CREATE VIEW`).
    PlainView,
    Source,
    Sink,
}

impl ObjectKind {
    /// The word PostgreSQL's "permission denied for …" uses.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::View => "materialized view",
            ObjectKind::PlainView => "view",
            ObjectKind::Source => "source",
            ObjectKind::Sink => "sink",
        }
    }
}

/// An object's ownership and grants.
#[derive(Debug, Clone)]
pub struct ObjectAccess {
    pub kind: ObjectKind,
    pub name: String,
    /// The owning role (the bootstrap superuser's name for objects without one).
    pub owner: String,
    pub acl: Vec<AclItem>,
}

impl Catalog {
    /// Every role, ordered by name.
    pub fn roles(&self) -> Vec<Arc<RoleDef>> {
        self.read().roles.values().cloned().collect()
    }

    /// The role called `name`.
    pub fn role(&self, name: &str) -> Option<Arc<RoleDef>> {
        self.read().roles.get(name).cloned()
    }

    /// The superuser made at first start, if there is one yet.
    pub fn bootstrap_role(&self) -> Option<Arc<RoleDef>> {
        self.read()
            .roles
            .values()
            .find(|r| r.oid == BOOTSTRAP_ROLE_OID)
            .cloned()
    }

    /// Creates a role. An `oid` of 0 takes the next id.
    pub fn create_role(&self, mut def: RoleDef) -> Result<Arc<RoleDef>> {
        let mut inner = self.write();
        if inner.roles.contains_key(&def.name) {
            return Err(Error::DuplicateRole(def.name));
        }
        for m in &def.member_of {
            if !inner.roles.contains_key(m) {
                return Err(Error::UndefinedRole(m.clone()));
            }
        }
        let mut batch = WriteBatch::default();
        if def.oid == 0 {
            def.oid = u32::try_from(inner.next_id).map_err(|_| Error::Corrupt)?;
            inner.next_id += 1;
            batch.put(meta_key(crate::NEXT_ID_KEY), inner.next_id.to_be_bytes());
        }
        batch.put(
            role_key(&def.name),
            serde_json::to_vec(&def).map_err(Error::Decode)?,
        );
        self.store.write(batch)?;
        let def = Arc::new(def);
        inner.roles.insert(def.name.clone(), Arc::clone(&def));
        tracing::info!(role = %def.name, "role created");
        Ok(def)
    }

    /// Changes the role `name` with `change`.
    pub fn alter_role(
        &self,
        name: &str,
        change: impl FnOnce(&mut RoleDef) -> Result<()>,
    ) -> Result<Arc<RoleDef>> {
        let mut inner = self.write();
        let mut def = RoleDef::clone(
            inner
                .roles
                .get(name)
                .ok_or_else(|| Error::UndefinedRole(name.to_owned()))?,
        );
        change(&mut def)?;
        for m in &def.member_of {
            if !inner.roles.contains_key(m) {
                return Err(Error::UndefinedRole(m.clone()));
            }
            // Membership may not loop back.
            if m == name || inner.closure(m).contains(name) {
                return Err(Error::CircularMembership(m.clone(), name.to_owned()));
            }
        }
        let mut batch = WriteBatch::default();
        batch.put(role_key(name), serde_json::to_vec(&def).map_err(Error::Decode)?);
        self.store.write(batch)?;
        let def = Arc::new(def);
        inner.roles.insert(name.to_owned(), Arc::clone(&def));
        Ok(def)
    }

    /// Drops the role `name`: refused while it owns objects or holds privileges on them.
    /// Its memberships go with it. `Ok(false)` when it does not exist.
    pub fn drop_role(&self, name: &str) -> Result<bool> {
        let mut inner = self.write();
        if !inner.roles.contains_key(name) {
            return Ok(false);
        }
        let bootstrap = inner.bootstrap_name();
        let mut owned = Vec::new();
        let mut granted = Vec::new();
        for a in inner.objects(&bootstrap) {
            if a.owner == name {
                owned.push(a.name.clone());
            }
            if a.acl.iter().any(|i| i.grantee == name) {
                granted.push(a.name.clone());
            }
        }
        if inner.schema_acl.iter().any(|i| i.grantee == name) {
            granted.push("schema public".into());
        }
        if !owned.is_empty() || !granted.is_empty() || bootstrap == name {
            let mut why = Vec::new();
            if bootstrap == name {
                why.push("it is the bootstrap superuser".to_owned());
            }
            if !owned.is_empty() {
                why.push(format!("owner of {}", owned.join(", ")));
            }
            if !granted.is_empty() {
                why.push(format!("privileges for {}", granted.join(", ")));
            }
            return Err(Error::RoleInUse(name.to_owned(), why.join("; ")));
        }
        let mut batch = WriteBatch::default();
        batch.delete(role_key(name));
        let mut changed = Vec::new();
        for r in inner.roles.values() {
            if r.member_of.iter().any(|m| m == name) {
                let mut r = RoleDef::clone(r);
                r.member_of.retain(|m| m != name);
                batch.put(role_key(&r.name), serde_json::to_vec(&r).map_err(Error::Decode)?);
                changed.push(r);
            }
        }
        self.store.write(batch)?;
        inner.roles.remove(name);
        for r in changed {
            inner.roles.insert(r.name.clone(), Arc::new(r));
        }
        tracing::info!(role = %name, "role dropped");
        Ok(true)
    }

    /// `name` and every role it is a member of, directly or through others.
    pub fn roles_of(&self, name: &str) -> BTreeSet<String> {
        self.read().closure(name)
    }

    /// The ownership and grants of the table, view or source `name`.
    pub fn object_access(&self, name: &str) -> Option<ObjectAccess> {
        let inner = self.read();
        let bootstrap = inner.bootstrap_name();
        inner.object(name, &bootstrap)
    }

    /// Every table's, view's and source's ownership and grants.
    pub fn objects_access(&self) -> Vec<ObjectAccess> {
        let inner = self.read();
        let bootstrap = inner.bootstrap_name();
        inner.objects(&bootstrap)
    }

    /// Replaces the grants on the table, view or source `name`.
    pub fn set_object_acl(&self, name: &str, acl: Vec<AclItem>) -> Result<()> {
        let mut inner = self.write();
        let mut batch = WriteBatch::default();
        if let Some(t) = inner.tables.get(name) {
            let mut def = crate::TableDef::clone(t);
            def.acl = acl;
            batch.put(crate::table_key(def.id), serde_json::to_vec(&def).map_err(Error::Decode)?);
            self.store.write(batch)?;
            inner.tables.insert(name.to_owned(), Arc::new(def));
        } else if let Some(v) = inner.views.get(name) {
            let mut def = crate::ViewDef::clone(v);
            def.acl = acl;
            batch.put(crate::view_key(def.id), serde_json::to_vec(&def).map_err(Error::Decode)?);
            self.store.write(batch)?;
            inner.views.insert(name.to_owned(), Arc::new(def));
        } else if let Some(v) = inner.plain_views.get(name) {
            let mut def = crate::PlainViewDef::clone(v);
            def.acl = acl;
            batch.put(
                crate::plain_view::plain_view_key(def.id),
                serde_json::to_vec(&def).map_err(Error::Decode)?,
            );
            self.store.write(batch)?;
            inner.plain_views.insert(name.to_owned(), Arc::new(def));
        } else if let Some(s) = inner.sources.get(name) {
            let mut def = crate::SourceDef::clone(s);
            def.acl = acl;
            batch.put(crate::source_key(def.id), serde_json::to_vec(&def).map_err(Error::Decode)?);
            self.store.write(batch)?;
            inner.sources.insert(name.to_owned(), Arc::new(def));
        } else {
            return Err(Error::UndefinedTable(name.to_owned()));
        }
        Ok(())
    }

    /// Grants on the schema `public` (`CREATE`, `USAGE`).
    pub fn schema_acl(&self) -> Vec<AclItem> {
        self.read().schema_acl.clone()
    }

    /// Replaces the grants on the schema `public`.
    pub fn set_schema_acl(&self, acl: Vec<AclItem>) -> Result<()> {
        let mut inner = self.write();
        let mut batch = WriteBatch::default();
        batch.put(meta_key(SCHEMA_ACL_KEY), serde_json::to_vec(&acl).map_err(Error::Decode)?);
        self.store.write(batch)?;
        inner.schema_acl = acl;
        Ok(())
    }
}

impl Inner {
    /// The bootstrap superuser's name (owner of objects recorded without one).
    pub(crate) fn bootstrap_name(&self) -> String {
        self.roles
            .values()
            .find(|r| r.oid == BOOTSTRAP_ROLE_OID)
            .map(|r| r.name.clone())
            .unwrap_or_default()
    }

    fn closure(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_owned()];
        while let Some(r) = todo.pop() {
            if !seen.insert(r.clone()) {
                continue;
            }
            if let Some(def) = self.roles.get(&r) {
                todo.extend(def.member_of.iter().cloned());
            }
        }
        seen
    }

    fn object(&self, name: &str, bootstrap: &str) -> Option<ObjectAccess> {
        let access = |kind, owner: &str, acl: &Vec<AclItem>| ObjectAccess {
            kind,
            name: name.to_owned(),
            owner: if owner.is_empty() { bootstrap } else { owner }.to_owned(),
            acl: acl.clone(),
        };
        if let Some(t) = self.tables.get(name) {
            return Some(access(ObjectKind::Table, &t.owner, &t.acl));
        }
        if let Some(v) = self.views.get(name) {
            return Some(access(ObjectKind::View, &v.owner, &v.acl));
        }
        if let Some(v) = self.plain_views.get(name) {
            return Some(access(ObjectKind::PlainView, &v.owner, &v.acl));
        }
        self.sources
            .get(name)
            .map(|s| access(ObjectKind::Source, &s.owner, &s.acl))
    }

    fn objects(&self, bootstrap: &str) -> Vec<ObjectAccess> {
        let mut out: Vec<ObjectAccess> = self
            .tables
            .keys()
            .chain(self.views.keys())
            .chain(self.plain_views.keys())
            .chain(self.sources.keys())
            .filter_map(|n| self.object(n, bootstrap))
            .collect();
        // Sinks only have owners.
        out.extend(self.sinks.values().map(|s| ObjectAccess {
            kind: ObjectKind::Sink,
            name: s.name.clone(),
            owner: if s.owner.is_empty() { bootstrap } else { &s.owner }.to_owned(),
            acl: Vec::new(),
        }));
        out
    }
}

pub(crate) fn role_key(name: &str) -> Vec<u8> {
    let mut k = meta_key(ROLE_KEY_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}
