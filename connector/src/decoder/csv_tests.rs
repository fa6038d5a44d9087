//! The decoder's tests: CSV payloads, decoded through the same decoder.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};

use std::sync::Arc;

use super::*;
use crate::format::csv::CsvOptions;
use crate::format::Encoding;
use datafusion::arrow::datatypes::Schema;

fn msg(offset: i64, payload: &str) -> Message {
    Message {
        partition: 0,
        offset,
        timestamp_ms: None,
        key: None,
        payload: Some(bytes::Bytes::copy_from_slice(payload.as_bytes())),
    }
}

fn decoder(header: bool) -> Decoder {
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
    let csv = CsvOptions {
        delimiter: b',',
        header,
    };
    Decoder::new(
        Encoding::Csv(csv),
        Arc::clone(&payload),
        vec![freshet_common::IncludeKind::Offset],
        Arc::new(Schema::new(fields)),
    )
}

#[test]
fn each_row_knows_its_message() {
    let msgs = vec![msg(0, "1,a\n2,b"), msg(1, "x,c"), msg(2, "3,c")];
    let (_, _, origins) = decoder(false).decode_traced(&msgs).unwrap();
    assert_eq!(origins, vec![(0, 0), (0, 0), (0, 2)]);
    // Leniently (a re-read): the bad message's row comes too, fields it cannot convert NULL.
    let (batch, origins) = decoder(false).decode_lenient_traced(&msgs).unwrap();
    assert_eq!(batch.unwrap().num_rows(), 4);
    assert_eq!(origins, vec![(0, 0), (0, 0), (0, 1), (0, 2)]);
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
