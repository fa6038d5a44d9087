//! freshet-connector-kafka: the Kafka transport.
//!
//! Sources ([`reader`]: assigning partitions at given offsets, batching, discovering new
//! partitions, watermarks and broker status, bounded replays; a [`Reader`] is a
//! `freshet_connector::SourceReader`) decode with whatever format the server hands them
//! (`freshet_connector::Decoder`); sinks ([`writer`], a `freshet_connector::SinkWriter`, over
//! [`sink`]'s producer) write messages that carry their place in the output, read back after
//! a restart. It never commits offsets to the broker: the
//! server stores them in the same RocksDB write batch as the state they produced, which is
//! what makes sources exactly-once. It knows nothing of the catalog, the state store or SQL.
//!
//! `src/bin/mock.rs` is `freshet-kafka-mock`, librdkafka's mock cluster in a process of its
//! own, for tests and the `make run` demo.

pub mod options;
pub mod positions;
mod queue;
pub mod reader;
pub mod sink;
pub mod tweets;
pub mod writer;

pub use options::{check_source, PropertyPolicy};
pub use reader::{replay, resolve_start, Reader, ReaderConfig};
pub use writer::KafkaWriter;

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
