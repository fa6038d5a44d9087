//! `freshet-bench tweets`: the tweets workload over Kafka.
//!
//! A Kafka-protocol broker (librdkafka's mock cluster) runs inside the bench process, so its
//! CPU never counts as the server's. The broker alone is measured first (one plain consumer).
//! Then, per view (the tutorial's projection; count by language), a fresh release server reads
//! `--messages` realistic tweets (74 fields, ~3 KB) from an 8-partition topic, and the report
//! gives messages per server CPU-second (from /proc) and JSON MB per CPU-second. The mock
//! keeps only ~5 MB per partition, so the topic cannot hold 1M tweets at once: the bench keeps
//! a bounded backlog (`--backlog` messages, ~1.8 MB per partition) always waiting, which keeps
//! the server busy exactly as a pre-loaded topic would. Finally, freshness: tweets at a fixed
//! `--rate`, and marker tweets timed from produce to visible in a SELECT on the view.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use freshet_connector_kafka::tweets::{tweet, CREATE_SOURCE_SQL, DEMO_BOOTSTRAP};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::procstat::{cpu_seconds, rss_bytes};
use crate::server::FreshetServer;

#[derive(Parser, Clone)]
pub struct TweetsOpts {
    /// The server binary (a release build).
    #[arg(long, default_value = "target/release/freshet", env = "FRESHET_BIN")]
    freshet_bin: std::path::PathBuf,
    /// Tweets per throughput scenario.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Most tweets waiting in the topic (the mock broker keeps ~5 MB per partition).
    #[arg(long, default_value_t = 12_000)]
    backlog: u64,
    /// Tweets per second during the freshness run.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Length of the freshness run.
    #[arg(long, default_value_t = 20)]
    freshness_secs: u64,
    /// The server's memory budget (`--memory-mb`), MB.
    #[arg(long, default_value_t = 1024)]
    memory_mb: u64,
    /// Only these parts (comma-separated: broker,projection,lang,freshness).
    #[arg(long, default_value = "broker,projection,lang,freshness")]
    only: String,
}

const PROJECTION: &str =
    "CREATE MATERIALIZED VIEW v AS SELECT id, (\"user\").name AS name, text FROM tweets";
const BY_LANG: &str =
    "CREATE MATERIALIZED VIEW v AS SELECT lang, count(*) AS n FROM tweets GROUP BY lang";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn producer(
    bootstrap: &str,
    linger_ms: u32,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", linger_ms.to_string())
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "2097151")
        .create()?)
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &str, payload: &[u8]) {
    crate::probe::send(p, BaseRecord::to(topic).payload(payload).key(key));
}

/// Produces tweets `from..to` and waits until the broker has them.
fn produce_range(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    from: u64,
    to: u64,
) -> u64 {
    let mut bytes = 0;
    let ts = now_ms();
    for n in from..to {
        let t = tweet(7, n, ts);
        bytes += t.len() as u64;
        send(p, topic, &n.to_string(), &t);
    }
    let _ = p.flush(Duration::from_secs(60));
    bytes
}

/// Messages the source has committed (sum of next offsets).
fn source_sql(bootstrap: &str, topic: &str) -> String {
    CREATE_SOURCE_SQL
        .replace(DEMO_BOOTSTRAP, bootstrap)
        .replace("topic = 'tweets'", &format!("topic = '{topic}'"))
}

/// The broker alone: one consumer reading `n` tweets (in backlog-sized rounds).
fn broker_alone(
    bootstrap: &str,
    cluster: &MockCluster<'static, DefaultProducerContext>,
    o: &TweetsOpts,
    n: u64,
) -> anyhow::Result<(f64, f64)> {
    cluster.create_topic("broker_only", o.partitions, 1)?;
    let p = producer(bootstrap, 5)?;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for part in 0..o.partitions {
        tpl.add_partition_offset("broker_only", part, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let (mut consumed, mut bytes, mut busy) = (0u64, 0u64, Duration::ZERO);
    let mut produced = 0;
    while produced < n {
        let next = (produced + o.backlog).min(n);
        produce_range(&p, "broker_only", produced, next);
        produced = next;
        let t = Instant::now();
        while consumed < produced {
            if let Some(Ok(m)) = c.poll(Duration::from_secs(5)) {
                consumed += 1;
                bytes += rdkafka::Message::payload(&m).map_or(0, <[u8]>::len) as u64;
            }
        }
        busy += t.elapsed();
    }
    let secs = busy.as_secs_f64().max(1e-6);
    Ok((consumed as f64 / secs, bytes as f64 / secs / 1e6))
}

struct Throughput {
    cpu: f64,
    wall: f64,
    bytes: u64,
    peak_rss: u64,
}

async fn throughput(
    bootstrap: &str,
    cluster: &MockCluster<'static, DefaultProducerContext>,
    o: &TweetsOpts,
    topic: &str,
    view: &str,
) -> anyhow::Result<Throughput> {
    cluster.create_topic(topic, o.partitions, 1)?;
    let server = FreshetServer::start(&o.freshet_bin, o.memory_mb).await?;
    let c = server.connect().await?;
    c.batch_execute(&source_sql(bootstrap, topic)).await?;
    c.batch_execute(view).await?;
    let p = producer(bootstrap, 5)?;
    let cpu0 = cpu_seconds(server.pid())?;
    let start = Instant::now();
    let (mut produced, mut bytes, mut peak) = (0u64, 0u64, 0u64);
    while produced < o.messages {
        // Keep at most `backlog` tweets waiting: the mock broker forgets older ones.
        let done = crate::probe::messages_read(&c).await?;
        if produced - done.min(produced) < o.backlog / 2 {
            let next = (produced + o.backlog / 2).min(o.messages);
            bytes += produce_range(&p, topic, produced, next);
            produced = next;
        } else {
            // Polls cost server CPU too: rarely enough not to matter.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        peak = peak.max(rss_bytes(server.pid()).map(|(_, hwm)| hwm).unwrap_or(0));
    }
    c.batch_execute("FLUSH").await?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid())? - cpu0;
    let got: i64 = if view.contains("count(*)") {
        c.query_one("SELECT CAST(sum(n) AS BIGINT) FROM v", &[])
            .await?
            .get(0)
    } else {
        c.query_one("SELECT CAST(count(*) AS BIGINT) FROM v", &[])
            .await?
            .get(0)
    };
    let errors: i64 = c
        .query_one(
            "SELECT CAST(count(*) AS BIGINT) FROM freshet_internal.source_errors",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        got == o.messages as i64 && errors == 0,
        "the view holds {got} of {} tweets ({errors} errors)",
        o.messages
    );
    peak = peak.max(rss_bytes(server.pid()).map(|(_, hwm)| hwm).unwrap_or(0));
    server.stop();
    Ok(Throughput {
        cpu,
        wall,
        bytes,
        peak_rss: peak,
    })
}

async fn freshness(
    bootstrap: &str,
    cluster: &MockCluster<'static, DefaultProducerContext>,
    o: &TweetsOpts,
) -> anyhow::Result<(f64, f64, usize, f64)> {
    cluster.create_topic("tweets_fresh", o.partitions, 1)?;
    let server = FreshetServer::start(&o.freshet_bin, o.memory_mb).await?;
    let c = server.connect().await?;
    c.batch_execute(&source_sql(bootstrap, "tweets_fresh"))
        .await?;
    c.batch_execute(PROJECTION).await?;
    let p = Arc::new(producer(bootstrap, 1)?);
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (p, stop, rate) = (Arc::clone(&p), Arc::clone(&stop), o.rate);
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                send(&p, "tweets_fresh", &n.to_string(), &tweet(11, n, now_ms()));
                n += 1;
            }
            (n, start.elapsed().as_secs_f64())
        })
    };
    let stmt = c.prepare("SELECT count(*) FROM v WHERE id = $1").await?;
    let mut lat = Vec::new();
    let end = Instant::now() + Duration::from_secs(o.freshness_secs);
    let mut k: i64 = 0;
    tokio::time::sleep(Duration::from_secs(1)).await; // let the stream reach its rate
    while Instant::now() < end {
        k += 1;
        let id = 9_000_000_000_000_000_000 + k;
        let payload = format!("{{\"id\": {id}, \"lang\": \"zz\", \"text\": \"marker\", \"user\": {{\"name\": \"bench\"}}}}");
        let t0 = Instant::now();
        send(&p, "tweets_fresh", "marker", payload.as_bytes());
        lat.push(crate::probe::until_visible(&c, &stmt, id, t0).await?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (n, secs) = background
        .join()
        .map_err(|_| anyhow::anyhow!("producer thread panicked"))?;
    server.stop();
    let (p50, p99) = crate::percentiles(lat.clone());
    Ok((p50, p99, lat.len(), n as f64 / secs))
}

pub async fn run(o: TweetsOpts) -> anyhow::Result<()> {
    let cluster = MockCluster::new(1)?;
    let bootstrap = cluster.bootstrap_servers();
    let only: Vec<&str> = o.only.split(',').collect();
    let sample = tweet(7, 0, now_ms());
    println!(
        "tweets: {} per scenario, {} partitions, ~{:.1} KB each (74 fields); broker: librdkafka mock cluster in the bench process\n",
        o.messages,
        o.partitions,
        sample.len() as f64 / 1024.0
    );
    if only.contains(&"broker") {
        eprintln!("broker alone …");
        let n = o.messages.min(200_000);
        let (rate, mbs) = broker_alone(&bootstrap, &cluster, &o, n)?;
        println!(
            "broker alone: one consumer reads {rate:.0} tweets/s ({mbs:.0} MB/s) ({n} tweets)\n"
        );
    }
    let mut rows = Vec::new();
    for (name, topic, view) in [
        (
            "projection: SELECT id, (\"user\").name, text",
            "tweets_p",
            PROJECTION,
        ),
        ("count by language", "tweets_l", BY_LANG),
    ] {
        let key = if topic == "tweets_p" {
            "projection"
        } else {
            "lang"
        };
        if !only.contains(&key) {
            continue;
        }
        eprintln!("{name} …");
        let t = throughput(&bootstrap, &cluster, &o, topic, view).await?;
        rows.push((name, t));
    }
    if !rows.is_empty() {
        println!("| view | server CPU s | wall s | tweets per server CPU-s | JSON MB per CPU-s | peak RSS MB |");
        println!("|---|---|---|---|---|---|");
        for (name, t) in &rows {
            println!(
                "| {name} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |",
                t.cpu,
                t.wall,
                o.messages as f64 / t.cpu.max(1e-3),
                t.bytes as f64 / 1e6 / t.cpu.max(1e-3),
                t.peak_rss as f64 / 1048576.0
            );
        }
        println!();
    }
    if only.contains(&"freshness") {
        eprintln!("freshness …");
        let (p50, p99, n, rate) = freshness(&bootstrap, &cluster, &o).await?;
        println!("freshness at {rate:.0} tweets/s (projection view): produce → visible in SELECT p50 {p50:.1} ms, p99 {p99:.1} ms ({n} markers)\n");
    }
    Ok(())
}
