//! DDL of a session: CREATE/DROP of tables, views, materialized views and sources.

use freshet_catalog::{ColumnDef, TableDef, DEFAULT_SCHEMA};
use freshet_common::{PgError, SqlState, TableId};
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
        for name in names {
            if self.engine.catalog.table(name).is_none() && (!if_exists || self.engine.catalog.name_taken(name)) {
                return Err(self.not_a("table", name));
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
        let deps = crate::coord::dependents::check(&self.engine, &roots, cascade)?;
        crate::coord::dependents::drop(&self.engine, &deps)?;
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
        let cat = &self.engine.catalog;
        let (roots, mut all) = self.named("materialized view", names, if_exists, |n| cat.view(n), |d| d.id)?;
        let mut deps = crate::coord::dependents::check(&self.engine, &roots, cascade)?;
        all.append(&mut deps.views);
        deps.views = all;
        crate::coord::dependents::drop(&self.engine, &deps)?;
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
            let cat = &self.engine.catalog;
            let (roots, defs) = self.named("source", names, if_exists, |n| cat.source(n), |d| d.id)?;
            let found: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
            let deps = crate::coord::dependents::check(&self.engine, &roots, cascade)?;
            crate::coord::dependents::drop(&self.engine, &deps)?;
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

impl Session {
    /// The objects of one kind (`noun`) a DROP names, found by `find`, with how each is
    /// named in errors (`view v`); a missing one is an error unless `if_exists`.
    fn named<T>(
        &self,
        noun: &str,
        names: &[String],
        if_exists: bool,
        find: impl Fn(&str) -> Option<std::sync::Arc<T>>,
        id: impl Fn(&T) -> TableId,
    ) -> Result<(Vec<(TableId, String)>, Vec<std::sync::Arc<T>>), PgError> {
        let (mut roots, mut found) = (Vec::new(), Vec::new());
        for name in names {
            match find(name) {
                Some(def) => {
                    roots.push((id(&def), format!("{noun} {name}")));
                    found.push(def);
                }
                None if if_exists && !self.engine.catalog.name_taken(name) => {}
                None => return Err(self.not_a(noun, name)),
            }
        }
        Ok((roots, found))
    }

    /// What DROP of `name` as a `wanted` says when `name` is no such object: PostgreSQL's
    /// 42809 `"v" is not a table` with a hint naming the right DROP, or 42P01.
    fn not_a(&self, wanted: &str, name: &str) -> PgError {
        let cat = &self.engine.catalog;
        let actual = if cat.table(name).is_some() {
            Some(("table", "TABLE"))
        } else if cat.view(name).is_some() {
            Some(("materialized view", "MATERIALIZED VIEW"))
        } else if cat.plain_view(name).is_some() {
            Some(("view", "VIEW"))
        } else if cat.source(name).is_some() {
            Some(("source", "SOURCE"))
        } else if cat.sink(name).is_some() {
            Some(("sink", "SINK"))
        } else {
            None
        };
        match actual {
            Some((noun, keyword)) if noun != wanted => PgError::new(
                SqlState::WRONG_OBJECT_TYPE,
                format!("\"{name}\" is not a {wanted}"),
            )
            .with_hint(format!("Use DROP {keyword} to remove a {noun}.")),
            _ => PgError::new(
                SqlState::UNDEFINED_TABLE,
                format!("{wanted} \"{name}\" does not exist"),
            ),
        }
    }

    /// `CREATE [OR REPLACE] VIEW`: plans the query as the session would run it (so errors
    /// are the session's), records its columns and the relations it names.
    pub(super) async fn create_plain_view(
        &self,
        plan: &freshet_sql::CreatePlainViewPlan,
    ) -> Result<Outcome, PgError> {
        let _w = self.engine.begin_write().await;
        let cat = &self.engine.catalog;
        let existing = cat.plain_view(&plan.name);
        if cat.name_taken(&plan.name) && existing.is_none() {
            return Err(if plan.or_replace {
                PgError::new(SqlState::WRONG_OBJECT_TYPE, format!("\"{}\" is not a view", plan.name))
            } else {
                user_error(freshet_catalog::Error::DuplicateTable(plan.name.clone()))
            });
        }
        if existing.is_some() && !plan.or_replace {
            return Err(user_error(freshet_catalog::Error::DuplicateTable(plan.name.clone())));
        }
        let stmt = freshet_sql::ast::Statement::Query(plan.query.clone());
        let planned = crate::query::plan_statement(&self.statement_state(), stmt).await?;
        let columns = view_columns(&planned, &plan.columns)?;
        let mut inputs = Vec::new();
        for name in crate::query::plain_view::relations_scanned(&planned) {
            if let Some(a) = object_id(cat, &name) {
                inputs.push(a);
            }
        }
        if let Some(old) = &existing {
            replaceable(&self.engine, old, &columns, &inputs)?;
        }
        let def = freshet_catalog::PlainViewDef {
            id: TableId(0),
            schema: DEFAULT_SCHEMA.to_owned(),
            name: plan.name.clone(),
            sql: plan.sql.clone(),
            columns,
            inputs,
            owner: self.new_owner(),
            acl: Vec::new(),
        };
        cat.create_plain_view(def, plan.or_replace).map_err(user_error)?;
        Ok(Outcome::Command {
            tag: "CREATE VIEW",
            rows: None,
        })
    }

    /// `DROP VIEW`.
    pub(super) async fn drop_plain_views(
        &self,
        names: &[String],
        if_exists: bool,
        cascade: bool,
    ) -> Result<Outcome, PgError> {
        let _w = self.engine.begin_write().await;
        let cat = &self.engine.catalog;
        let (roots, mut all) = self.named("view", names, if_exists, |n| cat.plain_view(n), |d| d.id)?;
        let mut deps = crate::coord::dependents::check(&self.engine, &roots, cascade)?;
        all.append(&mut deps.plain);
        deps.plain = all;
        crate::coord::dependents::drop(&self.engine, &deps)?;
        Ok(Outcome::Command {
            tag: "DROP VIEW",
            rows: None,
        })
    }
}

/// The id of the table, view, materialized view or source `name`.
fn object_id(cat: &freshet_catalog::Catalog, name: &str) -> Option<TableId> {
    cat.table(name)
        .map(|d| d.id)
        .or_else(|| cat.view(name).map(|d| d.id))
        .or_else(|| cat.plain_view(name).map(|d| d.id))
        .or_else(|| cat.source(name).map(|d| d.id))
}

/// A view's columns: the query's, named by `given` (as many as it lists) or as PostgreSQL
/// names them.
fn view_columns(
    plan: &datafusion::logical_expr::LogicalPlan,
    given: &[String],
) -> Result<Vec<ColumnDef>, PgError> {
    let fields = plan.schema().fields();
    if given.len() > fields.len() {
        return Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            "CREATE VIEW specifies more column names than columns",
        ));
    }
    let names = freshet_sql::names::pg_output_names(plan);
    let mut seen = std::collections::HashSet::new();
    let mut columns = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let name = given
            .get(i)
            .or(names.get(i))
            .cloned()
            .unwrap_or_else(|| f.name().clone());
        if !seen.insert(name.clone()) {
            return Err(PgError::new(
                SqlState::DUPLICATE_COLUMN,
                format!("column \"{name}\" specified more than once"),
            ));
        }
        let ty = freshet_sql::types::sql_type_of(f)
            .ok_or_else(|| PgError::not_supported(format!("a view column of type {}", f.data_type())))?;
        columns.push(ColumnDef::new(name, ty, false));
    }
    Ok(columns)
}

/// Whether `old` may be replaced by a query with `columns` reading `inputs`, as PostgreSQL
/// allows: the same columns (names and types) first, new ones only after; no view reading
/// itself; and (freshet's own rule) no materialized view maintaining its query.
fn replaceable(
    engine: &crate::coord::engine::Engine,
    old: &freshet_catalog::PlainViewDef,
    columns: &[ColumnDef],
    inputs: &[TableId],
) -> Result<(), PgError> {
    const INVALID: SqlState = SqlState("42P16");
    if columns.len() < old.columns.len() {
        return Err(PgError::new(INVALID, "cannot drop columns from view"));
    }
    for (was, now) in old.columns.iter().zip(columns) {
        if was.name != now.name {
            return Err(PgError::new(
                INVALID,
                format!("cannot change name of view column \"{}\" to \"{}\"", was.name, now.name),
            )
            .with_hint("Use ALTER VIEW ... RENAME COLUMN ... to change name of view column instead."));
        }
        if was.ty != now.ty {
            return Err(PgError::new(
                INVALID,
                format!(
                    "cannot change data type of view column \"{}\" from {} to {}",
                    was.name,
                    was.ty.pg_name(),
                    now.ty.pg_name()
                ),
            ));
        }
    }
    let readers = crate::coord::dependents::closure(engine, &[old.id]);
    if inputs.contains(&old.id) || readers.plain.iter().any(|p| inputs.contains(&p.id)) {
        return Err(PgError::new(
            SqlState("42P17"),
            format!("infinite recursion detected in rules for relation \"{}\"", old.name),
        ));
    }
    if let Some(m) = readers.views.first() {
        return Err(PgError::not_supported(format!(
            "CREATE OR REPLACE VIEW of a view that materialized view {} maintains (drop it first)",
            m.name
        )));
    }
    Ok(())
}
