//! JSON payloads → Arrow columns: flat selections in one pass ([`Direct`]), anything else
//! pruned and decoded by arrow-json's tape decoder.
//!
//! Permissive like Spark's `from_json`: missing fields are NULL, unknown fields are ignored,
//! numbers and booleans are accepted for text columns, ISO-8601 strings for timestamps. A
//! message that is not one JSON object, or whose field cannot be converted to its declared
//! type, is returned as a [`BadMessage`] and the rest of the batch decodes on.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::reader::{Decoder, ReaderBuilder};
use freshet_common::{Selection, TimestampUnit};

use crate::format::{concat_columns, Format, JsonOptions, Payloads};
use crate::format::direct::Direct;
use crate::format::prune::Keep;
use crate::message::{BadMessage, Message};

/// The JSON format of one payload schema and selection.
#[derive(Debug, Clone)]
pub struct JsonFormat {
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
    /// pass over each message (see [`crate::format::prune`]).
    keep: Option<Keep>,
    /// The selected raw-JSON columns.
    raw: Vec<usize>,
    /// The unit of JSON numbers for TIMESTAMP columns.
    timestamp_unit: TimestampUnit,
    /// The one-pass decoder, when the selection is of a shape it takes.
    direct: Option<Direct>,
}

impl JsonFormat {
    /// Decodes what `selection` reads of `payload`. Messages of a format with raw JSON
    /// columns are also parsed with serde_json, for those fields only.
    pub fn new(payload: SchemaRef, options: &JsonOptions, selection: Selection) -> Self {
        let mut f = JsonFormat {
            typed: Arc::clone(&payload),
            selected: vec![true; payload.fields().len()],
            keep: None,
            payload,
            raw_all: options.raw_json_columns.clone(),
            raw: vec![],
            selection,
            timestamp_unit: options.timestamp_unit,
            direct: None,
        };
        f.rebuild();
        f
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
            let field = crate::format::prune::pruned_field(f, sel);
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
        // Only where the general decoder prunes: its errors are then the scanner's too.
        self.direct = self.keep.as_ref().and_then(|_| {
            Direct::new(
                &self.payload,
                &self.selection,
                &self.raw_all,
                self.timestamp_unit,
            )
        });
    }

    fn decoder(&self, batch_size: usize) -> Result<Decoder, ArrowError> {
        ReaderBuilder::new(Arc::clone(&self.typed))
            .with_batch_size(batch_size.max(1))
            .with_coerce_primitive(true)
            .with_strict_mode(false)
            .build_decoder()
    }

    /// What the typed decoder reads of `m`: its payload, or the kept fields of it (appended
    /// to `arena`) when this format prunes; an error when the payload is not one JSON object.
    fn prepare(&self, m: &Message, arena: &mut Vec<u8>) -> Input {
        let Some(keep) = &self.keep else {
            return Input::Payload;
        };
        let start = arena.len();
        match crate::format::prune::prune(m.bytes(), keep, arena) {
            Ok(()) => Input::Pruned(start, arena.len()),
            Err(e) => {
                arena.truncate(start);
                Input::Bad(e)
            }
        }
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
                    serde_json::from_slice(m.bytes()).unwrap_or_default();
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
                        (Some(a), Some(sel)) => Some(crate::format::prune::expand(a, full, sel)?),
                        (a, _) => a.cloned(),
                    }
                };
                col.ok_or_else(|| ArrowError::SchemaError("raw JSON column mismatch".into()))
            })
            .collect()
    }

    /// For a format with raw JSON columns: whether serde_json takes `m` (it refuses nesting
    /// deeper than 128 and numbers out of range), so that a message it refuses is set aside
    /// alone rather than failing its batch.
    fn check_raw_json(&self, m: &Message) -> Result<(), String> {
        if self.keep.is_none() || self.raw.is_empty() {
            return Ok(());
        }
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(m.bytes())
            .map(drop)
            .map_err(|e| format!("invalid JSON value: {e}"))
    }

    /// One message, each selected typed field on its own (NULL when it does not convert);
    /// `None` when the message is not one JSON object.
    fn decode_fieldwise(&self, m: &Message) -> Result<Option<Vec<ArrayRef>>, ArrowError> {
        let mut arena = Vec::new();
        let bytes = match self.prepare(m, &mut arena) {
            Input::Bad(_) => return Ok(None),
            Input::Payload => m.bytes(),
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
        self.with_raw_json(typed, &[m]).map(Some)
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
}

impl Format for JsonFormat {
    fn decode(&self, msgs: &[Message]) -> Result<Payloads, ArrowError> {
        if let Some(direct) = &self.direct {
            if let Some(p) = direct.decode(msgs)? {
                return Ok(p);
            }
        }
        self.decode_general(msgs)
    }

    fn decode_lenient(&self, msgs: &[Message]) -> Result<Payloads, ArrowError> {
        let first = self.decode(msgs)?;
        if first.bad.is_empty() {
            return Ok(first);
        }
        let mut parts: Vec<Vec<ArrayRef>> = Vec::new();
        let mut rows = first.rows;
        if !rows.is_empty() {
            parts.push(first.columns);
        }
        for b in &first.bad {
            let Some(i) = msgs
                .iter()
                .position(|m| m.partition == b.partition && m.offset == b.offset)
            else {
                continue;
            };
            if let Some(row) = self.decode_fieldwise(&msgs[i])? {
                rows.push(i);
                parts.push(row);
            }
        }
        Ok(Payloads {
            columns: concat_columns(self.payload.fields().len(), &parts)?,
            rows,
            bad: Vec::new(),
        })
    }
}

impl JsonFormat {
    /// Any message: pruned (when this format prunes), then decoded by arrow-json.
    fn decode_general(&self, msgs: &[Message]) -> Result<Payloads, ArrowError> {
        let mut arena = Vec::new();
        let inputs: Vec<Input> = msgs.iter().map(|m| self.prepare(m, &mut arena)).collect();
        let mut bad = Vec::new();
        // (message index, the bytes fed)
        let mut good: Vec<(usize, &[u8])> = Vec::with_capacity(msgs.len());
        let mut decoder = self.decoder(msgs.len())?;
        for (i, (m, input)) in msgs.iter().zip(&inputs).enumerate() {
            let bytes = match input {
                Input::Bad(e) => {
                    bad.push(BadMessage::new(m, e.clone()));
                    continue;
                }
                Input::Payload => m.bytes(),
                Input::Pruned(a, b) => &arena[*a..*b],
            };
            if let Err(e) = self.check_raw_json(m) {
                bad.push(BadMessage::new(m, e));
                continue;
            }
            match self.feed(&mut decoder, bytes) {
                Ok(()) => good.push((i, bytes)),
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
        let none = |bad| Ok(Payloads { bad, ..Payloads::default() });
        if good.is_empty() {
            return none(bad);
        }
        let typed = match decoder.flush() {
            Ok(Some(b)) => b,
            Ok(None) => return none(bad),
            Err(_) => {
                // Some value does not convert to its column's type: find which, one by one.
                let mut parts = Vec::with_capacity(good.len());
                let mut kept = Vec::with_capacity(good.len());
                for (i, g) in good {
                    let mut d = self.decoder(1)?;
                    let r = self
                        .feed(&mut d, g)
                        .map_err(ArrowError::JsonError)
                        .and_then(|()| d.flush());
                    match r {
                        Ok(Some(b)) => {
                            parts.push(b);
                            kept.push((i, g));
                        }
                        Ok(None) => bad.push(BadMessage::new(&msgs[i], "empty message".into())),
                        Err(e) => bad.push(BadMessage::new(&msgs[i], crate::clean_error(&e))),
                    }
                }
                // Messages arrive in order; only this pass appends out of order.
                bad.sort_by_key(|b| (b.partition, b.offset));
                good = kept;
                if parts.is_empty() {
                    return none(bad);
                }
                concat_batches(&self.typed, &parts)?
            }
        };
        let rows: Vec<usize> = good.into_iter().map(|(i, _)| i).collect();
        let of: Vec<&Message> = rows.iter().map(|&i| &msgs[i]).collect();
        let columns = self.with_raw_json(typed, &of)?;
        Ok(Payloads { columns, rows, bad })
    }
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
#[path = "json_direct_tests.rs"]
mod direct_tests;
