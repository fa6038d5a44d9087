//! The source contract: what a transport's reader delivers to the server ([`SourceBatch`]:
//! decoded messages and the positions they take each partition to), what it reports
//! ([`SourceStatus`]), and how a running reader is held ([`SourceReader`]).
//!
//! A position is a partition's next offset to read. Offsets are never committed to the
//! transport: the server stores them with the state they produced (one RocksDB write batch)
//! and hands them back at restart, which is what makes sources exactly-once.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;

use crate::decoder::Decoder;
use crate::message::{BadMessage, Message, Origins};

/// The position of a partition read from its beginning (wherever its log starts).
pub const BEGINNING: i64 = -2;

/// A running reader, as the source that started it holds it.
pub trait SourceReader: Send + std::fmt::Debug {
    /// The latest status.
    fn status(&self) -> SourceStatus;

    /// Asks the transport now for every partition's log bounds: (first offset, the offset
    /// the next message will take). An error says why the transport cannot answer.
    fn log_bounds(&self, timeout: Duration) -> Result<BTreeMap<i32, (i64, i64)>, String>;

    /// Stops reading and waits for the reader's threads.
    fn stop(self: Box<Self>);
}

/// What the reader hands over: decoded messages and the offsets they take each partition to.
#[derive(Debug)]
pub struct SourceBatch {
    pub batch: Option<RecordBatch>,
    /// Each row's message (partition, offset).
    pub origins: Origins,
    pub bad: Vec<BadMessage>,
    /// The messages themselves, to decode again if the decoder changed since.
    pub raw: Vec<Message>,
    /// The version of the decoder `batch` and `bad` come from.
    pub version: u64,
    /// Per partition read in this batch: the offset after its last message.
    pub next: BTreeMap<i32, i64>,
    /// Messages read (good and bad).
    pub messages: usize,
    /// Positions found out of the topic's log range (a batch carrying these has no messages;
    /// after a [`OffsetProblem::Reset`] the reader stops).
    pub problems: Vec<OffsetProblem>,
}

/// What a reader reports, refreshed about once a second: whether its transport answers, and
/// where each partition's log ends.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    /// `None` while the transport answers; otherwise why it does not.
    pub error: Option<String>,
    /// The end of each partition's log (the offset the next message will take), as last seen.
    pub high_watermarks: BTreeMap<i32, i64>,
    /// When the transport last answered.
    pub last_contact: Option<std::time::SystemTime>,
}

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

/// Decodes `msgs` into a batch (version 0).
pub fn decode_batch(decoder: &Decoder, msgs: Vec<Message>) -> SourceBatch {
    let mut next = BTreeMap::new();
    for m in &msgs {
        let e = next.entry(m.partition).or_insert(0);
        *e = (*e).max(m.offset + 1);
    }
    let messages = msgs.len();
    let (batch, bad, origins) = match decoder.decode_traced(&msgs) {
        Ok(r) => r,
        Err(e) => (
            None,
            msgs.iter()
                .map(|m| BadMessage {
                    partition: m.partition,
                    offset: m.offset,
                    error: e.to_string(),
                    payload: Vec::new(),
                })
                .collect(),
            Vec::new(),
        ),
    };
    SourceBatch {
        batch,
        origins,
        bad,
        raw: msgs,
        version: 0,
        next,
        messages,
        problems: Vec::new(),
    }
}

