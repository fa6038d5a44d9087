//! Checking a reader's positions against the topic's log: a position below the log start
//! means retention deleted messages before they were read (a gap); a position beyond the log
//! end means the topic is not the one the offsets were taken from (deleted and recreated, or
//! the broker replaced). Neither may pass silently: reading on from elsewhere would break
//! exactly-once without a word.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{Error, Result, BEGINNING};

/// What is wrong with a partition's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetProblem {
    /// Offsets `first..=last` were deleted before they were read; reading goes on at
    /// `last + 1`, the log start.
    Gap { partition: i32, first: i64, last: i64 },
    /// The log ends at `log_end`, before `position`, the next offset the source was to read:
    /// the topic was reset. Reading stops until the source is reset explicitly.
    Reset {
        partition: i32,
        position: i64,
        log_end: i64,
    },
}

impl std::fmt::Display for OffsetProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OffsetProblem::Gap {
                partition,
                first,
                last,
            } => write!(
                f,
                "partition {partition}: offsets {first}..{last} were deleted (retention) before they were read"
            ),
            OffsetProblem::Reset {
                partition,
                position,
                log_end,
            } => write!(
                f,
                "partition {partition}: the source has read up to offset {position} but the topic now ends at offset {log_end} (the topic was reset: deleted and recreated, or the broker replaced)"
            ),
        }
    }
}

/// Compares each partition's next offset in `positions` with the broker's watermarks now.
/// Partitions still at [`BEGINNING`] have nothing to compare.
pub(crate) fn check(
    consumer: &BaseConsumer,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<Vec<OffsetProblem>> {
    let mut out = Vec::new();
    for (&partition, &position) in positions {
        if position == BEGINNING {
            continue;
        }
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| Error::Kafka(e.to_string()))?;
        if position > high {
            out.push(OffsetProblem::Reset {
                partition,
                position,
                log_end: high,
            });
        } else if position < low {
            out.push(OffsetProblem::Gap {
                partition,
                first: position,
                last: low - 1,
            });
        }
    }
    Ok(out)
}
