//! `freshet_internal.view_state`: how much operator state each materialized view keeps —
//! what tells a user whether a view's state stays bounded (windows closed and forgotten) or
//! grows with its input.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::catalog::TableProvider;
use datafusion::error::{DataFusionError, Result};

use freshet_state::Snapshot;

use super::relation;
use crate::coord::engine::Engine;

/// Entries read per page.
const PAGE: usize = 4096;

/// `view_state (view, operator_entries, operator_bytes, contents_entries)`: per view, the
/// entries and bytes (keys and values) of its operators' state, and the entries of its
/// contents (which hold the accumulators of a view whose rows are its root aggregate's
/// groups), counted in `snapshot` (the latest committed state, contents logs folded).
pub fn view_state(engine: &Engine, snapshot: &Snapshot) -> Result<Arc<dyn TableProvider>> {
    let (mut names, mut entries, mut bytes, mut contents) = (vec![], vec![], vec![], vec![]);
    for def in engine.catalog.views() {
        let (n, size) = count(snapshot, &freshet_state::view_state_prefix(def.id))?;
        let (rows, _) = count(snapshot, &freshet_state::view_prefix(def.id))?;
        let (groups, _) = count(snapshot, &freshet_state::aggregate_view_prefix(def.id))?;
        names.push(def.name.clone());
        entries.push(n);
        bytes.push(size);
        contents.push(rows + groups);
    }
    relation(
        vec![
            Field::new("view", DataType::Utf8, false),
            Field::new("operator_entries", DataType::Int64, false),
            Field::new("operator_bytes", DataType::Int64, false),
            Field::new("contents_entries", DataType::Int64, false),
        ],
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(Int64Array::from(entries)),
            Arc::new(Int64Array::from(bytes)),
            Arc::new(Int64Array::from(contents)),
        ],
    )
}

/// The entries under `prefix` and their bytes.
fn count(snapshot: &Snapshot, prefix: &[u8]) -> Result<(i64, i64)> {
    let (mut n, mut size) = (0i64, 0i64);
    let mut lower = prefix.to_vec();
    loop {
        let page = snapshot
            .scan(prefix, &lower, None, PAGE)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        for (k, v) in &page {
            n += 1;
            size = size.saturating_add((k.len() + v.len()) as i64);
        }
        match page.last() {
            Some((k, _)) if page.len() == PAGE => lower = freshet_state::next_key(k),
            _ => break,
        }
    }
    Ok((n, size))
}
