//! What each statement needs the session's user to hold (42501 otherwise). Reads of tables,
//! views and sources by queries are checked where DataFusion scans them
//! ([`crate::access::StatementIdentity`]); this covers writes, DDL and what reads without a
//! scan (materialized view definitions, subscriptions, sinks).

use std::ops::ControlFlow;

use freshet_catalog::Privileges;
use freshet_common::PgError;
use freshet_sql::{ast, DmlKind, Statement};

use super::Session;

impl Session {
    /// 42501 unless the session's current user may run `stmt`.
    pub(super) fn authorize(&self, stmt: &Statement) -> Result<(), PgError> {
        let who = self.identity();
        let cat = &*self.engine.catalog;
        match stmt {
            Statement::Insert(plan) => {
                who.require(cat, &plan.table, Privileges::INSERT)?;
                if let Some(c) = &plan.on_conflict {
                    if matches!(c.action, freshet_sql::ConflictAction::Update { .. }) {
                        who.require(cat, &plan.table, Privileges::UPDATE)?;
                    }
                }
                if plan.returning.is_some() {
                    who.require(cat, &plan.table, Privileges::SELECT)?;
                }
                Ok(())
            }
            Statement::Dml(plan) => dml(self, plan),
            Statement::ExplainDml(e) => dml(self, &e.plan),
            Statement::Truncate { table } => who.require(cat, table, Privileges::TRUNCATE),
            Statement::CopyFrom(c) => who.require(cat, &c.table, Privileges::INSERT),
            Statement::CreateTable(_) | Statement::CreateSource(_) => who.require_create(cat),
            Statement::CreateView(plan) => match cat.plain_view(&plan.name) {
                Some(_) if plan.or_replace => who.require_owner_of(cat, &plan.name),
                _ => who.require_create(cat),
            },
            Statement::CreateMaterializedView(plan) => {
                if !plan.explain {
                    who.require_create(cat)?;
                }
                for name in relations(&plan.query) {
                    who.require(cat, &name, Privileges::SELECT)?;
                }
                Ok(())
            }
            Statement::CreateSink(plan) => {
                // Every sink writes files on the server (as COPY … TO 'file' in PostgreSQL).
                if !who.is_superuser(cat) {
                    return Err(PgError::new(
                        freshet_common::SqlState::INSUFFICIENT_PRIVILEGE,
                        "permission denied to create a file sink",
                    )
                    .with_detail("Only roles with the SUPERUSER attribute may write files on the server."));
                }
                who.require(cat, &plan.from, Privileges::SELECT)
            }
            Statement::DropTable { names, .. }
            | Statement::DropMaterializedView { names, .. }
            | Statement::DropView { names, .. }
            | Statement::DropSource { names, .. }
            | Statement::DropSink { names, .. } => names
                .iter()
                .try_for_each(|n| who.require_owner_of(cat, n)),
            Statement::ResetSource { name } => who.require_owner_of(cat, name),
            Statement::CreateIndex(plan) => who.require_owner_of(cat, &plan.table),
            Statement::DropIndex { names, .. } => names
                .iter()
                .filter_map(|n| cat.index_table(n))
                .try_for_each(|t| who.require_owner_of(cat, &t.name)),
            Statement::Subscribe(plan) | Statement::DeclareSubscribe { plan, .. } => {
                match &plan.query {
                    Some(q) => relations(q)
                        .iter()
                        .try_for_each(|name| who.require(cat, name, Privileges::SELECT)),
                    None => who.require(cat, &plan.relation, Privileges::SELECT),
                }
            }
            _ => Ok(()),
        }
    }
}

/// DELETE needs DELETE, UPDATE needs UPDATE on the target; reading it (a `WHERE`, a
/// `RETURNING`) needs SELECT too. Other tables the statement reads are checked as scanned.
fn dml(session: &Session, plan: &freshet_sql::DmlPlan) -> Result<(), PgError> {
    let who = session.identity();
    let cat = &*session.engine.catalog;
    let want = match plan.kind {
        DmlKind::Delete => Privileges::DELETE,
        DmlKind::Update => Privileges::UPDATE,
    };
    who.require(cat, &plan.table, want)?;
    let reads = plan.returning.is_some() || plan.query.to_ascii_uppercase().contains(" WHERE ");
    if reads {
        who.require(cat, &plan.table, Privileges::SELECT)?;
    }
    Ok(())
}

/// The names of the relations a query reads (single-part or `public.` names; CTE names
/// included, which can only make the check stricter).
fn relations(query: &ast::Query) -> Vec<String> {
    let mut out = Vec::new();
    let _ = ast::visit_relations(query, |name| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| {
                if i.quote_style.is_some() {
                    i.value.clone()
                } else {
                    i.value.to_lowercase()
                }
            })
            .collect();
        match parts.as_slice() {
            [t] => out.push(t.clone()),
            [s, t] if s == "public" => out.push(t.clone()),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    out
}
