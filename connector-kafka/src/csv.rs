//! CSV payloads → Arrow (arrow-csv), one or more lines per message, only the selected columns
//! parsed. A message with the wrong number of fields or a field that does not parse as its
//! column's type is bad as a whole; [`decode_fieldwise`] is the lenient per-field form used by
//! re-reads.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::csv::reader::ReaderBuilder;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;

use crate::json::clean_error;

/// How messages are split into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvFormat {
    pub delimiter: u8,
    /// The first line of every message is a header, skipped.
    pub header: bool,
}

/// The records of one message's payload (its header line dropped).
fn body<'a>(format: CsvFormat, payload: &'a [u8]) -> &'a [u8] {
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
    format: CsvFormat,
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
        let n = d.decode(rest).map_err(|e| clean_error(&e))?;
        if n == 0 {
            break;
        }
        rest = &rest[n..];
    }
    d.decode(&[]).map_err(|e| clean_error(&e))?;
    let batch = match d.flush().map_err(|e| clean_error(&e))? {
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
    format: CsvFormat,
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

/// A batch of `rows` rows from per-column arrays (also when there are no columns).
pub fn batch(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    rows: usize,
) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type};

    use super::*;
    use crate::json::{JsonDecoder, Message};

    fn msg(offset: i64, payload: &str) -> Message {
        Message {
            partition: 0,
            offset,
            timestamp_ms: None,
            key: None,
            payload: Some(bytes::Bytes::copy_from_slice(payload.as_bytes())),
        }
    }

    fn decoder(header: bool) -> JsonDecoder {
        let payload = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let mut fields: Vec<Field> = payload
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("off", DataType::Int64, true));
        JsonDecoder::new(
            Arc::clone(&payload),
            vec![freshet_common::IncludeKind::Offset],
            Arc::new(Schema::new(fields)),
        )
        .with_csv(CsvFormat {
            delimiter: b',',
            header,
        })
    }

    #[test]
    fn lines_are_rows_and_bad_messages_are_isolated() {
        let msgs = vec![
            msg(0, "1,a\n2,b"),
            msg(1, "x,c"),
            msg(2, "3"),
            msg(3, "4,\"d, e\"\n"),
        ];
        let (batch, bad) = decoder(false).decode(&msgs).unwrap();
        let batch = batch.unwrap();
        let ids: Vec<i64> = batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, vec![1, 2, 4]);
        assert_eq!(batch.column(1).as_string::<i32>().value(2), "d, e");
        let offs: Vec<i64> = batch
            .column(2)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(offs, vec![0, 0, 3]);
        assert_eq!(bad.iter().map(|b| b.offset).collect::<Vec<_>>(), vec![1, 2]);
        // Only `name` decoded: "x" is not checked; a re-read of everything makes it NULL.
        let (batch, bad) = decoder(false).with_columns(&[1]).decode(&msgs).unwrap();
        assert_eq!(batch.unwrap().num_rows(), 4);
        assert_eq!(bad.len(), 1);
        let lenient = decoder(false).decode_lenient(&msgs[1..2]).unwrap().unwrap();
        assert!(lenient.column(0).is_null(0));
        assert_eq!(lenient.column(1).as_string::<i32>().value(0), "c");
        // A header line per message is skipped.
        let (batch, _) = decoder(true).decode(&[msg(0, "id,name\n7,g")]).unwrap();
        assert_eq!(
            batch
                .unwrap()
                .column(0)
                .as_primitive::<Int64Type>()
                .value(0),
            7
        );
    }
}
