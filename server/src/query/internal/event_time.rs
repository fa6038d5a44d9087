//! `freshet_internal.source_watermarks` and `freshet_internal.late_rows`.

use std::sync::Arc;

use datafusion::arrow::array::{
    BooleanArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::error::{DataFusionError, Result};

use super::relation;
use crate::coord::engine::Engine;

fn timestamptz(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        nullable,
    )
}

fn times(v: Vec<Option<i64>>) -> Arc<TimestampMicrosecondArray> {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("+00:00"))
}

/// `source_watermarks (source, partition, max_event_time, idle, watermark)`: per partition of
/// each source with `WATERMARK FOR`, the largest event time read, whether it is idle, and the
/// source's watermark now.
pub fn source_watermarks(engine: &Engine) -> Result<Arc<dyn TableProvider>> {
    let (mut src, mut part, mut max, mut idle, mut mark) = (vec![], vec![], vec![], vec![], vec![]);
    for rt in engine.sources.all() {
        let Some((w, parts)) = rt.watermarks() else {
            continue;
        };
        for (p, m, i) in parts {
            src.push(rt.def.name.clone());
            part.push(p);
            max.push(m);
            idle.push(i);
            mark.push(w);
        }
    }
    relation(
        vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            timestamptz("max_event_time", true),
            Field::new("idle", DataType::Boolean, false),
            timestamptz("watermark", true),
        ],
        vec![
            Arc::new(StringArray::from(src)),
            Arc::new(Int32Array::from(part)),
            times(max),
            Arc::new(BooleanArray::from(idle)),
            times(mark),
        ],
    )
}

/// `late_rows (source, partition, "offset", event_time, watermark)`: rows that arrived below
/// their source's watermark (kept out of its views), with the watermark they met.
pub fn late_rows(engine: &Engine) -> Result<Arc<dyn TableProvider>> {
    let snapshot = engine.store.snapshot();
    let (mut src, mut part, mut off, mut ts, mut mark) = (vec![], vec![], vec![], vec![], vec![]);
    for def in engine.catalog.sources() {
        if def.watermark.is_none() {
            continue;
        }
        let late = crate::coord::sources::watermark::read_late(&snapshot, def.id)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        for (p, o, t, w) in late {
            src.push(def.name.clone());
            part.push(p);
            off.push(o);
            ts.push(Some(t));
            mark.push(Some(w));
        }
    }
    relation(
        vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("offset", DataType::Int64, false),
            timestamptz("event_time", false),
            timestamptz("watermark", false),
        ],
        vec![
            Arc::new(StringArray::from(src)),
            Arc::new(Int32Array::from(part)),
            Arc::new(Int64Array::from(off)),
            times(ts),
            times(mark),
        ],
    )
}

/// `view_late_rows (view, source, late_rows)`: per view and each source with `WATERMARK FOR`
/// it reads (directly or through other views), how many of the source's rows arrived late and
/// so were skipped by the view (lateness is decided at the source, for every view over it).
pub fn view_late_rows(engine: &Engine) -> Result<Arc<dyn TableProvider>> {
    let snapshot = engine.store.snapshot();
    let mut late = std::collections::HashMap::new();
    for def in engine.catalog.sources() {
        if def.watermark.is_some() {
            let rows = crate::coord::sources::watermark::read_late(&snapshot, def.id)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            late.insert(def.id, (def.name.clone(), rows.len() as i64));
        }
    }
    let views = engine.catalog.views();
    let inputs: std::collections::HashMap<_, _> =
        views.iter().map(|v| (v.id, v.inputs.clone())).collect();
    let (mut view, mut src, mut count) = (vec![], vec![], vec![]);
    for v in &views {
        // The relations it reads, through other views.
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = v.inputs.clone();
        while let Some(r) = todo.pop() {
            if seen.insert(r) {
                todo.extend(inputs.get(&r).into_iter().flatten().copied());
            }
        }
        for r in seen {
            if let Some((name, n)) = late.get(&r) {
                view.push(v.name.clone());
                src.push(name.clone());
                count.push(*n);
            }
        }
    }
    relation(
        vec![
            Field::new("view", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("late_rows", DataType::Int64, false),
        ],
        vec![
            Arc::new(StringArray::from(view)),
            Arc::new(StringArray::from(src)),
            Arc::new(Int64Array::from(count)),
        ],
    )
}
