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

/// Where a source reads from and how, bound once from `CREATE SOURCE … WITH (…)` by the SQL
/// binder and persisted as such by the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceConfig {
    /// A Kafka topic (`connector = 'kafka'`).
    Kafka(KafkaSourceConfig),
}

/// Where a new source starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Startup {
    Earliest,
    Latest,
    /// The first message at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// What a JSON number for a TIMESTAMP column counts (`timestamp.unit`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampUnit {
    #[default]
    Seconds,
    Milliseconds,
    Microseconds,
}

impl TimestampUnit {
    /// Parses the `timestamp.unit` option.
    pub fn parse(s: &str) -> Option<TimestampUnit> {
        match s.to_ascii_lowercase().as_str() {
            "seconds" | "s" => Some(TimestampUnit::Seconds),
            "milliseconds" | "ms" => Some(TimestampUnit::Milliseconds),
            "microseconds" | "us" => Some(TimestampUnit::Microseconds),
            _ => None,
        }
    }

    /// Microseconds in one unit.
    pub fn micros(self) -> i64 {
        match self {
            TimestampUnit::Seconds => 1_000_000,
            TimestampUnit::Milliseconds => 1_000,
            TimestampUnit::Microseconds => 1,
        }
    }
}

/// A Kafka source's connection and decoding options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSourceConfig {
    pub topic: String,
    /// `properties.bootstrap.server`.
    pub bootstrap: String,
    /// `scan.startup.mode`, `scan.startup.timestamp.millis`.
    pub startup: Startup,
    /// Other `properties.*`, passed to librdkafka as is (checked against the server's policy
    /// at creation and at each start).
    pub properties: Vec<(String, String)>,
    /// `timestamp.unit`.
    pub timestamp_unit: TimestampUnit,
    /// `watermark.idle_timeout` in milliseconds: a partition that delivered nothing for this
    /// long stops holding the watermark back; `None` (`'0'`): never.
    pub idle_timeout_ms: Option<u64>,
}

/// `watermark.idle_timeout` when a source does not set it.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10_000;
