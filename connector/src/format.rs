//! Payload formats: the [`Format`] contract and its implementations, JSON objects (with a
//! fast pruning pass and exact number conversion) and CSV lines. A new format (Avro,
//! Protobuf) is an [`Encoding`] and a [`Format`].

pub mod csv;
mod direct;
pub mod json;
pub mod numbers;
pub mod prune;
pub mod scan;

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use freshet_common::{Selection, TimestampUnit};

use crate::message::{BadMessage, Message};
use csv::CsvOptions;
use json::JsonFormat;

/// Payload columns decoded from messages.
#[derive(Debug, Default)]
pub struct Payloads {
    /// One array per payload column (the unselected ones NULL), a row per entry of `rows`;
    /// empty when no row decoded.
    pub columns: Vec<ArrayRef>,
    /// Per row: the index of its message in the decoded slice (a message may yield several
    /// rows, or none).
    pub rows: Vec<usize>,
    /// The messages that did not decode, in message order.
    pub bad: Vec<BadMessage>,
}

/// A payload format.
pub trait Format: std::fmt::Debug + Send + Sync {
    /// Decodes `msgs`: the rows of those that decode, in message order; the others as bad
    /// messages (the rest of the slice decodes on).
    fn decode(&self, msgs: &[Message]) -> Result<Payloads, ArrowError>;

    /// Decodes messages already accepted once (possibly by a decoder of fewer columns): a
    /// value that does not convert to its column's type is NULL instead of rejecting the
    /// message. For re-reads (backfills), which must keep exactly the messages that were
    /// accepted when first read. Rows may come out of message order.
    fn decode_lenient(&self, msgs: &[Message]) -> Result<Payloads, ArrowError>;
}

/// How payloads are encoded, with the format's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    Json(JsonOptions),
    Csv(CsvOptions),
}

/// Options of JSON payloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// The unit of JSON numbers for TIMESTAMP columns.
    pub timestamp_unit: TimestampUnit,
    /// Payload columns (indexes; Utf8) that take any JSON value, kept as its JSON text.
    pub raw_json_columns: Vec<usize>,
}

impl Encoding {
    /// The format decoding what `selection` reads of `payload`.
    pub(crate) fn format(&self, payload: &SchemaRef, selection: &Selection) -> Arc<dyn Format> {
        match self {
            Encoding::Json(o) => Arc::new(JsonFormat::new(Arc::clone(payload), o, selection.clone())),
            Encoding::Csv(c) => Arc::new(c.format(Arc::clone(payload), selection)),
        }
    }
}

/// Column-wise concatenation of parts of `width` columns each (none for no parts).
pub(crate) fn concat_columns(
    width: usize,
    parts: &[Vec<ArrayRef>],
) -> Result<Vec<ArrayRef>, ArrowError> {
    if parts.len() <= 1 {
        return Ok(parts.first().cloned().unwrap_or_default());
    }
    (0..width)
        .map(|i| {
            let arrays: Vec<&dyn datafusion::arrow::array::Array> =
                parts.iter().map(|p| p[i].as_ref()).collect();
            datafusion::arrow::compute::concat(&arrays)
        })
        .collect()
}
