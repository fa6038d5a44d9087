//! The Kafka sink's writer: a view's changes as JSON messages, exactly once
//! ([`freshet_connector::Protocol::SelfDescribing`]).
//!
//! Each epoch's changes become messages in a fixed order, numbered from 0 within the epoch
//! (the view's rows at `CREATE SINK` are the messages of its first epoch). Every message
//! carries its sink, epoch and number in headers and goes to a partition its key (or place)
//! decides, so the same changes always make the same messages in the same partitions. The
//! producer is idempotent: each partition holds, after any failure or crash, a prefix of what
//! was sent to it. So the writer never needs to know whether a send finished: after a failure
//! or a restart it reads back the last of its messages in every partition
//! ([`SinkProducer::written`]), the server hands it the changelog from the sink's own
//! (possibly older) progress, and it sends again only the messages after those — nothing
//! twice, nothing lost.
//!
//! Formats: PLAIN writes each arriving row (append-only views, or with `force_append_only`);
//! UPSERT writes, per changed key, the key's row after the epoch or a tombstone; DEBEZIUM
//! writes `{"before", "after", "op"}` per changed key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use freshet_common::{KafkaSinkConfig, KafkaSinkFormat, PgError, SqlState, TableId};
use freshet_connector::{arrivals, Changes, Pending, Prepared, Protocol, SinkWriter};

use crate::sink::{SinkMessage, SinkProducer, Written};

/// How long connecting, and reading back what the topic holds, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The sink's name in its messages (`freshet_sink` header): unique per sink ever created.
pub fn tag(name: &str, id: TableId) -> String {
    format!("{name}/{}", id.0)
}

/// A producer session, with what the topic held of the sink when it opened.
type Session = (Arc<SinkProducer>, Arc<Written>);

/// Writes a view's changes to `cfg.topic`.
pub struct KafkaWriter {
    cfg: KafkaSinkConfig,
    /// Positions of the key columns in the view.
    keys: Vec<usize>,
    tag: String,
    /// The topic holds nothing of this sink yet (`CREATE SINK`): no read-back needed.
    fresh: bool,
    session: Mutex<Option<Session>>,
}

impl KafkaWriter {
    /// A writer that reads back what the topic holds of the sink at its first write.
    pub fn new(cfg: &KafkaSinkConfig, keys: Vec<usize>, tag: String) -> KafkaWriter {
        KafkaWriter {
            cfg: cfg.clone(),
            keys,
            tag,
            fresh: false,
            session: Mutex::new(None),
        }
    }

    /// A writer of a sink just created, whose tag the topic cannot hold yet.
    pub fn fresh(cfg: &KafkaSinkConfig, keys: Vec<usize>, tag: String) -> KafkaWriter {
        KafkaWriter {
            fresh: true,
            ..KafkaWriter::new(cfg, keys, tag)
        }
    }

    fn session(&self) -> Result<Session, PgError> {
        let mut s = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = s.as_ref() {
            return Ok(open.clone());
        }
        let cfg = &self.cfg;
        let producer = SinkProducer::connect(
            &cfg.bootstrap,
            &cfg.properties,
            &cfg.topic,
            &self.tag,
            CONNECT_TIMEOUT,
        )
        .map_err(|e| self.unavailable(&e))?;
        let written = if self.fresh {
            Written::new()
        } else {
            producer
                .written(CONNECT_TIMEOUT)
                .map_err(|e| self.unavailable(&e))?
        };
        let open = (Arc::new(producer), Arc::new(written));
        *s = Some(open.clone());
        Ok(open)
    }

    fn unavailable(&self, e: &dyn std::fmt::Display) -> PgError {
        PgError::new(
            SqlState::UNABLE_TO_CONNECT,
            format!(
                "Kafka sink to topic \"{}\" at {}: {e}",
                self.cfg.topic, self.cfg.bootstrap
            ),
        )
    }
}

impl SinkWriter for KafkaWriter {
    fn protocol(&self) -> Protocol {
        Protocol::SelfDescribing
    }

    /// Every epoch goes out as soon as it commits.
    fn due(&self, _: &Pending) -> bool {
        true
    }

    fn open(&self) -> Result<(), PgError> {
        self.session().map(drop)
    }

    fn write(&self, changes: &Changes, stop: &dyn Fn() -> bool) -> Result<Prepared, PgError> {
        let messages = encode(&self.cfg, &self.keys, changes)?;
        if messages.is_empty() {
            return Ok(Prepared::default());
        }
        let (producer, written) = self.session()?;
        let rows = producer
            .send(&messages, &written, stop)
            .map_err(|e| self.unavailable(&e))?;
        Ok(Prepared {
            rows,
            parts: Vec::new(),
        })
    }

    fn reset(&self) {
        *self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// The messages of the changes, epoch by epoch, in their fixed order.
fn encode(
    cfg: &KafkaSinkConfig,
    keys: &[usize],
    changes: &Changes,
) -> Result<Vec<SinkMessage>, PgError> {
    let all: Vec<usize> = (0..changes.rows.num_columns()).collect();
    let mut out = Vec::new();
    for (epoch, range) in changes.by_epoch() {
        let rows = changes.rows.slice(range.start, range.len());
        let diffs = &changes.diffs[range];
        let message = |seq: usize, key: Option<Vec<u8>>, value: Option<Vec<u8>>| SinkMessage {
            key,
            value,
            epoch,
            seq: seq as u64,
        };
        match cfg.format {
            KafkaSinkFormat::Plain => {
                // Only forced sinks see retractions (checked at CREATE): they drop them.
                let rows = arrivals(&rows, diffs).map_err(internal)?;
                let values = json_lines(&rows, &all)?;
                let mut key_values = if keys.is_empty() {
                    Vec::new()
                } else {
                    json_lines(&rows, keys)?
                }
                .into_iter();
                for (seq, v) in values.into_iter().enumerate() {
                    out.push(message(seq, key_values.next(), Some(v)));
                }
            }
            KafkaSinkFormat::Upsert | KafkaSinkFormat::Debezium => {
                let values = json_lines(&rows, &all)?;
                let key_values = json_lines(&rows, keys)?;
                // Per key (in key order): the row that left and the row that arrived.
                let mut by_key: BTreeMap<&[u8], (Option<usize>, Option<usize>)> = BTreeMap::new();
                for (i, w) in diffs.iter().enumerate() {
                    let slot = by_key.entry(key_values[i].as_slice()).or_default();
                    if *w > 0 {
                        slot.1 = Some(i);
                    } else {
                        slot.0 = Some(i);
                    }
                }
                for (seq, (key, (before, after))) in by_key.into_iter().enumerate() {
                    let value = match cfg.format {
                        KafkaSinkFormat::Upsert => after.map(|i| values[i].clone()),
                        _ => Some(debezium(
                            before.map(|i| &values[i][..]),
                            after.map(|i| &values[i][..]),
                        )),
                    };
                    out.push(message(seq, Some(key.to_vec()), value));
                }
            }
        }
    }
    Ok(out)
}

/// A Debezium change event's value.
fn debezium(before: Option<&[u8]>, after: Option<&[u8]>) -> Vec<u8> {
    let op = match (before, after) {
        (None, _) => "c",
        (Some(_), Some(_)) => "u",
        (Some(_), None) => "d",
    };
    let mut v =
        Vec::with_capacity(64 + before.map_or(4, <[u8]>::len) + after.map_or(4, <[u8]>::len));
    v.extend_from_slice(b"{\"before\":");
    v.extend_from_slice(before.unwrap_or(b"null"));
    v.extend_from_slice(b",\"after\":");
    v.extend_from_slice(after.unwrap_or(b"null"));
    v.extend_from_slice(format!(",\"op\":\"{op}\"}}").as_bytes());
    v
}

/// Each row's `columns` as one JSON object (NULLs written as null).
fn json_lines(rows: &RecordBatch, columns: &[usize]) -> Result<Vec<Vec<u8>>, PgError> {
    if rows.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let projected = rows.project(columns).map_err(internal)?;
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(Vec::new());
    writer
        .write(&projected)
        .and_then(|()| writer.finish())
        .map_err(internal)?;
    let text = writer.into_inner();
    Ok(text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

fn internal(e: impl std::fmt::Display) -> PgError {
    PgError::internal(e.to_string())
}
