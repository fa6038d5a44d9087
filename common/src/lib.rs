//! freshet-common: the vocabulary every other crate shares.
//!
//! Owns the value model ([`Datum`], [`SqlType`]), id newtypes ([`TableId`]) and the user-facing
//! error contract ([`SqlState`], [`UserError`], [`PgError`]). It knows nothing of tokio, RocksDB,
//! Kafka or DataFusion, so every crate can depend on it cheaply.

mod datum;
mod error;
mod ids;
mod selection;
mod sink;
mod source;
mod types;

pub use datum::{Datum, ValueRef};
pub use error::{PgError, SqlState, UserError};
pub use ids::TableId;
pub use selection::{Selected, Selection};
pub use sink::{FileSinkConfig, KafkaSinkConfig, KafkaSinkFormat, SinkConfig, SinkMode};
pub use source::{
    IncludeKind, KafkaSourceConfig, SourceConfig, SourceFormat, Startup, TimestampUnit, WatermarkDef,
    DEFAULT_IDLE_TIMEOUT_MS,
};
pub use types::SqlType;
