//! Event time in the dataflow: which columns of an operator's output are bounded below by a
//! source's watermark.
//!
//! A source declared `WATERMARK FOR ts AS …` admits no row whose `ts` is below its watermark,
//! and its watermark never moves back (the server's `sources/watermark.rs`). So after an
//! epoch that leaves the watermark at `W`, every later change of the source has `ts >= W`,
//! and every later change of an operator output column that is a non-decreasing function of
//! `ts` — `ts` itself, `date_bin(stride, ts)`, `… ± constant interval`, a group column of an
//! aggregate, the same column of every branch of a UNION ALL — is at least that function of
//! `W`. A row whose value in such a column lies below that bound can never change again: its
//! window is closed. This is RisingWave's watermark derivation, computed on the lowered
//! operator tree.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
use datafusion::physical_expr::window::StandardWindowExpr;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::windows::WindowUDFExpr;
use datafusion::physical_plan::WindowExpr;
use freshet_common::TableId;


use crate::bound::{Bound, Step, Term};
use crate::ops::{Closing, Expiry, JoinKind, JoinOp, Node, OrderedMode};

/// Per output column of `node`, its lower bound when it has one. `event_time` gives a
/// relation's event-time column (sources declared with `WATERMARK FOR`).
pub fn bounds(node: &Node, event_time: &dyn Fn(TableId) -> Option<usize>) -> Vec<Option<Bound>> {
    let width = node.schema().fields().len();
    match node {
        Node::Scan {
            relation,
            projection,
            ..
        } => {
            let column = event_time(*relation);
            projection
                .iter()
                .map(|&c| {
                    (Some(c) == column).then(|| Bound {
                        terms: vec![Term {
                            source: *relation,
                            steps: Vec::new(),
                        }],
                    })
                })
                .collect()
        }
        Node::Filter { input, .. } => bounds(input, event_time),
        Node::Project { input, exprs, .. } => {
            let inner = bounds(input, event_time);
            let schema = input.schema();
            exprs.iter().map(|e| of_expr(e, &inner, &schema)).collect()
        }
        Node::Aggregate { input, op } => {
            let inner = bounds(input, event_time);
            let schema = input.schema();
            let mut out: Vec<Option<Bound>> = op
                .group
                .iter()
                .map(|e| of_expr(e, &inner, &schema))
                .collect();
            out.resize(width, None);
            out
        }
        Node::Union { inputs, .. } => {
            let each: Vec<Vec<Option<Bound>>> =
                inputs.iter().map(|i| bounds(i, event_time)).collect();
            (0..width)
                .map(|c| {
                    let mut terms = Vec::new();
                    for b in &each {
                        terms.extend(b.get(c)?.as_ref()?.terms.iter().cloned());
                    }
                    terms.dedup();
                    (!terms.is_empty()).then_some(Bound { terms })
                })
                .collect()
        }
        Node::WindowClose { input, .. } => bounds(input, event_time),
        Node::Ordered { input, op } => {
            let inner = bounds(input, event_time);
            let mut out = vec![None; width];
            // A partition's rows change only when its input does.
            for p in &op.partition_by {
                if let Some(c) = p.downcast_ref::<Column>() {
                    if let (Some(slot), Some(b)) = (out.get_mut(c.index()), inner.get(c.index())) {
                        slot.clone_from(b);
                    }
                }
            }
            // A session's end moves only for a row at or past it: a row at `ts` joins or
            // extends only sessions ending at `ts` or later, and its own ends later still.
            if let OrderedMode::Window { exprs, .. } = &op.mode {
                let at = input.schema().fields().len();
                for (j, w) in exprs.iter().enumerate() {
                    if let (Some(c), Some(slot)) = (session_end_time(w), out.get_mut(at + j)) {
                        *slot = inner.get(c).cloned().flatten();
                    }
                }
            }
            out
        }
        _ => vec![None; width],
    }
}

/// The input column whose time a `session_end(ts, gap)` window function takes, when `w` is
/// one.
fn session_end_time(w: &Arc<dyn WindowExpr>) -> Option<usize> {
    let standard = w.as_any().downcast_ref::<StandardWindowExpr>()?;
    let f = standard.get_standard_func_expr();
    let udf = f.as_any().downcast_ref::<WindowUDFExpr>()?;
    if udf.fun().name() != freshet_sql::session_window::name(true) {
        return None;
    }
    let args = f.expressions();
    Some(args.first()?.downcast_ref::<Column>()?.index())
}

/// Which of `group` (expressions over `input`'s columns) closes an aggregate's groups: the
/// first with a bound.
pub fn closing(
    input: &Node,
    group: &[Arc<dyn PhysicalExpr>],
    event_time: &dyn Fn(TableId) -> Option<usize>,
) -> Option<Closing> {
    let inner = bounds(input, event_time);
    let schema = input.schema();
    group.iter().enumerate().find_map(|(column, e)| {
        Some(Closing {
            column,
            bound: of_expr(e, &inner, &schema)?,
        })
    })
}

/// When each side's rows of an inner join can no longer match a later row of the other side
/// (see `ops/join_expiry.rs`): from the conditions every match needs — equal keys, and
/// residual conjuncts `x >= y + c` (`>`, `<`, `<=` turned around) between a time column `x`
/// of one side and a column `y` of the other whose bound is known: a row with `x - c` below
/// that bound is past matching. The first such condition per side.
pub fn join_expiry(
    left: &Node,
    right: &Node,
    op: &JoinOp,
    event_time: &dyn Fn(TableId) -> Option<usize>,
) -> [Option<Expiry>; 2] {
    if op.kind != JoinKind::Inner {
        return [None, None];
    }
    let lw = op.left_width;
    // (column of the joined row that must be >= the other + c, the other, c)
    let mut needs: Vec<(usize, usize, i64)> = Vec::new();
    for (l, r) in op.left_keys.iter().zip(&op.right_keys) {
        if let (Some(l), Some(r)) = (l.downcast_ref::<Column>(), r.downcast_ref::<Column>()) {
            needs.push((l.index(), lw + r.index(), 0));
            needs.push((lw + r.index(), l.index(), 0));
        }
    }
    if let Some(f) = &op.filter {
        for c in split_conjunction(f) {
            let Some(b) = c.downcast_ref::<BinaryExpr>() else {
                continue;
            };
            let (big, small) = match b.op() {
                Operator::GtEq | Operator::Gt => (b.left(), b.right()),
                Operator::LtEq | Operator::Lt => (b.right(), b.left()),
                _ => continue,
            };
            if let (Some((x, cx)), Some((y, cy))) = (shifted_column(big), shifted_column(small)) {
                // x + cx >= y + cy
                needs.push((x, y, cy - cx));
            }
        }
    }
    let bounds = [bounds(left, event_time), bounds(right, event_time)];
    let mut out: [Option<Expiry>; 2] = [None, None];
    for (x, y, c) in needs {
        let (side, column) = if x < lw { (0, x) } else { (1, x - lw) };
        let (other, other_column) = if y < lw { (0, y) } else { (1, y - lw) };
        if side == other || out[side].is_some() {
            continue;
        }
        if let Some(Some(bound)) = bounds[other].get(other_column) {
            out[side] = Some(Expiry {
                column,
                shift: c.checked_neg().unwrap_or(i64::MAX),
                bound: bound.clone(),
            });
        }
    }
    out
}

/// `e` as a column of its input plus a constant interval (microseconds).
fn shifted_column(e: &Arc<dyn PhysicalExpr>) -> Option<(usize, i64)> {
    if let Some(c) = e.downcast_ref::<Column>() {
        return Some((c.index(), 0));
    }
    if let Some(f) = e.downcast_ref::<freshet_sql::arith::FloatRange>() {
        // A range check changes no value it lets through.
        return shifted_column(f.inner());
    }
    let b = e.downcast_ref::<BinaryExpr>()?;
    let sign = match b.op() {
        Operator::Plus => 1,
        Operator::Minus => -1,
        _ => return None,
    };
    let (c, k) = shifted_column(b.left())?;
    Some((c, k.checked_add(sign * constant_micros(b.right())?)?))
}

/// The conjuncts of a physical predicate.
fn split_conjunction(e: &Arc<dyn PhysicalExpr>) -> Vec<&Arc<dyn PhysicalExpr>> {
    match e.downcast_ref::<BinaryExpr>() {
        Some(b) if *b.op() == Operator::And => {
            let mut v = split_conjunction(b.left());
            v.extend(split_conjunction(b.right()));
            v
        }
        _ => vec![e],
    }
}

/// The bound of `e`'s value, given its input columns' bounds (`schema` is the input's).
fn of_expr(e: &Arc<dyn PhysicalExpr>, inner: &[Option<Bound>], schema: &Schema) -> Option<Bound> {
    if let Some(c) = e.downcast_ref::<Column>() {
        return inner.get(c.index())?.clone();
    }
    if let Some(f) = e.downcast_ref::<freshet_sql::arith::FloatRange>() {
        // A range check changes no value it lets through.
        return of_expr(f.inner(), inner, schema);
    }
    if let Some(c) = e.downcast_ref::<CastExpr>() {
        let from = c.expr().data_type(schema).ok()?;
        let step = timestamp_cast(&from, c.cast_type())?;
        let b = of_expr(c.expr(), inner, schema)?;
        return Some(match step {
            Some(step) => b.then(step),
            None => b,
        });
    }
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        let sign = match b.op() {
            Operator::Plus => 1,
            Operator::Minus => -1,
            _ => return None,
        };
        let micros = constant_micros(b.right())?;
        return Some(of_expr(b.left(), inner, schema)?.then(Step::Add(sign * micros)));
    }
    if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>() {
        if f.name() != "date_bin" {
            return None;
        }
        let args = f.args();
        let stride = constant_micros(args.first()?).filter(|&s| s > 0)?;
        let origin = match args.get(2) {
            None => 0,
            Some(o) => timestamp_micros(o)?,
        };
        return Some(of_expr(args.get(1)?, inner, schema)?.then(Step::Bin { stride, origin }));
    }
    None
}

/// How a cast between timestamp types moves a time, when it keeps times in order: `None`
/// when it changes no instant (a finer or equal unit between UTC instants, as the planner adds
/// to feed `date_bin` a `timestamptz`), a bin of the unit when the target unit is coarser.
/// Casts that reinterpret a time in a zone (naive ↔ zoned other than UTC) are not followed:
/// daylight-saving shifts do not keep order.
fn timestamp_cast(from: &DataType, to: &DataType) -> Option<Option<Step>> {
    let (DataType::Timestamp(fu, ftz), DataType::Timestamp(tu, ttz)) = (from, to) else {
        return None;
    };
    let utc = |tz: &Option<Arc<str>>| {
        tz.as_deref()
            .is_none_or(|z| matches!(z, "UTC" | "+00:00" | "+00" | "Z" | "Etc/UTC"))
    };
    let same_instants = (ftz.is_some() && ttz.is_some()) || ftz == ttz || (utc(ftz) && utc(ttz));
    if !same_instants {
        return None;
    }
    let micros = |u: &TimeUnit| match u {
        TimeUnit::Second => 1_000_000,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond | TimeUnit::Nanosecond => 1,
    };
    let stride = micros(tu);
    Some((stride > micros(fu)).then_some(Step::Bin { stride, origin: 0 }))
}

/// A constant fixed-length interval's microseconds (no months: their length varies).
fn constant_micros(e: &Arc<dyn PhysicalExpr>) -> Option<i64> {
    let l = e.downcast_ref::<Literal>()?;
    match l.value() {
        ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano {
            months: 0,
            days,
            nanoseconds,
        })) if nanoseconds % 1000 == 0 => {
            Some(i64::from(*days) * 86_400_000_000 + nanoseconds / 1000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(i64::from(v.days) * 86_400_000_000 + i64::from(v.milliseconds) * 1000)
        }
        ScalarValue::DurationMicrosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMillisecond(Some(v)) => v.checked_mul(1000),
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1_000_000),
        _ => None,
    }
}

/// A constant timestamp's microseconds since 1970 (as stored: UTC for `timestamptz`).
fn timestamp_micros(e: &Arc<dyn PhysicalExpr>) -> Option<i64> {
    let l = e.downcast_ref::<Literal>()?;
    let v = l.value();
    match v.data_type() {
        DataType::Timestamp(_, _) => {
            let cast = v
                .cast_to(&DataType::Timestamp(TimeUnit::Microsecond, None))
                .ok()?;
            match cast {
                ScalarValue::TimestampMicrosecond(Some(t), _) => Some(t),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_non_decreasing_and_bin_like_date_bin() {
        let bin = Step::Bin {
            stride: 10,
            origin: 0,
        };
        assert_eq!(bin.apply(25), 20);
        assert_eq!(bin.apply(-1), -10);
        assert_eq!(bin.apply(-10), -10);
        let shifted = Step::Bin {
            stride: 10,
            origin: 3,
        };
        assert_eq!(shifted.apply(12), 3);
        assert_eq!(shifted.apply(13), 13);
        let b = Bound {
            terms: vec![
                Term {
                    source: TableId(1),
                    steps: vec![bin.clone(), Step::Add(10)],
                },
                Term {
                    source: TableId(1),
                    steps: vec![bin, Step::Add(-10), Step::Add(10)],
                },
            ],
        };
        assert_eq!(b.eval(&mut |_| Some(25)), Some(20));
        assert_eq!(b.eval(&mut |_| None), None);
        let mut last = i64::MIN;
        for t in -100..100 {
            let v = b.eval(&mut |_| Some(t)).unwrap();
            assert!(v >= last);
            last = v;
        }
    }

    #[test]
    fn timestamp_casts_are_followed_only_when_they_keep_instants_in_order() {
        let ts = |u, tz: Option<&str>| DataType::Timestamp(u, tz.map(Arc::from));
        use TimeUnit::*;
        // The planner's cast of a timestamptz to feed date_bin: the same instants.
        assert_eq!(
            timestamp_cast(
                &ts(Microsecond, Some("UTC")),
                &ts(Nanosecond, Some("+00:00"))
            ),
            Some(None)
        );
        assert_eq!(
            timestamp_cast(&ts(Microsecond, None), &ts(Nanosecond, None)),
            Some(None)
        );
        assert_eq!(
            timestamp_cast(&ts(Microsecond, None), &ts(Microsecond, Some("UTC"))),
            Some(None)
        );
        // Coarser: truncated to the unit.
        assert_eq!(
            timestamp_cast(&ts(Microsecond, None), &ts(Second, None)),
            Some(Some(Step::Bin {
                stride: 1_000_000,
                origin: 0
            }))
        );
        // A naive time read in a zone with daylight saving: not followed.
        assert_eq!(
            timestamp_cast(
                &ts(Microsecond, None),
                &ts(Microsecond, Some("Europe/Paris"))
            ),
            None
        );
        assert_eq!(
            timestamp_cast(&DataType::Utf8, &ts(Microsecond, None)),
            None
        );
    }
}
