//! freshet-connector-kafka: Kafka sources.
//!
//! Transport ([`reader`]: assigning partitions at given offsets, batching, discovering new
//! partitions, watermarks and broker status, bounded replays) is kept apart from format
//! ([`json`]: payload bytes → Arrow batches, bad messages set aside). It never commits offsets
//! to the broker: the server stores them in the same RocksDB write batch as the state they
//! produced, which is what makes sources exactly-once. It knows nothing of the catalog, the
//! state store or SQL; the server hands it Arrow schemas and offsets.
//!
//! `src/bin/mock.rs` is `freshet-kafka-mock`, librdkafka's mock cluster in a process of its
//! own, for tests and the `make run` demo.

pub mod csv;
pub mod json;
pub mod numbers;
pub mod options;
pub mod positions;
pub mod prune;
pub mod reader;
pub mod sink;
pub mod tweets;

pub use json::{BadMessage, JsonDecoder, Message, Origins};
pub use options::{check_source, PropertyPolicy};
pub use positions::OffsetProblem;
pub use reader::{
    decode_batch, replay, resolve_start, Reader, ReaderConfig, SharedDecoder, SourceBatch, Status,
};

/// `start` of a partition read from its beginning (wherever the broker's log starts).
pub const BEGINNING: i64 = -2;

/// Errors of the Kafka connector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad `WITH` options.
    #[error("{0}")]
    Options(String),
    /// Something we do not support (yet).
    #[error("{0} is not supported")]
    Unsupported(String),
    /// The broker or librdkafka failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// Messages that must be re-read are no longer in the topic.
    #[error("{0}")]
    Gone(String),
    /// An option a client may not set (it would load code or read files on the server).
    #[error("{0}")]
    Forbidden(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An arrow-json/arrow-csv error as users read it: without the crate's prefix.
pub(crate) fn clean_error(e: &datafusion::arrow::error::ArrowError) -> String {
    let s = e.to_string();
    ["Json error: ", "Csv error: ", "Parser error: "]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(&s)
        .to_owned()
}
