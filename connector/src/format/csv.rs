//! CSV payloads → Arrow (arrow-csv), one or more lines per message, only the selected columns
//! parsed. A message with the wrong number of fields or a field that does not parse as its
//! column's type is bad as a whole; [`decode_fieldwise`] is the lenient per-field form used by
//! re-reads.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef};
use datafusion::arrow::csv::reader::ReaderBuilder;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use freshet_common::Selection;

use crate::format::{concat_columns, Format, Payloads};
use crate::message::{BadMessage, Message};

/// How messages are split into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    /// The first line of every message is a header, skipped.
    pub header: bool,
}

impl CsvOptions {
    /// The format decoding the columns `selection` reads of `payload` (whole columns: CSV
    /// has no nested fields).
    pub fn format(&self, payload: SchemaRef, selection: &Selection) -> CsvFormat {
        let width = payload.fields().len();
        let mut columns: Vec<usize> = (0..width).filter(|&i| selection.get(i).is_some()).collect();
        // arrow-csv needs a column to count rows by: keep one when none is asked.
        if columns.is_empty() && width > 0 {
            columns.push(0);
        }
        CsvFormat {
            options: *self,
            payload,
            columns,
        }
    }
}

/// The CSV format of one payload schema and column set.
#[derive(Debug, Clone)]
pub struct CsvFormat {
    options: CsvOptions,
    payload: SchemaRef,
    columns: Vec<usize>,
}

impl CsvFormat {
    /// Each message on its own (its lines are rows); bad messages set aside. `lenient`: a
    /// field that does not parse is NULL (re-reads of messages accepted once).
    fn decode_each(&self, msgs: &[Message], lenient: bool) -> Result<Payloads, ArrowError> {
        let (format, schema, columns) = (self.options, &self.payload, &self.columns);
        let mut parts: Vec<Vec<ArrayRef>> = Vec::new();
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let payload = m.bytes();
            let decoded = match decode_message(format, schema, columns, payload) {
                Ok(r) => Ok(r),
                Err(e) if lenient => decode_fieldwise(format, schema, columns, payload).ok_or(e),
                Err(e) => Err(e),
            };
            match decoded {
                Ok((cols, n)) => {
                    parts.push(cols);
                    rows.extend(std::iter::repeat_n(i, n));
                }
                Err(e) => bad.push(BadMessage::new(m, e)),
            }
        }
        Ok(Payloads {
            columns: concat_columns(schema.fields().len(), &parts)?,
            rows,
            bad,
        })
    }
}

impl Format for CsvFormat {
    fn decode(&self, msgs: &[Message]) -> Result<Payloads, ArrowError> {
        self.decode_each(msgs, false)
    }

    fn decode_lenient(&self, msgs: &[Message]) -> Result<Payloads, ArrowError> {
        let mut p = self.decode_each(msgs, true)?;
        p.bad.clear();
        Ok(p)
    }
}

/// The records of one message's payload (its header line dropped).
fn body<'a>(format: CsvOptions, payload: &'a [u8]) -> &'a [u8] {
    if !format.header {
        return payload;
    }
    match payload.iter().position(|b| *b == b'\n') {
        Some(i) => &payload[i + 1..],
        None => &[],
    }
}

/// Decodes the `columns` of `payload` (a schema of every payload column); the result holds
/// one array per payload column, the unselected ones NULL, and as many rows as the message has
/// lines. An error when the message is not well-formed CSV for the schema.
pub fn decode_message(
    format: CsvOptions,
    payload_schema: &SchemaRef,
    columns: &[usize],
    payload: &[u8],
) -> Result<(Vec<ArrayRef>, usize), String> {
    let data = body(format, payload);
    let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
    let mut d = ReaderBuilder::new(Arc::clone(payload_schema))
        .with_delimiter(format.delimiter)
        .with_header(false)
        .with_batch_size(lines)
        .with_projection(columns.to_vec())
        .build_decoder();
    let mut rest = data;
    while !rest.is_empty() {
        let n = d.decode(rest).map_err(|e| crate::clean_error(&e))?;
        if n == 0 {
            break;
        }
        rest = &rest[n..];
    }
    d.decode(&[]).map_err(|e| crate::clean_error(&e))?;
    let batch = match d.flush().map_err(|e| crate::clean_error(&e))? {
        Some(b) => b,
        None => return Err("empty message".into()),
    };
    let rows = batch.num_rows();
    let mut parsed = batch.columns().iter();
    let out = (0..payload_schema.fields().len())
        .map(|i| {
            if columns.contains(&i) {
                parsed.next().cloned()
            } else {
                Some(new_null_array(payload_schema.field(i).data_type(), rows))
            }
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| "CSV projection mismatch".to_owned())?;
    Ok((out, rows))
}

/// Like [`decode_message`], but a field that does not parse is NULL; `None` when the message's
/// lines cannot be split into the schema's fields at all.
pub fn decode_fieldwise(
    format: CsvOptions,
    payload_schema: &SchemaRef,
    columns: &[usize],
    payload: &[u8],
) -> Option<(Vec<ArrayRef>, usize)> {
    // The shape first: every line with the right number of fields (all read as text).
    let text = Arc::new(Schema::new(
        payload_schema
            .fields()
            .iter()
            .map(|f| {
                datafusion::arrow::datatypes::Field::new(
                    f.name(),
                    datafusion::arrow::datatypes::DataType::Utf8,
                    true,
                )
            })
            .collect::<Vec<_>>(),
    ));
    let all: Vec<usize> = (0..text.fields().len()).collect();
    let (_, rows) = decode_message(format, &text, &all, payload).ok()?;
    let out = (0..payload_schema.fields().len())
        .map(|i| {
            let null = || new_null_array(payload_schema.field(i).data_type(), rows);
            if !columns.contains(&i) {
                return null();
            }
            match decode_message(format, payload_schema, &[i], payload) {
                Ok((cols, n)) if n == rows => Arc::clone(&cols[i]),
                _ => null(),
            }
        })
        .collect();
    Some((out, rows))
}
