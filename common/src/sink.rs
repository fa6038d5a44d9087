//! The vocabulary of sinks: their typed configuration, bound once from `WITH (…)` by the SQL
//! binder and persisted as such by the catalog.

use serde::{Deserialize, Serialize};

/// Where and how a sink writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SinkConfig {
    /// Parquet files in a directory (`connector = 'file'`).
    File(FileSinkConfig),
    /// JSON messages in a Kafka topic (`connector = 'kafka'`).
    Kafka(KafkaSinkConfig),
}

/// Which rows a sink writes for a relation's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SinkMode {
    /// The relation's rows as they arrive; only for relations that never retract
    /// (`type = 'append-only'`, the default).
    AppendOnly,
    /// Arrivals only, retractions dropped (`force_append_only = 'true'`).
    ForceAppendOnly,
    /// Every change, with `freshet_epoch` and `freshet_diff` columns first
    /// (`type = 'changelog'`).
    Changelog,
}

/// A Parquet file sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSinkConfig {
    /// The directory files are written to (created if missing).
    pub path: String,
    pub mode: SinkMode,
    /// A file is closed once it holds this many rows…
    pub rollover_rows: u64,
    /// …or once its first row waited this long (milliseconds)…
    pub rollover_ms: u64,
    /// …or once its rows take this many bytes in memory, uncompressed (`rollover_bytes`).
    #[serde(default)]
    pub rollover_bytes: Option<u64>,
    /// Columns whose values name the directories rows are written under, Hive-style
    /// (`col=value/…`), in order; they are not repeated inside the files.
    #[serde(default)]
    pub partition_by: Vec<String>,
}

/// How a Kafka sink's messages carry changes (`FORMAT …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KafkaSinkFormat {
    /// Each arriving row as a message (`FORMAT PLAIN`): append-only relations, or retractions
    /// dropped with `force_append_only`.
    Plain,
    /// Keyed by the primary key: each key's row after the epoch, or a tombstone (a null value)
    /// when it is gone (`FORMAT UPSERT`).
    Upsert,
    /// Keyed by the primary key: `{"before", "after", "op"}` per changed key
    /// (`FORMAT DEBEZIUM`).
    Debezium,
}

/// A Kafka sink: JSON messages, written exactly once (see the server's `coord/sinks/kafka.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSinkConfig {
    pub topic: String,
    /// `properties.bootstrap.server`.
    pub bootstrap: String,
    /// Other `properties.*`, passed to librdkafka (checked against the server's policy).
    pub properties: Vec<(String, String)>,
    pub format: KafkaSinkFormat,
    /// `force_append_only` (PLAIN only): retractions are dropped.
    pub force_append_only: bool,
    /// `primary_key`: the key columns (UPSERT and DEBEZIUM need them; PLAIN keys messages by
    /// them when given).
    pub primary_key: Vec<String>,
}
