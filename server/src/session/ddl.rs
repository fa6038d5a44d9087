//! DDL of a session: CREATE/DROP of tables, materialized views and sources.

use freshet_catalog::{ColumnDef, TableDef, DEFAULT_SCHEMA};
use freshet_common::{PgError, TableId};
use freshet_sql::CreateTablePlan;

use super::{Outcome, Session};
use crate::error::user_error;

impl Session {
    pub(super) async fn create_table(&self, plan: CreateTablePlan) -> Result<Outcome, PgError> {
        let def = TableDef {
            id: TableId(0),
            schema: DEFAULT_SCHEMA.to_owned(),
            name: plan.name,
            columns: plan
                .columns
                .into_iter()
                .map(|c| ColumnDef {
                    name: c.name,
                    ty: c.ty,
                    not_null: c.not_null,
                    default: c.default,
                    identity: c.identity.map(|i| match i {
                        freshet_sql::IdentityKind::Always => freshet_catalog::Identity::Always,
                        freshet_sql::IdentityKind::ByDefault => {
                            freshet_catalog::Identity::ByDefault
                        }
                    }),
                })
                .collect(),
            primary_key: plan.primary_key,
            checks: plan
                .checks
                .into_iter()
                .map(|(name, expr)| freshet_catalog::CheckDef { name, expr })
                .collect(),
            uniques: plan
                .uniques
                .into_iter()
                .map(|(name, columns)| freshet_catalog::UniqueDef {
                    name,
                    id: TableId(0),
                    columns,
                })
                .collect(),
            indexes: Vec::new(),
            owner: self.new_owner(),
            acl: Vec::new(),
        };
        let _w = self.engine.begin_write().await;
        self.engine
            .catalog
            .create_table(def, plan.if_not_exists)
            .map_err(user_error)?;
        Ok(Outcome::Command {
            tag: "CREATE TABLE",
            rows: None,
        })
    }

    pub(super) async fn drop_tables(
        &self,
        names: &[String],
        if_exists: bool,
        cascade: bool,
    ) -> Result<Outcome, PgError> {
        let mut w = self.engine.begin_write().await;
        // Check all first so a failing name drops nothing, as in PostgreSQL.
        if !if_exists {
            if let Some(missing) = names
                .iter()
                .find(|n| self.engine.catalog.table(n).is_none())
            {
                return Err(user_error(freshet_catalog::Error::UndefinedTable(
                    missing.clone(),
                )));
            }
        }
        let roots: Vec<(TableId, String)> = names
            .iter()
            .filter_map(|n| {
                self.engine
                    .catalog
                    .table(n)
                    .map(|d| (d.id, format!("table {n}")))
            })
            .collect();
        let deps = crate::coord::views::check_dependents(&self.engine, &roots, cascade)?;
        crate::coord::views::drop_views(&self.engine, &deps)?;
        for name in names {
            if let Some(def) = self
                .engine
                .catalog
                .drop_table(name, if_exists)
                .map_err(user_error)?
            {
                w.forget(def.id);
                let why = crate::coord::views::dropped("table", name);
                crate::coord::transient::relations_dropped(&self.engine, &[def.id], &why);
                self.engine.subscriptions.close(def.id, &why);
            }
        }
        Ok(Outcome::Command {
            tag: "DROP TABLE",
            rows: None,
        })
    }

    pub(super) async fn drop_views(
        &self,
        names: &[String],
        if_exists: bool,
        cascade: bool,
    ) -> Result<Outcome, PgError> {
        let _w = self.engine.begin_write().await;
        let mut roots = Vec::new();
        let mut all = Vec::new();
        for name in names {
            match self.engine.catalog.view(name) {
                Some(def) => {
                    roots.push((def.id, format!("materialized view {name}")));
                    all.push(def);
                }
                None if if_exists => {}
                None => {
                    return Err(PgError::new(
                        freshet_common::SqlState::UNDEFINED_TABLE,
                        format!("materialized view \"{name}\" does not exist"),
                    ))
                }
            }
        }
        all.extend(crate::coord::views::check_dependents(
            &self.engine,
            &roots,
            cascade,
        )?);
        crate::coord::views::drop_views(&self.engine, &all)?;
        Ok(Outcome::Command {
            tag: "DROP MATERIALIZED VIEW",
            rows: None,
        })
    }

    pub(super) async fn drop_sources(
        &self,
        names: &[String],
        if_exists: bool,
        cascade: bool,
    ) -> Result<Outcome, PgError> {
        let detached = {
            let _w = self.engine.begin_write().await;
            let mut roots = Vec::new();
            let mut found = Vec::new();
            for name in names {
                match self.engine.catalog.source(name) {
                    Some(def) => {
                        roots.push((def.id, format!("source {name}")));
                        found.push(def.name.clone());
                    }
                    None if if_exists => {}
                    None => {
                        return Err(PgError::new(
                            freshet_common::SqlState::UNDEFINED_TABLE,
                            format!("source \"{name}\" does not exist"),
                        ))
                    }
                }
            }
            let deps = crate::coord::views::check_dependents(&self.engine, &roots, cascade)?;
            crate::coord::views::drop_views(&self.engine, &deps)?;
            self.engine
                .catalog
                .drop_sources(&found)
                .map_err(user_error)?;
            for (id, name) in roots.iter().map(|(id, _)| id).zip(&found) {
                let why = crate::coord::views::dropped("source", name);
                crate::coord::transient::relations_dropped(&self.engine, &[*id], &why);
                self.engine.subscriptions.close(*id, &why);
            }
            let ids: Vec<_> = roots.iter().map(|(id, _)| *id).collect();
            crate::coord::sources::detach(&self.engine, &ids)
        };
        crate::coord::sources::stop(detached).await;
        Ok(Outcome::Command {
            tag: "DROP SOURCE",
            rows: None,
        })
    }

    pub(super) async fn drop_sinks(&self, names: &[String], if_exists: bool) -> Result<Outcome, PgError> {
        let _w = self.engine.begin_write().await;
        let mut found = Vec::new();
        for name in names {
            match self.engine.catalog.sink(name) {
                Some(def) => found.push(def),
                None if if_exists => {}
                None => {
                    return Err(PgError::new(
                        freshet_common::SqlState::UNDEFINED_OBJECT,
                        format!("sink \"{name}\" does not exist"),
                    ))
                }
            }
        }
        crate::coord::sinks::drop_sinks(&self.engine, &found)?;
        Ok(Outcome::Command {
            tag: "DROP SINK",
            rows: None,
        })
    }
}
