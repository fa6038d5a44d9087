//! Checking a reader's positions against the topic's log: a position below the log start
//! means retention deleted messages before they were read (a gap); a position beyond the log
//! end means the topic is not the one the offsets were taken from (deleted and recreated, or
//! the broker replaced). Neither may pass silently: reading on from elsewhere would break
//! exactly-once without a word.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use freshet_connector::{OffsetProblem, BEGINNING};

use crate::{Error, Result};

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
