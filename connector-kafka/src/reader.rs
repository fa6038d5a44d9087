//! Transport: reading a topic's partitions from given offsets, in batches, on a thread of its
//! own; partition discovery; watermarks and broker status; bounded replays for backfills.
//!
//! Offsets are never committed to the broker: the caller stores them with the state they
//! produced (one RocksDB write batch) and hands them back at restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use datafusion::arrow::array::RecordBatch;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use freshet_common::{KafkaSourceConfig, Startup};
use freshet_connector::{
    decode_batch, Decoder, Message, OffsetProblem, Origins, SharedDecoder, SourceBatch,
    SourceReader, SourceStatus, BEGINNING,
};

use crate::positions;
use crate::queue::{Queue, Raw};
use crate::{Error, Result};


/// Tuning of a reader.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Most messages in one batch.
    pub max_batch: usize,
    /// Once a batch has a message, how long it waits for more while none are at hand: past
    /// this it ends as soon as the consumer has nothing more (a caught-up source commits
    /// what it has, fresh)…
    pub quiet_wait: Duration,
    /// …and however fast messages keep coming, it ends this long after its first (a source
    /// reading a backlog commits in large epochs).
    pub max_wait: Duration,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            max_batch: 10_000,
            quiet_wait: Duration::from_millis(5),
            max_wait: Duration::from_millis(20),
        }
    }
}

/// What librdkafka does when a position is outside the log: a reader must be told
/// ([`positions`] decides), a replay or a start resolution may jump to the log start.
#[derive(Clone, Copy)]
enum OutOfRange {
    Report,
    Earliest,
}

fn client_config(opts: &KafkaSourceConfig, out_of_range: OutOfRange) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &opts.bootstrap)
        .set("group.id", "freshet")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // Freshness over fetch efficiency: a fetch returns within 10 ms (librdkafka's default
        // waits up to 500 ms). `properties.fetch.wait.max.ms` overrides it.
        .set("fetch.wait.max.ms", "10")
        // Refill the local fetch queue within 10 ms once it has room (librdkafka's default
        // backs off 1 s after a full queue, so a source read in bursts about once a second:
        // ~130–160k events/s wall clock however cheap its views, and p99 freshness in the
        // hundreds of ms). `properties.fetch.queue.backoff.ms` overrides it.
        .set("fetch.queue.backoff.ms", "10")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000");
    for (k, v) in &opts.properties {
        c.set(k, v);
    }
    // Set last: exactly-once depends on it, so no property overrides it.
    c.set(
        "auto.offset.reset",
        match out_of_range {
            OutOfRange::Report => "error",
            OutOfRange::Earliest => "earliest",
        },
    );
    c
}

fn consumer(opts: &KafkaSourceConfig) -> Result<BaseConsumer> {
    client_config(opts, OutOfRange::Earliest)
        .create()
        .map_err(kafka)
}

fn kafka(e: rdkafka::error::KafkaError) -> Error {
    Error::Kafka(e.to_string())
}

/// The topic's partitions, from the broker's metadata.
fn partitions(c: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<i32>> {
    let md = c.fetch_metadata(Some(topic), timeout).map_err(kafka)?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| Error::Kafka(format!("topic \"{topic}\" not found")))?;
    if let Some(e) = t.error() {
        return Err(Error::Kafka(format!(
            "topic \"{topic}\": {}",
            rdkafka::error::RDKafkaErrorCode::from(e)
        )));
    }
    let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ps.sort_unstable();
    Ok(ps)
}

/// Where a new source starts in each partition, resolved against the broker now (so
/// `latest` and timestamps mean "when the source was created", also after a restart).
pub fn resolve_start(opts: &KafkaSourceConfig, timeout: Duration) -> Result<BTreeMap<i32, i64>> {
    let c = consumer(opts)?;
    let ps = partitions(&c, &opts.topic, timeout)?;
    let mut out = BTreeMap::new();
    match opts.startup {
        Startup::Earliest => {
            for p in ps {
                out.insert(p, BEGINNING);
            }
        }
        Startup::Latest => {
            for p in ps {
                let (_, high) = c.fetch_watermarks(&opts.topic, p, timeout).map_err(kafka)?;
                out.insert(p, high);
            }
        }
        Startup::Timestamp(ms) => {
            let mut tpl = TopicPartitionList::new();
            for &p in &ps {
                tpl.add_partition_offset(&opts.topic, p, Offset::Offset(ms))
                    .map_err(kafka)?;
            }
            let found = c.offsets_for_times(tpl, timeout).map_err(kafka)?;
            for e in found.elements() {
                let off = match e.offset() {
                    Offset::Offset(o) => o,
                    // No message at or after the time: start at the end.
                    _ => {
                        c.fetch_watermarks(&opts.topic, e.partition(), timeout)
                            .map_err(kafka)?
                            .1
                    }
                };
                out.insert(e.partition(), off);
            }
        }
    }
    Ok(out)
}

fn offset(o: i64) -> Offset {
    if o == BEGINNING {
        Offset::Beginning
    } else {
        Offset::Offset(o)
    }
}

/// Buffers the messages of a batch are copied into: one allocation per many messages, not
/// one per message. Buffers grow from 64 KiB to 256 KiB, so small batches stay small — and no
/// larger: the allocator serves bigger blocks as fresh pages of their own, faulted in (and
/// zeroed by the kernel) anew for every batch.
#[derive(Default)]
struct Arena {
    buf: BytesMut,
    next: usize,
}

impl Arena {
    fn copy(&mut self, b: &[u8]) -> Bytes {
        if self.buf.capacity() - self.buf.len() < b.len() {
            self.next = (self.next * 2).clamp(64 << 10, 256 << 10);
            self.buf = BytesMut::with_capacity(self.next.max(b.len()));
        }
        self.buf.extend_from_slice(b);
        self.buf.split().freeze()
    }
}

/// Copies a message out of librdkafka's buffers (its key only when `key`).
fn detach(m: &Raw<'_>, arena: &mut Arena, key: bool) -> Message {
    let mut copy = |b: &[u8]| arena.copy(b);
    Message {
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp_ms(),
        key: if key { m.key().map(&mut copy) } else { None },
        payload: m.payload().map(&mut copy),
    }
}

/// A running reader: a consumer thread and a watcher thread (metadata and watermarks).
pub struct Reader {
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<SourceStatus>>,
    consumer: Arc<BaseConsumer>,
    topic: String,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Reader {
    /// Starts reading `opts.topic`: each partition in `positions` from its offset (the next
    /// one to read, or [`BEGINNING`]); partitions that appear later from their beginning.
    /// `sink` receives every batch on the reader's thread; returning false stops the reader.
    pub fn spawn(
        opts: &KafkaSourceConfig,
        decoder: Arc<SharedDecoder>,
        positions: BTreeMap<i32, i64>,
        config: ReaderConfig,
        mut sink: impl FnMut(SourceBatch) -> bool + Send + 'static,
    ) -> Result<Reader> {
        let consumer = Arc::new(
            client_config(opts, OutOfRange::Report)
                .create::<BaseConsumer>()
                .map_err(kafka)?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(SourceStatus::default()));
        let discovered: Arc<Mutex<Vec<i32>>> = Arc::default();
        let topic = opts.topic.clone();

        let watcher = {
            let (consumer, stop, status, discovered, topic) = (
                Arc::clone(&consumer),
                Arc::clone(&stop),
                Arc::clone(&status),
                Arc::clone(&discovered),
                topic.clone(),
            );
            let mut known: Vec<i32> = positions.keys().copied().collect();
            std::thread::Builder::new()
                .name(format!("kafka-watch-{topic}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        watch_once(&consumer, &topic, &mut known, &status, &discovered);
                        let pause = Duration::from_millis(1000).saturating_sub(t.elapsed());
                        sleep_unless(&stop, pause);
                    }
                })
                .map_err(|e| Error::Kafka(e.to_string()))?
        };

        let reader = {
            let (consumer, stop, topic) = (Arc::clone(&consumer), Arc::clone(&stop), topic.clone());
            std::thread::Builder::new()
                .name(format!("kafka-read-{topic}"))
                .spawn(move || {
                    let mut assigned = positions;
                    let mut last_len = 0;
                    let assign = |assigned: &BTreeMap<i32, i64>| {
                        let mut tpl = TopicPartitionList::new();
                        for (&p, &o) in assigned {
                            if let Err(e) = tpl.add_partition_offset(&topic, p, offset(o)) {
                                tracing::warn!(%topic, partition = p, error = %e, "cannot assign");
                            }
                        }
                        if let Err(e) = consumer.assign(&tpl) {
                            tracing::warn!(%topic, error = %e, "assign failed");
                        }
                    };
                    // Positions out of the log's range: a batch reporting them, whether
                    // to stop, and the positions gaps move to.
                    let settle = |assigned: &mut BTreeMap<i32, i64>| -> Option<(SourceBatch, bool)> {
                        let problems = match positions::check(
                            &consumer,
                            &topic,
                            assigned,
                            Duration::from_secs(5),
                        ) {
                            Ok(p) if !p.is_empty() => p,
                            Ok(_) => return None,
                            Err(e) => {
                                tracing::warn!(%topic, error = %e, "cannot check positions");
                                return None;
                            }
                        };
                        let mut b = decode_batch(&decoder.get().1, Vec::new());
                        b.version = decoder.get().0;
                        let mut halt = false;
                        for pr in &problems {
                            tracing::warn!(%topic, problem = %pr, "offsets out of range");
                            match *pr {
                                OffsetProblem::Gap { partition, last, .. } => {
                                    assigned.insert(partition, last + 1);
                                    b.next.insert(partition, last + 1);
                                }
                                OffsetProblem::Reset { .. } => halt = true,
                            }
                        }
                        b.problems = problems;
                        Some((b, halt))
                    };
                    if let Some((b, halt)) = settle(&mut assigned) {
                        if !sink(b) || halt {
                            return;
                        }
                    }
                    assign(&assigned);
                    while !stop.load(Ordering::Relaxed) {
                        let new: Vec<i32> = std::mem::take(
                            &mut *discovered
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner),
                        );
                        if !new.is_empty() {
                            // Keep reading the known partitions where this thread is, not
                            // where they started: reassign at the positions reached.
                            if let Ok(pos) = consumer.position() {
                                for e in pos.elements() {
                                    if let Offset::Offset(o) = e.offset() {
                                        assigned.insert(e.partition(), o);
                                    }
                                }
                            }
                            for p in new {
                                tracing::info!(%topic, partition = p, "new partition");
                                assigned.entry(p).or_insert(BEGINNING);
                            }
                            assign(&assigned);
                        }
                        let (batch, out_of_range) = read_batch(&consumer, &topic, &decoder, &config, &stop, &mut last_len);
                        if let Some(batch) = batch {
                            for (&p, &n) in &batch.next {
                                assigned.insert(p, n);
                            }
                            if !sink(batch) {
                                break;
                            }
                        }
                        if out_of_range {
                            if let Some((b, halt)) = settle(&mut assigned) {
                                if !sink(b) || halt {
                                    break;
                                }
                            }
                            // librdkafka stopped fetching the partition: resume it.
                            assign(&assigned);
                        }
                    }
                })
                .map_err(|e| Error::Kafka(e.to_string()))?
        };
        Ok(Reader {
            stop,
            status,
            consumer,
            topic,
            threads: vec![watcher, reader],
        })
    }
}

impl SourceReader for Reader {
    fn status(&self) -> SourceStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The broker's (low, high) watermarks of every partition.
    fn log_bounds(&self, timeout: Duration) -> std::result::Result<BTreeMap<i32, (i64, i64)>, String> {
        let bounds = || -> Result<BTreeMap<i32, (i64, i64)>> {
            let mut out = BTreeMap::new();
            for p in partitions(&self.consumer, &self.topic, timeout)? {
                let marks = self
                    .consumer
                    .fetch_watermarks(&self.topic, p, timeout)
                    .map_err(kafka)?;
                out.insert(p, marks);
            }
            Ok(out)
        };
        bounds().map_err(|e| e.to_string())
    }

    /// Stops both threads and waits for them.
    fn stop(mut self: Box<Self>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

fn watch_once(
    consumer: &BaseConsumer,
    topic: &str,
    known: &mut Vec<i32>,
    status: &Mutex<SourceStatus>,
    discovered: &Mutex<Vec<i32>>,
) {
    let timeout = Duration::from_millis(800);
    let result = partitions(consumer, topic, timeout).and_then(|ps| {
        let mut marks = BTreeMap::new();
        for &p in &ps {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, timeout)
                .map_err(kafka)?;
            marks.insert(p, high);
        }
        Ok((ps, marks))
    });
    let mut st = status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match result {
        Ok((ps, marks)) => {
            let new: Vec<i32> = ps.into_iter().filter(|p| !known.contains(p)).collect();
            if !new.is_empty() {
                known.extend(&new);
                discovered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(new);
            }
            if st.error.is_some() {
                tracing::info!(%topic, "broker reachable again");
            }
            st.error = None;
            st.high_watermarks = marks;
            st.last_contact = Some(std::time::SystemTime::now());
        }
        Err(e) => {
            if st.error.is_none() {
                tracing::warn!(%topic, error = %e, "broker unreachable; retrying");
            }
            st.error = Some(e.to_string());
        }
    }
}

/// Reads one batch: waits up to 100 ms for a first message, then takes what is at hand or
/// arrives within `quiet_wait`, and while messages keep coming, up to `max_wait` and
/// `max_batch` messages. The flag says librdkafka found a position outside
/// its partition's log (the batch ends there). `last_len`: how many messages the batch before
/// had (the next is sized for as many: growing a vector of thousands of messages reallocates
/// it several times, each time into fresh, page-faulted memory).
fn read_batch(
    consumer: &BaseConsumer,
    topic: &str,
    decoder: &SharedDecoder,
    config: &ReaderConfig,
    stop: &AtomicBool,
    last_len: &mut usize,
) -> (Option<SourceBatch>, bool) {
    let Some(mut queue) = Queue::of(consumer) else {
        tracing::warn!(%topic, "no consumer queue");
        std::thread::sleep(Duration::from_millis(100));
        return (None, false);
    };
    let mut msgs = Vec::with_capacity((*last_len).min(config.max_batch));
    let mut arena = Arena::default();
    // The INCLUDE columns are fixed for a source: later decoders want keys just the same.
    let key = decoder.get().1.includes_key();
    // Since the first message: (end of the quiet wait, the deadline).
    let mut first: Option<(Instant, Instant)> = None;
    // How long the next call waits for a message when none is at hand.
    let mut wait = Duration::from_millis(100);
    let mut out_of_range = false;
    let mut failed = false;
    while msgs.len() < config.max_batch && !stop.load(Ordering::Relaxed) {
        let took = queue.take(wait, config.max_batch - msgs.len(), |m| match m.error() {
            None => msgs.push(detach(&m, &mut arena, key)),
            Some(e) => {
                tracing::debug!(error = %e, "consumer error");
                failed = true;
                out_of_range |= matches!(
                    e,
                    RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
                );
            }
        });
        if failed {
            break;
        }
        let now = Instant::now();
        if took > 0 {
            let (_, deadline) = *first.get_or_insert((now + config.quiet_wait, now + config.max_wait));
            if now >= deadline {
                break;
            }
            wait = Duration::ZERO;
            continue;
        }
        let Some((quiet, deadline)) = first else {
            break;
        };
        // Nothing at hand: past the quiet wait, the batch is what there is — unless the
        // broker holds more for it (a backlog), then up to the deadline.
        if now >= deadline || (now >= quiet && !more_in_broker(consumer, topic, &msgs)) {
            break;
        }
        if now >= quiet {
            first = Some((deadline, deadline));
        }
        wait = first
            .map_or(Duration::ZERO, |(q, _)| q.saturating_duration_since(now))
            .max(Duration::from_millis(1));
    }
    *last_len = msgs.len();
    if msgs.is_empty() {
        return (None, out_of_range);
    }
    let (version, decoder) = decoder.get();
    let mut b = decode_batch(&decoder, msgs);
    b.version = version;
    (Some(b), out_of_range)
}

/// Whether the broker held more than `msgs` reach in any of their partitions when it last
/// answered a fetch (librdkafka's cached high watermarks: no request is made).
fn more_in_broker(consumer: &BaseConsumer, topic: &str, msgs: &[Message]) -> bool {
    let Ok(topic) = std::ffi::CString::new(topic) else {
        return false;
    };
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for m in msgs {
        let e = next.entry(m.partition).or_insert(0);
        *e = (*e).max(m.offset + 1);
    }
    next.into_iter().any(|(partition, n)| {
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client handle lives as long as `consumer`; the topic is a valid C
        // string for the call; librdkafka only reads its cached watermarks into the two
        // out-parameters.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high > n
    })
}

/// Reads each partition's messages in `[from, to)` (`from` may be [`BEGINNING`]) and decodes
/// them leniently ([`Decoder::decode_lenient`]), skipping the `(partition, offset)`s in
/// `skip` (the messages rejected when first read). For backfilling a new view up to exactly
/// the offsets the source has committed, with exactly the messages it accepted.
pub fn replay(
    opts: &KafkaSourceConfig,
    decoder: &Decoder,
    ranges: &BTreeMap<i32, (i64, i64)>,
    skip: &std::collections::HashSet<(i32, i64)>,
    timeout: Duration,
) -> Result<Vec<(RecordBatch, Origins)>> {
    let c = consumer(opts)?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
    for (&p, &(from, to)) in ranges {
        if to > 0 && (from == BEGINNING || from < to) {
            tpl.add_partition_offset(&opts.topic, p, offset(from))
                .map_err(kafka)?;
            remaining.insert(p, to);
        }
    }
    if remaining.is_empty() {
        return Ok(vec![]);
    }
    c.assign(&tpl).map_err(kafka)?;
    let mut out = Vec::new();
    let mut msgs = Vec::new();
    let mut arena = Arena::default();
    let mut last_progress = Instant::now();
    // Where each partition's re-read must start: a first message past it means the topic no
    // longer holds what the source consumed (retention), and the re-read would be incomplete.
    let mut first: BTreeMap<i32, i64> = ranges
        .iter()
        .filter(|(p, (from, _))| *from >= 0 && remaining.contains_key(p))
        .map(|(&p, &(from, _))| (p, from))
        .collect();
    let mut queue = Queue::of(&c).ok_or_else(|| Error::Kafka("no consumer queue".into()))?;
    let key = decoder.includes_key();
    let mut gone = None;
    while !remaining.is_empty() {
        let took = queue.take(Duration::from_millis(100), 10_000, |m| {
            if let Some(e) = m.error() {
                tracing::debug!(error = %e, "replay consumer error");
                return;
            }
            let p = m.partition();
            let Some(&to) = remaining.get(&p) else {
                return;
            };
            if let Some(from) = first.remove(&p) {
                if m.offset() > from {
                    gone.get_or_insert(Error::Gone(format!(
                        "topic \"{}\" partition {p} no longer holds offsets {from}..{} that the source consumed (retention); a view over it can only be built from messages the topic still has",
                        opts.topic,
                        m.offset()
                    )));
                }
            }
            if m.offset() < to && !skip.contains(&(p, m.offset())) {
                msgs.push(detach(&m, &mut arena, key));
            }
            if m.offset() + 1 >= to {
                remaining.remove(&p);
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&opts.topic, p);
                let _ = c.incremental_unassign(&tpl);
            }
        });
        if let Some(e) = gone {
            return Err(e);
        }
        if took > 0 {
            last_progress = Instant::now();
        }
        if msgs.len() >= 10_000 {
            if let (Some(b), origins) = decoder
                .decode_lenient_traced(&std::mem::take(&mut msgs))
                .map_err(|e| Error::Kafka(e.to_string()))?
            {
                out.push((b, origins));
            }
        }
        if last_progress.elapsed() > timeout {
            return Err(Error::Kafka(format!(
                "timed out re-reading topic \"{}\" (partitions {:?} not read up to their committed offsets)",
                opts.topic,
                remaining.keys().collect::<Vec<_>>()
            )));
        }
    }
    if let (Some(b), origins) = decoder
        .decode_lenient_traced(&msgs)
        .map_err(|e| Error::Kafka(e.to_string()))?
    {
        out.push((b, origins));
    }
    Ok(out)
}
