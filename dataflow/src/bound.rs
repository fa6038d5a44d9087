//! A lower bound on every later value of a column, in terms of sources' watermarks (how the
//! bounds are derived over an operator tree: the `event_time` module).

use datafusion::error::Result;
use freshet_common::TableId;
use freshet_state::Snapshot;

use crate::epoch::{state_err, EpochChanges};

/// One non-decreasing function applied to a time in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `+ micros` (a constant interval; negative for `-`).
    Add(i64),
    /// `date_bin(stride, t, origin)`: the start of the stride-long bin holding `t`.
    Bin { stride: i64, origin: i64 },
}

impl Step {
    pub(crate) fn apply(&self, t: i64) -> i64 {
        match *self {
            Step::Add(d) => t.saturating_add(d),
            Step::Bin { stride, origin } => {
                let off = t.saturating_sub(origin);
                off.saturating_sub(off.rem_euclid(stride))
                    .saturating_add(origin)
            }
        }
    }
}

/// A source's watermark passed through `steps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub source: TableId,
    pub steps: Vec<Step>,
}

/// A lower bound on every later value of a column: the smallest of its terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub terms: Vec<Term>,
}

impl Bound {
    /// The bound (microseconds) given each source's watermark; `None` while some source has
    /// none yet.
    pub fn eval(&self, watermark: &mut dyn FnMut(TableId) -> Option<i64>) -> Option<i64> {
        let mut lowest: Option<i64> = None;
        for t in &self.terms {
            let w = watermark(t.source)?;
            let v = t.steps.iter().fold(w, |v, s| s.apply(v));
            lowest = Some(lowest.map_or(v, |l| l.min(v)));
        }
        lowest
    }

    /// The bound after the epoch `changes`: each source's watermark as the epoch leaves it,
    /// else as committed in `snapshot`; `None` while some source has none.
    pub fn now(&self, changes: &EpochChanges, snapshot: &Snapshot) -> Result<Option<i64>> {
        let mut failed = None;
        let bound = self.eval(&mut |s: TableId| {
            if let Some(&w) = changes.watermarks.get(&s) {
                return Some(w);
            }
            match snapshot.get(&freshet_state::source_watermark_key(s)) {
                Ok(v) => v.and_then(|v| {
                    <[u8; 8]>::try_from(v.as_slice())
                        .ok()
                        .map(i64::from_be_bytes)
                }),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        });
        match failed {
            Some(e) => Err(state_err(e)),
            None => Ok(bound),
        }
    }

    /// Whether the epoch `changes` moves the bound (a source it depends on carries a
    /// watermark).
    pub fn moved(&self, changes: &EpochChanges) -> bool {
        self.terms
            .iter()
            .any(|t| changes.watermarks.contains_key(&t.source))
    }

    /// The sources whose watermarks move the bound.
    pub fn sources(&self) -> Vec<TableId> {
        let mut s: Vec<TableId> = self.terms.iter().map(|t| t.source).collect();
        s.sort();
        s.dedup();
        s
    }

    pub(crate) fn then(mut self, step: Step) -> Bound {
        for t in &mut self.terms {
            t.steps.push(step.clone());
        }
        self
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let terms: Vec<String> = self
            .terms
            .iter()
            .map(|t| {
                let mut s = format!("watermark({})", t.source.0);
                for step in &t.steps {
                    s = match step {
                        Step::Add(d) => format!("{s} + {d}us"),
                        Step::Bin { stride, origin } => {
                            format!("date_bin({stride}us, {s}, {origin})")
                        }
                    };
                }
                s
            })
            .collect();
        if terms.len() == 1 {
            write!(f, "{}", terms[0])
        } else {
            write!(f, "least({})", terms.join(", "))
        }
    }
}
