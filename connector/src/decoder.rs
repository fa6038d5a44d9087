//! The decoder transports call: a [`Format`] (chosen by the source's [`Encoding`]) turns
//! message payloads into the payload's columns, and the [`Decoder`] adds the message metadata
//! a source includes (`INCLUDE partition, offset, timestamp, key`). Formats know nothing of
//! transports, and transports nothing of formats: a new transport (files) reuses every format.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, RecordBatchOptions,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use freshet_common::{IncludeKind, Selection};

use crate::format::{Encoding, Format};
use crate::message::{BadMessage, Decoded, Message, Origins};

/// Decodes messages into batches of `schema`: the payload's columns, then one column per
/// `include` entry (message metadata).
#[derive(Debug, Clone)]
pub struct Decoder {
    encoding: Encoding,
    payload: SchemaRef,
    /// What of the payload is decoded (the rest comes out NULL).
    selection: Selection,
    format: Arc<dyn Format>,
    include: Vec<IncludeKind>,
    schema: SchemaRef,
}

impl Decoder {
    /// `schema` must be `payload`'s fields followed by the `include` columns' fields. Every
    /// payload column is decoded until [`Decoder::with_selection`] says otherwise.
    pub fn new(
        encoding: Encoding,
        payload: SchemaRef,
        include: Vec<IncludeKind>,
        schema: SchemaRef,
    ) -> Decoder {
        let selection = Selection::columns_whole(&(0..payload.fields().len()).collect::<Vec<_>>());
        Decoder {
            format: encoding.format(&payload, &selection),
            encoding,
            payload,
            selection,
            include,
            schema,
        }
    }

    /// Decodes only these payload columns (indexes); the others come out as NULL and are not
    /// type-checked. Saves the work of building columns no reader needs.
    pub fn with_columns(self, columns: &[usize]) -> Self {
        self.with_selection(Selection::columns_whole(columns))
    }

    /// Decodes only what `selection` reads: the other columns, and the fields of struct
    /// columns it does not name, come out as NULL and are not type-checked.
    pub fn with_selection(mut self, selection: Selection) -> Self {
        self.format = self.encoding.format(&self.payload, &selection);
        self.selection = selection;
        self
    }

    /// What this decoder decodes.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Whether decoded rows include the message key (else messages need not carry it).
    pub fn includes_key(&self) -> bool {
        self.include.contains(&IncludeKind::Key)
    }

    /// The schema of decoded batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes `msgs`: the good ones as one batch (in order), the others as bad messages.
    pub fn decode(
        &self,
        msgs: &[Message],
    ) -> Result<(Option<RecordBatch>, Vec<BadMessage>), ArrowError> {
        self.decode_traced(msgs).map(|(batch, bad, _)| (batch, bad))
    }

    /// [`Decoder::decode`], with the message each row comes from.
    pub fn decode_traced(&self, msgs: &[Message]) -> Result<Decoded, ArrowError> {
        let p = self.format.decode(msgs)?;
        let (batch, origins) = self.finish(msgs, p.columns, &p.rows)?;
        Ok((batch, p.bad, origins))
    }

    /// [`Format::decode_lenient`], with message metadata.
    pub fn decode_lenient(&self, msgs: &[Message]) -> Result<Option<RecordBatch>, ArrowError> {
        self.decode_lenient_traced(msgs).map(|(batch, _)| batch)
    }

    /// [`Decoder::decode_lenient`], with the message each row comes from.
    pub fn decode_lenient_traced(
        &self,
        msgs: &[Message],
    ) -> Result<(Option<RecordBatch>, Origins), ArrowError> {
        let p = self.format.decode_lenient(msgs)?;
        self.finish(msgs, p.columns, &p.rows)
    }

    /// The batch of payload `columns` with the metadata of each row's message appended.
    fn finish(
        &self,
        msgs: &[Message],
        mut columns: Vec<ArrayRef>,
        rows: &[usize],
    ) -> Result<(Option<RecordBatch>, Origins), ArrowError> {
        if rows.is_empty() {
            return Ok((None, Vec::new()));
        }
        let of = |i: &usize| &msgs[*i];
        for kind in &self.include {
            let col: ArrayRef = match kind {
                IncludeKind::Partition => {
                    let mut b = Int32Builder::with_capacity(rows.len());
                    rows.iter().for_each(|i| b.append_value(of(i).partition));
                    Arc::new(b.finish())
                }
                IncludeKind::Offset => {
                    let mut b = Int64Builder::with_capacity(rows.len());
                    rows.iter().for_each(|i| b.append_value(of(i).offset));
                    Arc::new(b.finish())
                }
                IncludeKind::Timestamp => {
                    let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len());
                    rows.iter()
                        .for_each(|i| b.append_option(of(i).timestamp_ms.map(|t| t * 1000)));
                    Arc::new(b.finish().with_timezone("+00:00"))
                }
                IncludeKind::Key => {
                    let mut b = BinaryBuilder::new();
                    rows.iter().for_each(|i| b.append_option(of(i).key.as_deref()));
                    Arc::new(b.finish())
                }
            };
            columns.push(col);
        }
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?;
        let origins = rows.iter().map(|i| (of(i).partition, of(i).offset)).collect();
        Ok((Some(batch), origins))
    }
}

/// The decoder a reader uses, replaceable while it runs (when the columns views read change).
#[derive(Debug)]
pub struct SharedDecoder {
    inner: Mutex<(u64, Arc<Decoder>)>,
}

impl SharedDecoder {
    pub fn new(d: Decoder) -> Arc<SharedDecoder> {
        Arc::new(SharedDecoder {
            inner: Mutex::new((0, Arc::new(d))),
        })
    }

    /// The current decoder and its version.
    pub fn get(&self) -> (u64, Arc<Decoder>) {
        let g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (g.0, Arc::clone(&g.1))
    }

    /// Replaces the decoder (a new version).
    pub fn set(&self, d: Decoder) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = (g.0 + 1, Arc::new(d));
    }
}

#[cfg(test)]
mod json_tests;

#[cfg(test)]
mod csv_tests;
