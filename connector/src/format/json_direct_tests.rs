//! The one-pass decoder against the general one (pruning + arrow-json): over generated and
//! mangled messages, every batch the one-pass decoder takes must come out exactly as the
//! general decoder makes it (rows, values, refused messages and their words).

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};

use bytes::Bytes;

use super::*;

fn payload() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("n", DataType::Int32, true),
        Field::new("s", DataType::Int16, true),
        Field::new("f", DataType::Float64, true),
        Field::new("r", DataType::Float32, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("t", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new(
            "tz",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new("extra", DataType::Utf8, true),
        Field::new(
            "user",
            DataType::Struct(Fields::from(vec![Field::new("name", DataType::Utf8, true)])),
            true,
        ),
    ]))
}

const VALUES: &[&str] = &[
    "null",
    "0",
    "-0",
    "7",
    "-12",
    "32767",
    "32768",
    "-32769",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "123456789012345678",
    "1234567890123456789",
    "1.5",
    "2.0",
    "1e2",
    "-1E-2",
    "1e400",
    "3.4028236e38",
    "0.1",
    "true",
    "false",
    "\"\"",
    "\"12\"",
    "\"abc\"",
    "\"a\\\"b\\\\c\\n\\u00e9\\ud83c\\udf89\"",
    "\"\\ud800\"",
    "\"ünï ✓\"",
    "\"2026-01-01 00:00:00.000123\"",
    "\"2024-01-02T03:04:05Z\"",
    "\"2024-01-02T03:04:05+02:00\"",
    "\"2024-13-02\"",
    "\"\\u0032024-01-01\"",
    "{}",
    "{\"name\":\"x\"}",
    "[1,2]",
    "[]",
    "1700000000",
    "1700000000.5",
];

const KEYS: &[&str] = &[
    "id", "n", "s", "f", "r", "b", "t", "ts", "tz", "extra", "user", "zz",
];

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn message(rng: &mut Lcg) -> String {
    let fields = rng.below(6);
    let mut parts = Vec::new();
    for _ in 0..fields {
        let key = KEYS[rng.below(KEYS.len())];
        let value = VALUES[rng.below(VALUES.len())];
        let gap = [" ", "", "\n\t"][rng.below(3)];
        parts.push(format!("\"{key}\"{gap}:{gap}{value}"));
    }
    let mut m = format!("{{{}}}", parts.join(","));
    // Some mangled: a byte removed, replaced or added.
    match rng.below(10) {
        0 if !m.is_empty() => {
            let at = rng.below(m.len());
            if m.is_char_boundary(at) && m.is_char_boundary(at + 1) {
                m.remove(at);
            }
        }
        1 => {
            let at = rng.below(m.len() + 1);
            if m.is_char_boundary(at) {
                m.insert(at, [',', '"', '}', '{', 'x', ' ', ':', '\\'][rng.below(8)]);
            }
        }
        2 => m.push_str([" ", "{}", "x", "\n"][rng.below(4)]),
        3 => {
            m = format!(
                "\"{{\\\"i\\u0064\\\"\":{}}}",
                VALUES[rng.below(VALUES.len())]
            )
        }
        _ => {}
    }
    m
}

fn messages(texts: &[String]) -> Vec<Message> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| Message {
            partition: 0,
            offset: i as i64,
            timestamp_ms: None,
            key: None,
            payload: Some(Bytes::copy_from_slice(t.as_bytes())),
        })
        .collect()
}

/// Compares both decoders over `msgs`; whether the one-pass one took them.
fn same(format: &JsonFormat, msgs: &[Message]) -> bool {
    let direct = format.direct.as_ref().expect("a one-pass decoder");
    let Some(fast) = direct.decode(msgs).unwrap() else {
        return false;
    };
    let general = format.decode_general(msgs).unwrap();
    let texts: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(m.bytes()).into_owned())
        .collect();
    assert_eq!(fast.rows, general.rows, "{texts:?}");
    let refused = |p: &Payloads| -> Vec<(i64, String)> {
        p.bad.iter().map(|b| (b.offset, b.error.clone())).collect()
    };
    assert_eq!(refused(&fast), refused(&general), "{texts:?}");
    assert_eq!(fast.columns.len(), general.columns.len(), "{texts:?}");
    for (i, (a, b)) in fast.columns.iter().zip(&general.columns).enumerate() {
        assert_eq!(a.data_type(), b.data_type(), "column {i}");
        assert_eq!(a.to_data(), b.to_data(), "column {i}: {texts:?}");
    }
    true
}

fn formats() -> Vec<JsonFormat> {
    let all: Vec<usize> = (0..9).collect();
    [all, vec![0, 7], vec![6], vec![2, 4, 5, 8]]
        .into_iter()
        .map(|cols| {
            JsonFormat::new(
                payload(),
                &JsonOptions::default(),
                Selection::columns_whole(&cols),
            )
        })
        .collect()
}

#[test]
fn one_pass_decoding_equals_the_general_decoder() {
    let mut rng = Lcg(7);
    for format in formats() {
        let (mut taken, mut batches) = (0, 0);
        for _ in 0..3000 {
            let texts = vec![message(&mut rng)];
            batches += 1;
            taken += usize::from(same(&format, &messages(&texts)));
        }
        // Batches of several messages, some refused among them.
        for _ in 0..400 {
            let texts: Vec<String> = (0..1 + rng.below(8)).map(|_| message(&mut rng)).collect();
            batches += 1;
            taken += usize::from(same(&format, &messages(&texts)));
        }
        assert!(taken * 4 > batches, "taken {taken} of {batches}");
    }
}

#[test]
fn the_shapes_it_takes() {
    let f = |cols: &[usize]| {
        JsonFormat::new(
            payload(),
            &JsonOptions::default(),
            Selection::columns_whole(cols),
        )
    };
    assert!(f(&[0, 6, 7]).direct.is_some());
    // A struct column, or a raw JSON column, goes the general way.
    assert!(f(&[0, 10]).direct.is_none());
    let raw = JsonOptions {
        raw_json_columns: vec![9],
        ..JsonOptions::default()
    };
    assert!(
        JsonFormat::new(payload(), &raw, Selection::columns_whole(&[0, 9]))
            .direct
            .is_none()
    );
    let fmt = f(&[0, 6]);
    let took = |t: &str| {
        fmt.direct
            .as_ref()
            .unwrap()
            .decode(&messages(&[t.to_string()]))
            .unwrap()
            .is_some()
    };
    assert!(took(r#"{"id": 1, "t": "a\nb", "x": [1, {"y": 2}]}"#));
    assert!(took(r#"{"id": 1.5}"#)); // refused, with the rule's words
    assert!(took(r#"{"id" 1}"#)); // refused by the scanner
    assert!(!took(r#"{"id": "1"}"#));
    assert!(!took(r#"{"id": 1, "id": 2}"#));
    assert!(!took(r#"{"i\u0064": 1}"#));
    assert!(!took(r#"{"t": {"a": 1}}"#));
}
