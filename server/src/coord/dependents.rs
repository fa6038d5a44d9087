//! What depends on a relation: materialized views and views (`CREATE VIEW`) that read it,
//! directly or through others, and the sinks of those. DROP refuses them (2BP01) or, with
//! CASCADE, drops them too.

use std::collections::HashSet;
use std::sync::Arc;

use freshet_catalog::{PlainViewDef, ViewDef};
use freshet_common::{PgError, SqlState, TableId};

use crate::coord::engine::Engine;

/// The views that read some relations, directly or through one another.
#[derive(Debug, Default)]
pub struct Dependents {
    /// Materialized views, in id order (readers after what they read).
    pub views: Vec<Arc<ViewDef>>,
    /// Views (`CREATE VIEW`).
    pub plain: Vec<Arc<PlainViewDef>>,
}

/// Every materialized view and view that reads any of `roots`, directly or through others
/// (`roots` themselves left out).
pub fn closure(engine: &Engine, roots: &[TableId]) -> Dependents {
    let mut ids: HashSet<TableId> = roots.iter().copied().collect();
    let mut out = Dependents::default();
    let views = engine.catalog.views();
    let plain = engine.catalog.plain_views();
    // A view replaced by CREATE OR REPLACE keeps its id but may read newer relations: repeat
    // until nothing is added rather than trust id order.
    loop {
        let mut grew = false;
        for p in &plain {
            if !ids.contains(&p.id) && p.inputs.iter().any(|i| ids.contains(i)) {
                ids.insert(p.id);
                out.plain.push(Arc::clone(p));
                grew = true;
            }
        }
        for v in &views {
            let reads = v.inputs.iter().chain(&v.views_read).any(|i| ids.contains(i));
            if !ids.contains(&v.id) && reads {
                ids.insert(v.id);
                out.views.push(Arc::clone(v));
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    out.views.sort_by_key(|v| v.id);
    out
}

/// Refuses (2BP01) or, with `cascade`, lists the dependents of dropping `roots` (each with
/// how PostgreSQL names it: `table t`, `view v` …).
pub fn check(engine: &Engine, roots: &[(TableId, String)], cascade: bool) -> Result<Dependents, PgError> {
    let ids: Vec<TableId> = roots.iter().map(|(id, _)| *id).collect();
    let deps = closure(engine, &ids);
    if cascade {
        return Ok(deps);
    }
    let refuse = |what: &str, detail: String| {
        PgError::new(
            SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
            format!("cannot drop {what} because other objects depend on it"),
        )
        .with_detail(detail)
        .with_hint("Use DROP ... CASCADE to drop the dependent objects too.")
    };
    let name_of = |id: TableId| {
        roots
            .iter()
            .find(|(r, _)| *r == id)
            .map_or_else(|| roots[0].1.clone(), |(_, n)| n.clone())
    };
    // Sinks from any view that goes: dropped with it under CASCADE (`drop`).
    let going: HashSet<TableId> = ids.iter().copied().chain(deps.views.iter().map(|d| d.id)).collect();
    if let Some(sink) = engine.catalog.sinks().into_iter().find(|s| going.contains(&s.from)) {
        let what = name_of(sink.from);
        return Err(refuse(&what, format!("sink {} depends on it", sink.name)));
    }
    let direct = |inputs: &[&[TableId]]| inputs.iter().flat_map(|s| s.iter()).find(|i| ids.contains(i)).copied();
    for v in &deps.views {
        if let Some(root) = direct(&[&v.inputs, &v.views_read]) {
            let what = name_of(root);
            return Err(refuse(&what, format!("materialized view {} depends on {what}", v.name)));
        }
    }
    for p in &deps.plain {
        if let Some(root) = direct(&[&p.inputs]) {
            let what = name_of(root);
            return Err(refuse(&what, format!("view {} depends on {what}", p.name)));
        }
    }
    Ok(deps)
}

/// Drops dependents (already checked): materialized views with their sinks and dataflows,
/// and views.
pub fn drop(engine: &Engine, deps: &Dependents) -> Result<(), PgError> {
    if !deps.views.is_empty() {
        crate::coord::views::drop_views(engine, &deps.views)?;
    }
    if !deps.plain.is_empty() {
        let names: Vec<String> = deps.plain.iter().map(|p| p.name.clone()).collect();
        engine
            .catalog
            .drop_plain_views(&names)
            .map_err(crate::error::user_error)?;
    }
    Ok(())
}
