//! The decoder's tests: JSON messages.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};

use bytes::Bytes;

use super::*;
use crate::format::{Encoding, JsonOptions};

fn msg(offset: i64, payload: &str) -> Message {
    Message {
        partition: 0,
        offset,
        timestamp_ms: Some(1_700_000_000_000),
        key: None,
        payload: Some(Bytes::copy_from_slice(payload.as_bytes())),
    }
}

fn decoder() -> Decoder {
    let payload = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("text", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
    ]));
    let mut fields: Vec<Field> = payload
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("off", DataType::Int64, true));
    Decoder::new(
        Encoding::Json(JsonOptions::default()),
        payload,
        vec![IncludeKind::Offset],
        Arc::new(Schema::new(fields)),
    )
}

#[test]
fn json_rows_know_their_messages() {
    let msgs = vec![
        msg(0, r#"{"id": 1}"#),
        msg(1, r#"not json"#),
        msg(2, r#"{"id": "abc"}"#),
        msg(3, r#"{"id": 4}"#),
    ];
    let (batch, bad, origins) = decoder().decode_traced(&msgs).unwrap();
    assert_eq!(batch.unwrap().num_rows(), 2);
    assert_eq!(bad.len(), 2);
    assert_eq!(origins, vec![(0, 0), (0, 3)]);
}

#[test]
fn good_and_bad_messages_are_separated() {
    let msgs = vec![
        msg(0, r#"{"id": 1, "text": "a", "extra": {"x": [1]}}"#),
        msg(1, r#"not json"#),
        msg(2, r#"{"id": 2"#),
        msg(3, r#"[1, 2]"#),
        msg(4, r#"{"id": "abc"}"#),
        msg(5, r#"{"text": 42, "ts": "2024-01-02T03:04:05Z"}"#),
        msg(6, ""),
        msg(7, r#"{"id": 7} {"id": 8}"#),
        msg(8, "{\n \"id\": 9\n}\n"),
    ];
    let (batch, bad) = decoder().decode(&msgs).unwrap();
    let batch = batch.unwrap();
    let offsets: Vec<i64> = batch
        .column(3)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(offsets, vec![0, 5, 8]);
    let ids = batch.column(0).as_primitive::<Int64Type>();
    assert_eq!(ids.value(0), 1);
    assert!(ids.is_null(1));
    assert_eq!(ids.value(2), 9);
    assert_eq!(batch.column(1).as_string::<i32>().value(1), "42");
    assert!(!batch.column(2).is_null(1));
    let bad_offsets: Vec<i64> = bad.iter().map(|b| b.offset).collect();
    assert_eq!(bad_offsets, vec![1, 2, 3, 4, 6, 7], "{bad:?}");
    assert!(bad.iter().all(|b| !b.error.is_empty()));
}

#[test]
fn raw_json_columns_take_any_value() {
    let payload = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("doc", DataType::Utf8, true),
    ]));
    let d = raw_json_decoder(payload);
    let msgs = vec![
        msg(0, r#"{"id": 1, "doc": {"a": [1, {"b": null}]}}"#),
        msg(1, r#"{"id": 2, "doc": "text"}"#),
        msg(2, r#"{"id": "bad", "doc": 1}"#),
        msg(3, r#"{"id": 4}"#),
        msg(4, r#"{"id": 5, "doc": 2.5}"#),
    ];
    let (batch, bad) = d.decode(&msgs).unwrap();
    let batch = batch.unwrap();
    assert_eq!(bad.len(), 1);
    let docs = batch.column(1).as_string::<i32>();
    assert_eq!(docs.value(0), r#"{"a":[1,{"b":null}]}"#);
    assert_eq!(docs.value(1), r#""text""#);
    assert!(docs.is_null(2));
    assert_eq!(docs.value(3), "2.5");
    let ids = batch.column(0).as_primitive::<Int64Type>();
    assert_eq!(ids.values().to_vec(), vec![1, 2, 4, 5]);
}

#[test]
fn a_raw_json_value_serde_refuses_is_set_aside_alone() {
    let payload = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("doc", DataType::Utf8, true),
    ]));
    let d = raw_json_decoder(payload);
    let deep = format!(
        r#"{{"id": 3, "doc": {}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let msgs = vec![
        msg(0, r#"{"id": 1, "doc": 1}"#),
        msg(1, r#"{"id": 2, "doc": 1e400}"#),
        msg(2, &deep),
        msg(3, r#"{"id": 4, "doc": [1]}"#),
    ];
    let (batch, bad) = d.decode(&msgs).unwrap();
    let offsets: Vec<i64> = bad.iter().map(|b| b.offset).collect();
    assert_eq!(offsets, vec![1, 2]);
    let ids = batch
        .unwrap()
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(ids, vec![1, 4]);
}

#[test]
fn unselected_columns_are_null_and_unchecked_and_lenient_keeps_rows() {
    let d = decoder().with_columns(&[1]);
    let msgs = vec![
        msg(0, r#"{"id": "not a number", "text": "a"}"#),
        msg(1, r#"{"id": 2, "text": {"no": 1}}"#),
        msg(2, "oops"),
    ];
    let (batch, bad) = d.decode(&msgs).unwrap();
    let batch = batch.unwrap();
    assert_eq!(batch.num_rows(), 1);
    assert!(batch.column(0).is_null(0));
    assert_eq!(batch.column(1).as_string::<i32>().value(0), "a");
    assert_eq!(bad.iter().map(|b| b.offset).collect::<Vec<_>>(), vec![1, 2]);
    // A re-read with every column: rows stay, fields that do not convert are NULL.
    let full = decoder().decode_lenient(&msgs[..2]).unwrap().unwrap();
    assert_eq!(full.num_rows(), 2);
    let ids = full.column(0).as_primitive::<Int64Type>();
    let texts = full.column(1).as_string::<i32>();
    let offs = full.column(3).as_primitive::<Int64Type>();
    for i in 0..2 {
        match offs.value(i) {
            0 => assert!(ids.is_null(i) && texts.value(i) == "a"),
            _ => assert!(ids.value(i) == 2 && texts.is_null(i)),
        }
    }
}

/// A decoder whose column 1 takes any JSON value.
fn raw_json_decoder(payload: SchemaRef) -> Decoder {
    let options = JsonOptions {
        raw_json_columns: vec![1],
        ..JsonOptions::default()
    };
    Decoder::new(Encoding::Json(options), Arc::clone(&payload), vec![], payload)
}
