//! freshet-connector: the contracts between the server and its connectors, and the payload
//! formats.
//!
//! - [`message`]: what a transport reads — messages at (partition, offset) positions — and
//!   what does not decode ([`BadMessage`], kept in the source's error relation).
//! - [`decoder`]: a [`Format`] turns payloads into Arrow columns; a [`Decoder`] adds the
//!   message metadata a source includes. Formats: [`format::json`], [`format::csv`].
//! - [`source`]: what a transport's reader delivers ([`SourceBatch`]) and reports
//!   ([`SourceStatus`]), and the [`SourceReader`] a running source holds.
//! - [`sink`]: what a sink's destination takes ([`Changes`]) and how ([`SinkWriter`], by one
//!   of two exactly-once [`Protocol`]s).
//!
//! Transports live in crates of their own (`freshet-connector-kafka`) and depend on this
//! one; nothing here knows a broker, the catalog, the state store or SQL.

pub mod decoder;
pub mod format;
pub mod message;
pub mod sink;
pub mod source;

pub use decoder::{Decoder, SharedDecoder};
pub use format::csv::CsvOptions;
pub use format::{Encoding, Format, JsonOptions, Payloads};
pub use message::{BadMessage, Decoded, Message, Origins, BAD_PAYLOAD_PREFIX};
pub use sink::{arrivals, row_bytes, Changes, Pending, Prepared, Protocol, SinkWriter};
pub use source::{decode_batch, OffsetProblem, SourceBatch, SourceReader, SourceStatus, BEGINNING};

/// An arrow-json/arrow-csv error as users read it: without the crate's prefix.
pub(crate) fn clean_error(e: &datafusion::arrow::error::ArrowError) -> String {
    let s = e.to_string();
    ["Json error: ", "Csv error: ", "Parser error: "]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(&s)
        .to_owned()
}
