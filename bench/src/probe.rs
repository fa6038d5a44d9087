//! What the Kafka measurements share: producing while the producer's queue is full, a
//! consumer that reads a topic from its start, and a marker polled until a query sees it.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_postgres::{Client, Statement};

/// Sends `record`, waiting while the producer's queue is full.
pub fn send<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
    p: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, K, P>,
) {
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => panic!("produce failed: {e}"),
        }
    }
}

/// A consumer of `topic`'s `partitions`, each from its beginning, fetching as soon as
/// messages arrive.
pub fn consumer_from_start(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        // librdkafka's default backs off 1 s after a full fetch queue.
        .set("fetch.queue.backoff.ms", "1")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// Polls `stmt` (a count of the rows with id `$1`) every 0.5 ms until it sees marker `id`;
/// the time since `t0`.
pub async fn until_visible(
    c: &Client,
    stmt: &Statement,
    id: i64,
    t0: Instant,
) -> anyhow::Result<Duration> {
    loop {
        let n: i64 = c.query_one(stmt, &[&id]).await?.get(0);
        if n > 0 {
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "marker {id} never became visible"
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// Messages the server has read and committed, over every source's partitions.
pub async fn messages_read(c: &Client) -> anyhow::Result<u64> {
    let row = c
        .query_one(
            "SELECT CAST(coalesce(sum(\"offset\"), 0) AS BIGINT) FROM freshet_internal.source_progress",
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}
