//! The vocabulary of sources, shared by the SQL binder, the catalog and the connectors.

use serde::{Deserialize, Serialize};

use crate::SqlType;

/// Message metadata a source exposes as extra columns (`INCLUDE partition AS p, …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IncludeKind {
    /// The Kafka partition (`integer`).
    Partition,
    /// The message's offset in its partition (`bigint`).
    Offset,
    /// The message timestamp (`timestamp with time zone`).
    Timestamp,
    /// The message key (`bytea`).
    Key,
}

impl IncludeKind {
    /// The column type of this metadata.
    pub fn sql_type(self) -> SqlType {
        match self {
            IncludeKind::Partition => SqlType::Int4,
            IncludeKind::Offset => SqlType::Int8,
            IncludeKind::Timestamp => SqlType::TimestampTz,
            IncludeKind::Key => SqlType::Bytea,
        }
    }

    /// The word in `INCLUDE <word>`.
    pub fn keyword(self) -> &'static str {
        match self {
            IncludeKind::Partition => "partition",
            IncludeKind::Offset => "offset",
            IncludeKind::Timestamp => "timestamp",
            IncludeKind::Key => "key",
        }
    }

    /// Parses the word in `INCLUDE <word>`.
    pub fn from_keyword(word: &str) -> Option<IncludeKind> {
        [
            IncludeKind::Partition,
            IncludeKind::Offset,
            IncludeKind::Timestamp,
            IncludeKind::Key,
        ]
        .into_iter()
        .find(|k| k.keyword().eq_ignore_ascii_case(word))
    }
}

/// How message payloads are decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceFormat {
    /// One JSON object per message.
    Json,
    /// One or more CSV lines per message.
    Csv {
        /// The field delimiter.
        delimiter: u8,
        /// The first line of every message is a header and is skipped.
        header: bool,
    },
}

/// `WATERMARK FOR column AS column - INTERVAL '…'`: a source's rows are expected at most
/// `delay_micros` behind the largest event time read so far (per partition, the smallest of
/// the partitions'); a row further behind than that is late.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkDef {
    /// The event-time column (TIMESTAMP or TIMESTAMPTZ).
    pub column: String,
    /// How far behind the largest event time the watermark trails, in microseconds.
    pub delay_micros: i64,
}
