//! Errors as data: a row an operator cannot evaluate (division by zero, a failed cast, an
//! overflow) is taken out of the epoch for that view alone and recorded, instead of failing the
//! epoch — which would stall every source and writer feeding the view. Other views see the row
//! as usual. A retraction of such a row fails the same way (expressions are deterministic), so
//! a row that never entered a view never leaves it either.

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::error::{DataFusionError, Result};

use crate::delta::Delta;
pub use crate::epoch::RowError;
use crate::epoch::EpochCtx;

/// Longest row text kept with an error.
const ROW_SAMPLE: usize = 256;

/// Whether `e` comes from evaluating data (rather than from a bug or the store).
fn is_data_error(e: &DataFusionError) -> bool {
    match e.find_root() {
        DataFusionError::ArrowError(a, _) => matches!(
            **a,
            ArrowError::DivideByZero
                | ArrowError::ComputeError(_)
                | ArrowError::CastError(_)
                | ArrowError::ArithmeticOverflow(_)
                | ArrowError::ParseError(_)
                | ArrowError::InvalidArgumentError(_)
        ),
        DataFusionError::Execution(_) => true,
        _ => false,
    }
}

/// After `eval` failed on `d` with `err`: `d` without the rows on which `eval` fails alone,
/// each recorded in `ctx.errors`; `err` itself when it is not a data error or no single row
/// fails.
pub(crate) fn without_bad_rows(
    d: &Delta,
    ctx: &mut EpochCtx<'_>,
    err: DataFusionError,
    eval: impl Fn(&Delta) -> Result<()>,
) -> Result<Delta> {
    if !is_data_error(&err) {
        return Err(err);
    }
    let mut keep = Vec::with_capacity(d.len());
    let mut bad = Vec::new();
    for i in 0..d.len() {
        let one = Delta {
            batch: d.batch.slice(i, 1),
            weights: vec![d.weights[i]],
        };
        match eval(&one) {
            Ok(()) => keep.push(true),
            Err(e) if is_data_error(&e) => {
                keep.push(false);
                bad.push(RowError {
                    message: clean(&e),
                    row: row_text(d, i),
                    weight: d.weights[i],
                });
            }
            Err(e) => return Err(e),
        }
    }
    if bad.is_empty() {
        return Err(err);
    }
    ctx.errors.extend(bad);
    d.filter(&BooleanArray::from(keep))
}

fn clean(e: &DataFusionError) -> String {
    let s = e.find_root().to_string();
    ["Arrow error: ", "Execution error: "]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(&s)
        .to_owned()
}

fn row_text(d: &Delta, i: usize) -> String {
    let mut s = String::from("(");
    for (c, col) in d.batch.columns().iter().enumerate() {
        if c > 0 {
            s.push_str(", ");
        }
        if col.is_null(i) {
            s.push_str("NULL");
        } else {
            s.push_str(&array_value_to_string(col, i).unwrap_or_else(|_| "?".into()));
        }
        if s.len() > ROW_SAMPLE {
            break;
        }
    }
    s.push(')');
    if s.len() > ROW_SAMPLE {
        let mut cut = ROW_SAMPLE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
