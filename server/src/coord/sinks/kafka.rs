//! The Kafka sink: a view's changes as JSON messages, exactly once.
//!
//! Each epoch's changes become messages in a fixed order, numbered from 0 within the epoch
//! (the view's rows at `CREATE SINK` are the messages of its first epoch). Every message
//! carries its sink, epoch and number in headers and goes to a partition its key (or place)
//! decides, so the same changes always make the same messages in the same partitions. The
//! producer is idempotent: each partition holds, after any failure or crash, a prefix of what
//! was sent to it. So the sink never needs to know whether a send finished: after a failure
//! or a restart it reads back the last of its messages in every partition
//! (`SinkProducer::written`), reads the changelog from its own (possibly older) progress, and
//! sends again only the messages after those — nothing twice, nothing lost. Its progress in
//! RocksDB only bounds how far back it re-reads.
//!
//! Formats: PLAIN writes each arriving row (append-only views, or with `force_append_only`);
//! UPSERT writes, per changed key, the key's row after the epoch or a tombstone; DEBEZIUM
//! writes `{"before", "after", "op"}` per changed key.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use freshet_common::{Datum, KafkaSinkConfig, KafkaSinkFormat, PgError, SqlState};
use freshet_connector_kafka::sink::{SinkMessage, SinkProducer, Written};
use freshet_dataflow::MaterializedView;
use tokio::sync::watch;

use super::{changelog_rows, gather, record_progress, retracting_view, wait_to_retry, SinkRuntime};
use crate::coord::subscriptions::EpochRows;
use crate::coord::engine::Engine;

/// How long `CREATE SINK` waits for the broker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `CREATE SINK` waits for its first messages to be acknowledged.
const FIRST_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The sink's name in its messages (`freshet_sink` header): unique per sink ever created.
pub(super) fn tag(name: &str, id: freshet_common::TableId) -> String {
    format!("{name}/{}", id.0)
}

/// Checks a Kafka sink's options against its view and the server's property policy; returns
/// the key columns' positions.
pub(super) fn check(
    engine: &Engine,
    cfg: &KafkaSinkConfig,
    view: &MaterializedView,
    from: &str,
) -> Result<Vec<usize>, PgError> {
    for (k, v) in &cfg.properties {
        engine.kafka_policy.check_producer(k, v).map_err(|e| {
            let state = match e {
                freshet_connector_kafka::Error::Forbidden(_) => SqlState::INSUFFICIENT_PRIVILEGE,
                _ => SqlState::INVALID_PARAMETER_VALUE,
            };
            PgError::new(state, e.to_string())
        })?;
    }
    if cfg.format == KafkaSinkFormat::Plain && !cfg.force_append_only && !view.is_append_only() {
        return Err(retracting_view(
            from,
            "FORMAT UPSERT or DEBEZIUM with a primary_key",
        ));
    }
    cfg.primary_key
        .iter()
        .map(|c| {
            view.schema
                .fields()
                .iter()
                .position(|f| f.name() == c)
                .ok_or_else(|| {
                    PgError::new(
                        SqlState::UNDEFINED_COLUMN,
                        format!("column \"{c}\" of primary_key does not exist in \"{from}\""),
                    )
                })
        })
        .collect()
}

/// `CREATE SINK`: connects and writes the view's rows at `start` as the first epoch's
/// messages (bounded waits: a bad address or a broker that is down fails the statement).
pub(super) async fn write_first(
    cfg: &KafkaSinkConfig,
    schema: &SchemaRef,
    keys: &[usize],
    tag: &str,
    start: u64,
    rows: Vec<(Vec<Datum>, i64)>,
) -> Result<u64, PgError> {
    let messages = encode(cfg, schema, keys, &[changelog_rows(start, rows)])?;
    let (cfg, tag) = (cfg.clone(), tag.to_owned());
    blocking(move || {
        let producer = connect(&cfg, &tag)?;
        let deadline = std::time::Instant::now() + FIRST_WRITE_TIMEOUT;
        producer
            .send(&messages, &Written::new(), &|| {
                std::time::Instant::now() > deadline
            })
            .map_err(|e| unavailable(&cfg, &e))
    })
    .await
}

fn connect(cfg: &KafkaSinkConfig, tag: &str) -> Result<SinkProducer, PgError> {
    SinkProducer::connect(
        &cfg.bootstrap,
        &cfg.properties,
        &cfg.topic,
        tag,
        CONNECT_TIMEOUT,
    )
    .map_err(|e| unavailable(cfg, &e))
}

fn unavailable(cfg: &KafkaSinkConfig, e: &dyn std::fmt::Display) -> PgError {
    PgError::new(
        SqlState::UNABLE_TO_CONNECT,
        format!(
            "Kafka sink to topic \"{}\" at {}: {e}",
            cfg.topic, cfg.bootstrap
        ),
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PgError> + Send + 'static,
) -> Result<T, PgError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PgError::new(SqlState::INTERNAL_ERROR, e.to_string()))?
}

/// A running sink: reads the changelog after each commit and sends its epochs' messages;
/// on any failure reconnects, reads back what the topic holds, and sends the rest.
pub(super) async fn run(
    engine: Arc<Engine>,
    rt: Arc<SinkRuntime>,
    cfg: KafkaSinkConfig,
    mut stopped: watch::Receiver<bool>,
) {
    let Some(view) = engine.dataflows.get(rt.def.from) else {
        rt.set_status("failed: its view is not running");
        return;
    };
    let keys: Vec<usize> = cfg
        .primary_key
        .iter()
        .filter_map(|c| view.schema.fields().iter().position(|f| f.name() == c))
        .collect();
    let tag = tag(&rt.def.name, rt.def.id);
    let mut latest = engine.subscriptions.watch_latest();
    let mut read_through = rt.committed.load(Ordering::SeqCst);
    let mut pending: Vec<Arc<EpochRows>> = Vec::new();
    // Connected before the first changes come (a failure is retried at the first send).
    let mut session = open_session(&rt, &cfg, &tag).await.ok();
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stopped.borrow() {
            return;
        }
        let gathered = gather(&engine, &rt, &mut latest, &mut read_through);
        pending.extend(gathered.into_iter().filter(|e| !e.rows.is_empty()));
        if read_through > rt.committed.load(Ordering::SeqCst) {
            match send(
                &rt,
                &cfg,
                &view.schema,
                &keys,
                &tag,
                &pending,
                &mut session,
                &stopped,
            )
            .await
            {
                Ok(n) => {
                    rt.rows.fetch_add(n, Ordering::Relaxed);
                    pending.clear();
                    // The topic holds them. Progress only bounds what a restart re-reads
                    // (and skips by what the topic holds): failing to record it loses nothing.
                    if let Err(e) = record_progress(&engine, &rt, read_through) {
                        tracing::warn!(sink = %rt.def.name, error = %e, "recording sink progress failed");
                    }
                    backoff = Duration::from_millis(100);
                    rt.set_status("running");
                }
                Err(e) => {
                    session = None;
                    if !wait_to_retry(&rt, &e, &mut backoff, &mut stopped).await {
                        return;
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            r = latest.changed() => if r.is_err() { return },
            _ = stopped.changed() => return,
        }
    }
}

/// Sends the messages of `pending` through the session (opened first, with what the topic
/// already holds read back, when there is none); returns how many it sent.
#[allow(clippy::too_many_arguments)]
async fn send(
    rt: &SinkRuntime,
    cfg: &KafkaSinkConfig,
    schema: &SchemaRef,
    keys: &[usize],
    tag: &str,
    pending: &[Arc<EpochRows>],
    session: &mut Option<(Arc<SinkProducer>, Arc<Written>)>,
    stopped: &watch::Receiver<bool>,
) -> Result<u64, PgError> {
    if pending.is_empty() {
        return Ok(0);
    }
    let messages = encode(cfg, schema, keys, pending)?;
    if session.is_none() {
        *session = Some(open_session(rt, cfg, tag).await?);
    }
    let Some((producer, written)) = session.clone() else {
        return Ok(0);
    };
    let (cfg, stopped) = (cfg.clone(), stopped.clone());
    blocking(move || {
        producer
            .send(&messages, &written, &|| *stopped.borrow())
            .map_err(|e| unavailable(&cfg, &e))
    })
    .await
}

/// A producer session, with what the topic already holds of the sink read back.
async fn open_session(
    rt: &SinkRuntime,
    cfg: &KafkaSinkConfig,
    tag: &str,
) -> Result<(Arc<SinkProducer>, Arc<Written>), PgError> {
    rt.set_status("connecting");
    let (cfg, tag) = (cfg.clone(), tag.to_owned());
    let opened = blocking(move || {
        let producer = connect(&cfg, &tag)?;
        let written = producer
            .written(CONNECT_TIMEOUT)
            .map_err(|e| unavailable(&cfg, &e))?;
        Ok((Arc::new(producer), Arc::new(written)))
    })
    .await?;
    rt.set_status("running");
    Ok(opened)
}

/// The messages of `epochs`' changes, in their fixed order.
fn encode(
    cfg: &KafkaSinkConfig,
    schema: &SchemaRef,
    keys: &[usize],
    epochs: &[Arc<EpochRows>],
) -> Result<Vec<SinkMessage>, PgError> {
    let mut out = Vec::new();
    for e in epochs {
        let message = |seq: usize, key: Option<Vec<u8>>, value: Option<Vec<u8>>| SinkMessage {
            key,
            value,
            epoch: e.epoch,
            seq: seq as u64,
        };
        match cfg.format {
            KafkaSinkFormat::Plain => {
                let mut rows: Vec<Vec<Datum>> = Vec::new();
                for (row, w) in &e.rows {
                    // Only forced sinks see retractions (checked at CREATE): they drop them.
                    for _ in 0..(*w).max(0) {
                        rows.push(row.clone());
                    }
                }
                let values = json_lines(
                    &rows,
                    schema,
                    &(0..schema.fields().len()).collect::<Vec<_>>(),
                )?;
                let mut key_values = if keys.is_empty() {
                    Vec::new()
                } else {
                    json_lines(&rows, schema, keys)?
                }
                .into_iter();
                for (seq, v) in values.into_iter().enumerate() {
                    out.push(message(seq, key_values.next(), Some(v)));
                }
            }
            KafkaSinkFormat::Upsert | KafkaSinkFormat::Debezium => {
                let rows: Vec<Vec<Datum>> = e.rows.iter().map(|(r, _)| r.clone()).collect();
                let values = json_lines(
                    &rows,
                    schema,
                    &(0..schema.fields().len()).collect::<Vec<_>>(),
                )?;
                let key_values = json_lines(&rows, schema, keys)?;
                // Per key (in key order): the row that left and the row that arrived.
                let mut by_key: BTreeMap<&[u8], (Option<usize>, Option<usize>)> = BTreeMap::new();
                for (i, (_, w)) in e.rows.iter().enumerate() {
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
fn json_lines(
    rows: &[Vec<Datum>],
    schema: &SchemaRef,
    columns: &[usize],
) -> Result<Vec<Vec<u8>>, PgError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let projected = Arc::new(
        schema
            .project(columns)
            .map_err(|e| PgError::internal(e.to_string()))?,
    );
    let batch = freshet_sql::df_convert::rows_to_batch(rows, &projected, columns)
        .map_err(|e| freshet_sql::error::map_df_error(&e))?;
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(Vec::new());
    writer
        .write(&batch)
        .and_then(|()| writer.finish())
        .map_err(|e| PgError::internal(e.to_string()))?;
    let text = writer.into_inner();
    Ok(text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}
