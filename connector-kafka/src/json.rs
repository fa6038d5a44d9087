//! JSON payloads → Arrow batches, straight from the bytes (arrow-json's tape decoder).
//!
//! Permissive like Spark's `from_json`: missing fields are NULL, unknown fields are ignored,
//! numbers and booleans are accepted for text columns, ISO-8601 strings for timestamps. A
//! message that is not one JSON object, or whose field cannot be converted to its declared
//! type, is returned as a [`BadMessage`] and the rest of the batch decodes on.

use std::sync::Arc;

use bytes::Bytes;

use datafusion::arrow::array::{
    new_null_array, ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::reader::{Decoder, ReaderBuilder};
use freshet_common::{IncludeKind, Selection};

use freshet_common::TimestampUnit;
use crate::prune::Keep;

/// Bytes of a bad message's payload kept in the error relation.
pub const BAD_PAYLOAD_PREFIX: usize = 256;

/// One consumed message, detached from the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch, when the message has a timestamp.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    pub payload: Option<Bytes>,
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    pub partition: i32,
    pub offset: i64,
    pub error: String,
    /// The first [`BAD_PAYLOAD_PREFIX`] bytes of the payload.
    pub payload: Vec<u8>,
}

impl BadMessage {
    fn new(m: &Message, error: String) -> Self {
        let payload = m.payload.as_deref().unwrap_or_default();
        BadMessage {
            partition: m.partition,
            offset: m.offset,
            error,
            payload: payload[..payload.len().min(BAD_PAYLOAD_PREFIX)].to_vec(),
        }
    }
}

/// Decodes JSON messages into batches of `schema`: the payload's columns, then one column per
/// `include` entry (message metadata).
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    payload: SchemaRef,
    /// Payload columns that take any JSON value, kept as its JSON text (JSONB).
    raw_all: Vec<usize>,
    /// What of the payload is decoded (the rest comes out NULL).
    selection: Selection,
    /// Per payload column: whether any of it is decoded.
    selected: Vec<bool>,
    /// The selected typed (non-raw) fields, narrowed to the selected struct fields: what
    /// arrow-json decodes.
    typed: SchemaRef,
    /// When some of the payload is not decoded: the fields kept for arrow-json by a first
    /// pass over each message (see [`crate::prune`]).
    keep: Option<Keep>,
    /// The selected raw-JSON columns.
    raw: Vec<usize>,
    include: Vec<IncludeKind>,
    schema: SchemaRef,
    /// CSV payloads instead of JSON.
    csv: Option<crate::csv::CsvFormat>,
    /// The unit of JSON numbers for TIMESTAMP columns.
    timestamp_unit: TimestampUnit,
}

impl JsonDecoder {
    /// Decodes CSV payloads (one or more lines per message) instead of JSON objects.
    pub fn with_csv(mut self, format: crate::csv::CsvFormat) -> Self {
        self.csv = Some(format);
        self
    }

    /// CSV: each message on its own (its lines are rows); bad messages set aside.
    fn decode_csv(
        &self,
        format: crate::csv::CsvFormat,
        msgs: &[Message],
        lenient: bool,
    ) -> Result<Decoded, ArrowError> {
        let columns = self.columns();
        let mut parts: Vec<Vec<ArrayRef>> = Vec::new();
        let mut rows_of: Vec<&Message> = Vec::new();
        let mut bad = Vec::new();
        for m in msgs {
            let payload = m.payload.as_deref().unwrap_or_default();
            let decoded = match crate::csv::decode_message(format, &self.payload, &columns, payload)
            {
                Ok(r) => Ok(r),
                Err(e) if lenient => {
                    crate::csv::decode_fieldwise(format, &self.payload, &columns, payload).ok_or(e)
                }
                Err(e) => Err(e),
            };
            match decoded {
                Ok((cols, rows)) => {
                    parts.push(cols);
                    rows_of.extend(std::iter::repeat_n(m, rows));
                }
                Err(e) => bad.push(BadMessage::new(m, e)),
            }
        }
        if parts.is_empty() {
            return Ok((None, bad, Vec::new()));
        }
        let width = self.payload.fields().len();
        let mut columns = Vec::with_capacity(width);
        for i in 0..width {
            let arrays: Vec<&dyn datafusion::arrow::array::Array> =
                parts.iter().map(|p| p[i].as_ref()).collect();
            columns.push(datafusion::arrow::compute::concat(&arrays)?);
        }
        Ok((Some(self.with_metadata(columns, &rows_of)?), bad, origins(&rows_of)))
    }

    /// `schema` must be `payload`'s fields followed by the `include` columns' fields. Every
    /// payload column is decoded until [`JsonDecoder::with_columns`] says otherwise.
    pub fn new(payload: SchemaRef, include: Vec<IncludeKind>, schema: SchemaRef) -> Self {
        let mut d = JsonDecoder {
            typed: Arc::clone(&payload),
            selection: Selection::columns_whole(&(0..payload.fields().len()).collect::<Vec<_>>()),
            selected: vec![true; payload.fields().len()],
            keep: None,
            payload,
            raw_all: vec![],
            raw: vec![],
            include,
            schema,
            csv: None,
            timestamp_unit: TimestampUnit::default(),
        };
        d.rebuild();
        d
    }

    /// JSON numbers for TIMESTAMP columns are Unix times in `unit`.
    pub fn with_timestamp_unit(mut self, unit: TimestampUnit) -> Self {
        self.timestamp_unit = unit;
        self.rebuild();
        self
    }

    /// Payload columns (indexes; Utf8) that take any JSON value as its JSON text. Messages
    /// of a decoder with such columns are also parsed with serde_json, for those fields only.
    pub fn with_raw_json_columns(mut self, raw: Vec<usize>) -> Self {
        self.raw_all = raw;
        self.rebuild();
        self
    }

    /// Decodes only these payload columns (indexes); the others come out as NULL and are not
    /// type-checked. Saves the work of building columns no reader needs.
    pub fn with_columns(self, columns: &[usize]) -> Self {
        self.with_selection(Selection::columns_whole(columns))
    }

    /// Decodes only what `selection` reads: the other columns, and the fields of struct
    /// columns it does not name, come out as NULL and are not type-checked.
    pub fn with_selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self.rebuild();
        self
    }

    /// What this decoder decodes.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The payload columns this decoder decodes.
    pub fn columns(&self) -> Vec<usize> {
        (0..self.selected.len())
            .filter(|&i| self.selected[i])
            .collect()
    }

    fn rebuild(&mut self) {
        let width = self.payload.fields().len();
        // arrow-json needs a field to decode into: keep one typed column when none is asked.
        let typed = |i: &usize| !self.raw_all.contains(i);
        if !self.selection.columns().iter().any(typed) {
            if let Some(i) = (0..width).find(typed) {
                self.selection.add_column(i);
            }
        }
        self.selected = (0..width)
            .map(|i| self.selection.get(i).is_some())
            .collect();
        let mut keep = Keep::new(self.timestamp_unit);
        let mut narrowed = false;
        let mut fields = Vec::new();
        for (i, f) in self.payload.fields().iter().enumerate() {
            let Some(sel) = self.selection.get(i) else {
                continue;
            };
            if self.raw_all.contains(&i) {
                continue;
            }
            keep.add(f.name(), f.data_type(), sel);
            let field = crate::prune::pruned_field(f, sel);
            narrowed |= !Arc::ptr_eq(&field, f);
            fields.push(field);
        }
        let drops = narrowed || self.selected.iter().any(|s| !s) || !self.raw_all.is_empty();
        // Numbers are checked (and timestamps converted) on the way through the pruner.
        self.keep = (drops || keep.converts()).then_some(keep);
        self.typed = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        self.raw = self
            .raw_all
            .iter()
            .copied()
            .filter(|&i| self.selected.get(i).copied().unwrap_or(false))
            .collect();
    }

    /// Whether decoded rows include the message key (else messages need not carry it).
    pub fn includes_key(&self) -> bool {
        self.include.contains(&IncludeKind::Key)
    }

    /// The schema of decoded batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn decoder(&self, batch_size: usize) -> Result<Decoder, ArrowError> {
        ReaderBuilder::new(Arc::clone(&self.typed))
            .with_batch_size(batch_size.max(1))
            .with_coerce_primitive(true)
            .with_strict_mode(false)
            .build_decoder()
    }

    /// What the typed decoder reads of `m`: its payload, or the kept fields of it (appended
    /// to `arena`) when this decoder prunes; an error when the payload is not one JSON object.
    fn prepare(&self, m: &Message, arena: &mut Vec<u8>) -> Input {
        let Some(keep) = &self.keep else {
            return Input::Payload;
        };
        let start = arena.len();
        match crate::prune::prune(m.payload.as_deref().unwrap_or_default(), keep, arena) {
            Ok(()) => Input::Pruned(start, arena.len()),
            Err(e) => {
                arena.truncate(start);
                Input::Bad(e)
            }
        }
    }

    /// Decodes `msgs`: the good ones as one batch (in order), the others as bad messages.
    pub fn decode(
        &self,
        msgs: &[Message],
    ) -> Result<(Option<RecordBatch>, Vec<BadMessage>), ArrowError> {
        self.decode_traced(msgs).map(|(batch, bad, _)| (batch, bad))
    }

    /// [`JsonDecoder::decode`], with the message each row comes from.
    pub fn decode_traced(&self, msgs: &[Message]) -> Result<Decoded, ArrowError> {
        if let Some(format) = self.csv {
            return self.decode_csv(format, msgs, false);
        }
        let mut arena = Vec::new();
        let inputs: Vec<Input> = msgs.iter().map(|m| self.prepare(m, &mut arena)).collect();
        let mut bad = Vec::new();
        let mut good: Vec<(&Message, &[u8])> = Vec::with_capacity(msgs.len());
        let mut decoder = self.decoder(msgs.len())?;
        for (m, input) in msgs.iter().zip(&inputs) {
            let bytes = match input {
                Input::Bad(e) => {
                    bad.push(BadMessage::new(m, e.clone()));
                    continue;
                }
                Input::Payload => m.payload.as_deref().unwrap_or_default(),
                Input::Pruned(a, b) => &arena[*a..*b],
            };
            if let Err(e) = self.check_raw_json(m) {
                bad.push(BadMessage::new(m, e));
                continue;
            }
            match self.feed(&mut decoder, bytes) {
                Ok(()) => good.push((m, bytes)),
                Err(e) => {
                    bad.push(BadMessage::new(m, e));
                    // The decoder may hold half a value: start over with the good ones.
                    decoder = self.decoder(msgs.len())?;
                    for (_, g) in &good {
                        self.feed(&mut decoder, g).map_err(ArrowError::JsonError)?;
                    }
                }
            }
        }
        if good.is_empty() {
            return Ok((None, bad, Vec::new()));
        }
        let payload = match decoder.flush() {
            Ok(Some(b)) => b,
            Ok(None) => return Ok((None, bad, Vec::new())),
            Err(_) => {
                // Some value does not convert to its column's type: find which, one by one.
                let mut parts = Vec::with_capacity(good.len());
                let mut kept = Vec::with_capacity(good.len());
                for (m, g) in good {
                    let mut d = self.decoder(1)?;
                    let r = self
                        .feed(&mut d, g)
                        .map_err(ArrowError::JsonError)
                        .and_then(|()| d.flush());
                    match r {
                        Ok(Some(b)) => {
                            parts.push(b);
                            kept.push((m, g));
                        }
                        Ok(None) => bad.push(BadMessage::new(m, "empty message".into())),
                        Err(e) => bad.push(BadMessage::new(m, crate::clean_error(&e))),
                    }
                }
                // Messages arrive in order; only this pass appends out of order.
                bad.sort_by_key(|b| (b.partition, b.offset));
                good = kept;
                if parts.is_empty() {
                    return Ok((None, bad, Vec::new()));
                }
                concat_batches(&self.typed, &parts)?
            }
        };
        let good: Vec<&Message> = good.into_iter().map(|(m, _)| m).collect();
        let payload = self.with_raw_json(payload, &good)?;
        Ok((Some(self.with_metadata(payload, &good)?), bad, origins(&good)))
    }

    /// Inserts the raw-JSON columns of `msgs` (already known to be JSON objects) and NULL
    /// columns for the unselected ones at their places among the typed ones.
    fn with_raw_json(
        &self,
        typed: RecordBatch,
        msgs: &[&Message],
    ) -> Result<Vec<ArrayRef>, ArrowError> {
        if self.keep.is_none() {
            return Ok(typed.columns().to_vec());
        }
        let mut raw: Vec<StringBuilder> = self.raw.iter().map(|_| StringBuilder::new()).collect();
        if !self.raw.is_empty() {
            for m in msgs {
                // `decode` set aside the messages this fails for; a lenient re-read keeps
                // them with NULLs.
                let obj: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(m.payload.as_deref().unwrap_or_default())
                        .unwrap_or_default();
                for (b, &i) in raw.iter_mut().zip(&self.raw) {
                    match obj.get(self.payload.field(i).name()) {
                        None | Some(serde_json::Value::Null) => b.append_null(),
                        Some(v) => b.append_value(v.to_string()),
                    }
                }
            }
        }
        let mut raw = raw.into_iter();
        let mut typed = typed.columns().iter();
        (0..self.payload.fields().len())
            .map(|i| {
                let col = if !self.selected[i] {
                    Some(new_null_array(
                        self.payload.field(i).data_type(),
                        msgs.len(),
                    ))
                } else if self.raw.contains(&i) {
                    raw.next().map(|mut b| Arc::new(b.finish()) as ArrayRef)
                } else {
                    let full = self.payload.field(i).data_type();
                    match (typed.next(), self.selection.get(i)) {
                        (Some(a), Some(sel)) => Some(crate::prune::expand(a, full, sel)?),
                        (a, _) => a.cloned(),
                    }
                };
                col.ok_or_else(|| ArrowError::SchemaError("raw JSON column mismatch".into()))
            })
            .collect()
    }

    /// For a decoder with raw JSON columns: whether serde_json takes `m` (it refuses nesting
    /// deeper than 128 and numbers out of range), so that a message it refuses is set aside
    /// alone rather than failing its batch.
    fn check_raw_json(&self, m: &Message) -> Result<(), String> {
        if self.keep.is_none() || self.raw.is_empty() {
            return Ok(());
        }
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(
            m.payload.as_deref().unwrap_or_default(),
        )
        .map(drop)
        .map_err(|e| format!("invalid JSON value: {e}"))
    }

    /// Decodes messages already accepted once (by [`JsonDecoder::decode`], possibly with
    /// fewer columns): every JSON object yields a row; a field that does not convert to its
    /// type is NULL instead of rejecting the message. For re-reads (backfills), which must
    /// keep exactly the messages that were accepted when first read.
    pub fn decode_lenient(&self, msgs: &[Message]) -> Result<Option<RecordBatch>, ArrowError> {
        self.decode_lenient_traced(msgs).map(|(batch, _)| batch)
    }

    /// [`JsonDecoder::decode_lenient`], with the message each row comes from.
    pub fn decode_lenient_traced(
        &self,
        msgs: &[Message],
    ) -> Result<(Option<RecordBatch>, Origins), ArrowError> {
        if let Some(format) = self.csv {
            let (batch, _, origins) = self.decode_csv(format, msgs, true)?;
            return Ok((batch, origins));
        }
        let (good, bad, mut origins) = self.decode_traced(msgs)?;
        let mut parts: Vec<RecordBatch> = good.into_iter().collect();
        for b in bad {
            let Some(m) = msgs
                .iter()
                .find(|m| m.partition == b.partition && m.offset == b.offset)
            else {
                continue;
            };
            if let Some(row) = self.decode_fieldwise(m)? {
                origins.extend(std::iter::repeat_n((m.partition, m.offset), row.num_rows()));
                parts.push(row);
            }
        }
        let batch = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(concat_batches(&self.schema, &parts)?),
        };
        Ok((batch, origins))
    }

    /// One message, each selected typed field on its own (NULL when it does not convert);
    /// `None` when the message is not one JSON object.
    fn decode_fieldwise(&self, m: &Message) -> Result<Option<RecordBatch>, ArrowError> {
        let mut arena = Vec::new();
        let bytes = match self.prepare(m, &mut arena) {
            Input::Bad(_) => return Ok(None),
            Input::Payload => m.payload.as_deref().unwrap_or_default(),
            Input::Pruned(a, b) => &arena[a..b],
        };
        let mut columns = Vec::with_capacity(self.typed.fields().len());
        for f in self.typed.fields() {
            let one = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![Arc::clone(
                f,
            )]));
            let mut d = ReaderBuilder::new(one)
                .with_batch_size(1)
                .with_coerce_primitive(true)
                .with_strict_mode(false)
                .build_decoder()?;
            if self.feed(&mut d, bytes).is_err() {
                return Ok(None);
            }
            columns.push(match d.flush() {
                Ok(Some(b)) => Arc::clone(b.column(0)),
                _ => new_null_array(f.data_type(), 1),
            });
        }
        let typed = RecordBatch::try_new_with_options(
            Arc::clone(&self.typed),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let cols = self.with_raw_json(typed, &[m])?;
        self.with_metadata(cols, &[m]).map(Some)
    }

    /// Feeds one message's bytes; an error when they are not exactly one JSON object.
    fn feed(&self, decoder: &mut Decoder, payload: &[u8]) -> Result<(), String> {
        let first = payload.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(match first {
                None => "empty message".to_owned(),
                Some(_) => "message is not a JSON object".to_owned(),
            });
        }
        let before = decoder.len();
        let n = decoder.decode(payload).map_err(|e| crate::clean_error(&e))?;
        if n != payload.len() {
            return Err("more than one JSON value in the message".into());
        }
        if decoder.has_partial_record() {
            return Err("truncated JSON object".into());
        }
        if decoder.len() != before + 1 {
            return Err("message is not one JSON object".into());
        }
        Ok(())
    }

    /// Appends the metadata columns of `msgs` to `payload`.
    fn with_metadata(
        &self,
        mut columns: Vec<ArrayRef>,
        msgs: &[&Message],
    ) -> Result<RecordBatch, ArrowError> {
        for kind in &self.include {
            let col: ArrayRef = match kind {
                IncludeKind::Partition => {
                    let mut b = Int32Builder::with_capacity(msgs.len());
                    msgs.iter().for_each(|m| b.append_value(m.partition));
                    Arc::new(b.finish())
                }
                IncludeKind::Offset => {
                    let mut b = Int64Builder::with_capacity(msgs.len());
                    msgs.iter().for_each(|m| b.append_value(m.offset));
                    Arc::new(b.finish())
                }
                IncludeKind::Timestamp => {
                    let mut b = TimestampMicrosecondBuilder::with_capacity(msgs.len());
                    msgs.iter()
                        .for_each(|m| b.append_option(m.timestamp_ms.map(|t| t * 1000)));
                    Arc::new(b.finish().with_timezone("+00:00"))
                }
                IncludeKind::Key => {
                    let mut b = BinaryBuilder::new();
                    msgs.iter().for_each(|m| b.append_option(m.key.as_deref()));
                    Arc::new(b.finish())
                }
            };
            columns.push(col);
        }
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}

/// Each decoded row's message: (partition, offset).
pub type Origins = Vec<(i32, i64)>;

/// Decoded rows (in message order), the messages that could not be decoded, and each row's
/// message.
pub type Decoded = (Option<RecordBatch>, Vec<BadMessage>, Origins);

fn origins(rows: &[&Message]) -> Origins {
    rows.iter().map(|m| (m.partition, m.offset)).collect()
}

/// What the typed decoder reads of one message.
enum Input {
    /// The payload as it is.
    Payload,
    /// The kept fields, at this range of the arena.
    Pruned(usize, usize),
    /// Not one JSON object.
    Bad(String),
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod csv_tests;
