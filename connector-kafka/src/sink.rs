//! Writing a sink's messages to a Kafka topic exactly once, with any Kafka-protocol broker.
//!
//! Every message carries its place in the sink's output — the epoch it belongs to and its
//! sequence number within that epoch (headers `freshet_sink`, `freshet_epoch`,
//! `freshet_seq`) — and goes to a partition chosen from its key (murmur2, as Kafka's Java
//! clients choose) or, without a key, from its place. The idempotent producer writes each
//! partition's messages in order and never twice within a session, so after any failure or
//! crash every partition holds a prefix of what was sent to it. [`SinkProducer::written`]
//! reads the last of the sink's messages in every partition: the destination itself says
//! what it holds, and the sink skips those messages when it sends again.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::{Error, Result};

/// One message of a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkMessage {
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
    pub epoch: u64,
    pub seq: u64,
}

/// Per partition (by index), the place (epoch, seq) of the sink's last message in it.
pub type Written = Vec<Option<(u64, u64)>>;

/// Counts a session's acknowledged messages (waking whoever waits for them once their count
/// is reached) and records its first delivery failure.
#[derive(Default)]
struct SinkContext {
    failed: Mutex<Option<String>>,
    settled: Mutex<Settled>,
    changed: Condvar,
}

#[derive(Default)]
struct Settled {
    /// Messages delivered or failed so far.
    count: u64,
    /// The count a sender waits for (one wake-up per send, not per message).
    awaited: u64,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let failed = result.is_err();
        if let Err((e, _)) = result {
            let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(|| e.to_string());
        }
        let mut settled = self.settled.lock().unwrap_or_else(|p| p.into_inner());
        settled.count += 1;
        if failed || settled.count == settled.awaited {
            self.changed.notify_all();
        }
    }
}

impl SinkContext {
    fn settled(&self) -> u64 {
        self.settled.lock().unwrap_or_else(|p| p.into_inner()).count
    }

    /// Waits until `target` messages are settled, or a failure, or `stop`.
    fn wait_settled(&self, target: u64, stop: &dyn Fn() -> bool) -> Result<()> {
        let mut settled = self.settled.lock().unwrap_or_else(|p| p.into_inner());
        settled.awaited = target;
        while settled.count < target {
            if self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
            {
                break;
            }
            if stop() {
                return Err(Error::Kafka("stopped".into()));
            }
            settled = self
                .changed
                .wait_timeout(settled, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }
}

/// A sink's connection to its topic: one idempotent producer session.
pub struct SinkProducer {
    producer: ThreadedProducer<SinkContext>,
    config: ClientConfig,
    topic: String,
    /// This sink's name in its messages' `freshet_sink` header.
    tag: String,
    partitions: i32,
}

impl SinkProducer {
    /// Connects to `bootstrap` and reads the topic's partitions (auto-created where the
    /// broker does that), within `timeout`.
    pub fn connect(
        bootstrap: &str,
        properties: &[(String, String)],
        topic: &str,
        tag: &str,
        timeout: Duration,
    ) -> Result<SinkProducer> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            // A message not acknowledged within 10 s fails the session: the sink reports it,
            // reconnects and reads back what the topic holds (librdkafka's default waits 5 min).
            .set("message.timeout.ms", "10000")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "2000");
        for (k, v) in properties {
            config.set(k, v);
        }
        let mut producer_config = config.clone();
        // Set last: exactly-once depends on them.
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all");
        let producer: ThreadedProducer<SinkContext> = producer_config
            .create_with_context(SinkContext::default())
            .map_err(kafka)?;
        let md = producer
            .client()
            .fetch_metadata(Some(topic), timeout)
            .map_err(kafka)?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| Error::Kafka(format!("topic \"{topic}\" not found")))?;
        if let Some(e) = t.error() {
            return Err(Error::Kafka(format!(
                "topic \"{topic}\": {}",
                RDKafkaErrorCode::from(e)
            )));
        }
        let partitions = t.partitions().len() as i32;
        if partitions == 0 {
            return Err(Error::Kafka(format!("topic \"{topic}\" has no partitions")));
        }
        Ok(SinkProducer {
            producer,
            config,
            topic: topic.to_owned(),
            tag: tag.to_owned(),
            partitions,
        })
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The partition `m` goes to: by its key as Kafka's Java clients place keys, else by its
    /// place in the output.
    pub fn partition_of(&self, m: &SinkMessage) -> i32 {
        let n = self.partitions as u32;
        match &m.key {
            Some(k) => ((murmur2(k) & 0x7fff_ffff) % n) as i32,
            None => (m.epoch.wrapping_add(m.seq) % u64::from(n)) as i32,
        }
    }

    /// The place of the sink's last message in every partition, read back from the topic
    /// (newest first, in windows, past messages other producers wrote), within `timeout`.
    pub fn written(&self, timeout: Duration) -> Result<Written> {
        let deadline = Instant::now() + timeout;
        let mut config = self.config.clone();
        config
            .set("group.id", "freshet-sink")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_uncommitted");
        let consumer: BaseConsumer = config.create().map_err(kafka)?;
        let mut out = Vec::with_capacity(self.partitions as usize);
        for p in 0..self.partitions {
            let left = deadline.saturating_duration_since(Instant::now());
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, p, left)
                .map_err(kafka)?;
            let mut end = high;
            let mut found = None;
            while found.is_none() && end > low {
                let start = (end - WINDOW).max(low);
                found = self.last_in(&consumer, p, start, end, deadline)?;
                end = start;
            }
            out.push(found);
        }
        Ok(out)
    }

    /// The place of the sink's last message in `start..end` of partition `p`.
    fn last_in(
        &self,
        consumer: &BaseConsumer,
        p: i32,
        start: i64,
        end: i64,
        deadline: Instant,
    ) -> Result<Option<(u64, u64)>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p, Offset::Offset(start))
            .map_err(kafka)?;
        consumer.assign(&tpl).map_err(kafka)?;
        let mut last = None;
        loop {
            if Instant::now() > deadline {
                return Err(Error::Kafka(format!(
                    "reading back topic \"{}\" partition {p} timed out",
                    self.topic
                )));
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(last),
                Some(Err(e)) => return Err(kafka(e)),
                Some(Ok(m)) => {
                    if m.offset() >= end {
                        return Ok(last);
                    }
                    if let Some(place) = m.headers().and_then(|h| self.place(h)) {
                        last = Some(place);
                    }
                    if m.offset() + 1 >= end {
                        return Ok(last);
                    }
                }
            }
        }
    }

    /// (epoch, seq) of a message of this sink.
    fn place(&self, h: &impl Headers) -> Option<(u64, u64)> {
        let mut sink = None;
        let mut epoch = None;
        let mut seq = None;
        for header in h.iter() {
            let v = header.value?;
            match header.key {
                "freshet_sink" => sink = Some(v),
                "freshet_epoch" => epoch = std::str::from_utf8(v).ok()?.parse().ok(),
                "freshet_seq" => seq = std::str::from_utf8(v).ok()?.parse().ok(),
                _ => {}
            }
        }
        (sink? == self.tag.as_bytes()).then_some((epoch?, seq?))
    }

    /// Sends `messages` (in order), skipping those `written` says the topic holds, and waits
    /// until every one is acknowledged. Returns how many it sent. Any failure leaves the
    /// session unusable: reconnect, read [`SinkProducer::written`] again, send again.
    /// `stop` is asked while waiting.
    pub fn send(
        &self,
        messages: &[SinkMessage],
        written: &Written,
        stop: &dyn Fn() -> bool,
    ) -> Result<u64> {
        let mut sent = 0;
        let before = self.producer.context().settled();
        for m in messages {
            let p = self.partition_of(m);
            if written
                .get(p as usize)
                .copied()
                .flatten()
                .is_some_and(|w| (m.epoch, m.seq) <= w)
            {
                continue;
            }
            let (epoch, seq) = (m.epoch.to_string(), m.seq.to_string());
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "freshet_sink",
                    value: Some(self.tag.as_bytes()),
                })
                .insert(Header {
                    key: "freshet_epoch",
                    value: Some(epoch.as_bytes()),
                })
                .insert(Header {
                    key: "freshet_seq",
                    value: Some(seq.as_bytes()),
                });
            let mut record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&self.topic).partition(p).headers(headers);
            if let Some(k) = &m.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &m.value {
                record = record.payload(v.as_slice());
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        self.check()?;
                        if stop() {
                            return Err(Error::Kafka("stopped".into()));
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(kafka(e)),
                }
            }
            sent += 1;
        }
        // Acknowledged as the producer's poll thread serves delivery reports (a flush would
        // poll in 100 ms steps).
        self.producer.context().wait_settled(before + sent, stop)?;
        self.check()?;
        Ok(sent)
    }

    /// Fails once any message of the session failed.
    fn check(&self) -> Result<()> {
        let failed = self
            .producer
            .context()
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match failed {
            Some(e) => Err(Error::Kafka(format!("delivery failed: {e}"))),
            None => Ok(()),
        }
    }
}

/// Messages read back per step when looking for a sink's last message.
const WINDOW: i64 = 1000;

/// Kafka's murmur2 (the Java clients' default partitioner hashes keys with it).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

fn kafka(e: KafkaError) -> Error {
    Error::Kafka(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    #[test]
    fn murmur2_is_kafkas() {
        // Kafka's own test vectors (clients' UtilsTest), as signed 32-bit values.
        for (data, want) in [
            (&b"21"[..], -973_932_308_i32),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            assert_eq!(
                murmur2(data) as i32,
                want,
                "{:?}",
                std::str::from_utf8(data)
            );
        }
    }
}
