//! Session windows: `session_start(ts, gap)` and `session_end(ts, gap)`, window functions over
//! a partition ordered by `ts`. Rows whose times are at most `gap` apart (in order) are one
//! session; it starts at its first time and ends `gap` after its last (Flink's session
//! windows: each row opens `[ts, ts + gap)`, and windows that touch or overlap merge).
//! `SESSION(rel, ts, gap)` in FROM is written with them (see `window_tvf.rs`). A row with a
//! NULL time is in no session (NULL) and does not split one.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, IntervalMonthDayNanoType, TimeUnit, TimestampMicrosecondType,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};

/// `session_start` (`end` false) or `session_end`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionBound {
    end: bool,
    signature: Signature,
}

/// The two functions, to register.
pub fn functions() -> [WindowUDF; 2] {
    [false, true].map(|end| {
        WindowUDF::new_from_impl(SessionBound {
            end,
            signature: Signature::any(2, Volatility::Immutable),
        })
    })
}

/// The name of `session_start` or `session_end`.
pub fn name(end: bool) -> &'static str {
    if end {
        "session_end"
    } else {
        "session_start"
    }
}

impl WindowUDFImpl for SessionBound {
    fn name(&self) -> &str {
        name(self.end)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(Evaluator { end: self.end }))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let ts = args.get_input_field(0).map(|f| f.data_type().clone());
        let Some(DataType::Timestamp(_, tz)) = ts else {
            return Err(DataFusionError::Plan(format!(
                "{} needs a timestamp, not {}",
                self.name(),
                ts.map_or_else(|| "nothing".to_owned(), |t| t.to_string())
            )));
        };
        Ok(Arc::new(Field::new(
            args.name(),
            DataType::Timestamp(TimeUnit::Microsecond, tz),
            true,
        )))
    }
}

#[derive(Debug)]
struct Evaluator {
    end: bool,
}

impl PartitionEvaluator for Evaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let [ts, gap, ..] = values else {
            return Err(DataFusionError::Plan(
                "session_start and session_end take a time and a gap".into(),
            ));
        };
        let DataType::Timestamp(_, tz) = ts.data_type() else {
            return Err(DataFusionError::Plan(
                "session windows need a timestamp".into(),
            ));
        };
        let micros = cast(ts, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?;
        let micros = micros.as_primitive::<TimestampMicrosecondType>();
        let gap = gap_micros(gap)?;
        let times: Vec<Option<i64>> = (0..num_rows)
            .map(|i| micros.is_valid(i).then(|| micros.value(i)))
            .collect();
        let mut last = i64::MIN;
        for t in times.iter().flatten() {
            if *t < last {
                return Err(DataFusionError::Plan(
                    "session_start and session_end need their partition ordered by the time \
                     they take, ascending"
                        .into(),
                ));
            }
            last = *t;
        }
        let out: TimestampMicrosecondArray = sessions(&times, gap, self.end).into_iter().collect();
        Ok(Arc::new(out.with_timezone_opt(tz.clone())))
    }
}

/// Per time (ascending, NULLs anywhere), its session's start (or end): `gap` after the last
/// time of a run of times at most `gap` apart.
pub fn sessions(times: &[Option<i64>], gap: i64, end: bool) -> Vec<Option<i64>> {
    let mut out = vec![None; times.len()];
    let mut members: Vec<usize> = Vec::new();
    let mut flush = |members: &mut Vec<usize>, first: i64, last: i64| {
        let value = if end { last.saturating_add(gap) } else { first };
        for &i in members.iter() {
            out[i] = Some(value);
        }
        members.clear();
    };
    let mut run: Option<(i64, i64)> = None;
    for (i, t) in times.iter().enumerate() {
        let Some(t) = *t else { continue };
        run = match run {
            Some((first, last)) if t.saturating_sub(last) <= gap => Some((first, t)),
            Some((first, last)) => {
                flush(&mut members, first, last);
                Some((t, t))
            }
            None => Some((t, t)),
        };
        members.push(i);
    }
    if let Some((first, last)) = run {
        flush(&mut members, first, last);
    }
    out
}

/// The gap argument: a positive fixed-length interval (or microseconds as an integer).
fn gap_micros(gap: &ArrayRef) -> Result<i64> {
    let bad =
        || DataFusionError::Plan("a session gap must be a positive fixed-length interval".into());
    if gap.is_empty() || gap.is_null(0) {
        return Err(bad());
    }
    let micros = match gap.data_type() {
        DataType::Interval(_) => {
            let iv = cast(
                gap,
                &DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
            )?;
            let v = iv.as_primitive::<IntervalMonthDayNanoType>().value(0);
            if v.months != 0 {
                return Err(bad());
            }
            i64::from(v.days) * 86_400_000_000 + v.nanoseconds / 1000
        }
        DataType::Int64 => gap
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0),
        _ => return Err(bad()),
    };
    if micros <= 0 {
        return Err(bad());
    }
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use super::sessions;

    #[test]
    fn runs_within_the_gap_are_one_session() {
        let t = [
            Some(0),
            Some(5),
            Some(10),
            None,
            Some(21),
            Some(30),
            Some(31),
        ];
        assert_eq!(
            sessions(&t, 10, false),
            vec![
                Some(0),
                Some(0),
                Some(0),
                None,
                Some(21),
                Some(21),
                Some(21)
            ]
        );
        assert_eq!(
            sessions(&t, 10, true),
            vec![
                Some(20),
                Some(20),
                Some(20),
                None,
                Some(41),
                Some(41),
                Some(41)
            ]
        );
        assert_eq!(sessions(&t, 4, false)[1], Some(5));
    }
}
