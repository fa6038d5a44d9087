//! The vocabulary of sinks: their typed configuration, bound once from `WITH (…)` by the SQL
//! binder and persisted as such by the catalog.

use serde::{Deserialize, Serialize};

/// Where and how a sink writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SinkConfig {
    /// Parquet files in a directory (`connector = 'file'`).
    File(FileSinkConfig),
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
    /// …or once its first row waited this long (milliseconds).
    pub rollover_ms: u64,
}
