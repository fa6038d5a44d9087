//! `freshet-bench latency`: how fresh results are, end to end, from a Kafka source.
//!
//! Nexmark-like bids (~300 bytes of JSON, each stamped with its produce time) go to an
//! 8-partition topic at each of `--rates` messages per second; the server reads them through
//! a source into a projection view, which has a subscriber (`COPY (SUBSCRIBE …) TO STDOUT`)
//! and a Kafka sink (PLAIN JSON) to a second topic, read by a consumer. Every message is timed
//! from the moment the producer is handed it to (a) its row arriving at the subscriber and
//! (b) its message arriving from the sink's topic; (c) marker messages are timed to their
//! first appearance in a polling point SELECT on the view. The broker is librdkafka's mock
//! cluster inside the bench process; the producer batches as librdkafka does by default
//! (`linger.ms` 5), which is part of what is measured, as users would see it; the server syncs
//! every commit (its default).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::Message;

use crate::server::FreshetServer;
use crate::{percentiles, procstat};

#[derive(clap::Parser, Clone)]
pub struct LatencyOpts {
    /// The server binary (a release build).
    #[arg(long, default_value = "target/release/freshet", env = "FRESHET_BIN")]
    freshet_bin: std::path::PathBuf,
    /// Messages per second, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    rates: Vec<u64>,
    /// Seconds measured per run (after one second of warm-up).
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Partitions of the source's and the sink's topics.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Only these outputs (comma-separated: subscriber,select,sink).
    #[arg(long, default_value = "subscriber,select,sink")]
    only: String,
}

/// Pads a bid to Nexmark's ~300 bytes.
const EXTRA: &str =
    "ysonwfqluauvvbdfwvvzbbwaimqtyixqzxgomxfyxdbpeniytikhaspbguinwpfsotlaxkbqrzlqomn";

/// Marker ids start here (bids count up from 0).
const MARKER: i64 = 1 << 60;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn bid(id: i64, sent: i64) -> String {
    format!(
        "{{\"id\": {id}, \"auction\": {}, \"bidder\": {}, \"price\": {}, \"channel\": \"channel-{}\", \
         \"url\": \"https://www.nexmark.com/item.htm?query=1&channel_id={}\", \"sent\": {sent}, \
         \"extra\": \"{}\"}}",
        1000 + id % 1000,
        2000 + id % 9973,
        100 + (id * 7919) % 10_000,
        id % 10,
        id % 97,
        EXTRA,
    )
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, partition: i32, payload: &str) {
    crate::probe::send(
        p,
        BaseRecord::<(), str>::to(topic)
            .payload(payload)
            .partition(partition),
    );
}

/// Latencies of one run, in the three ways the results reach users.
struct Run {
    rate: f64,
    subscriber: Vec<Duration>,
    select: Vec<Duration>,
    sink: Vec<Duration>,
    cpu: f64,
}

pub async fn run(o: LatencyOpts) -> anyhow::Result<()> {
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1)?;
    let bootstrap = cluster.bootstrap_servers();
    println!(
        "latency: bids on {} partitions, {} s per rate after 1 s of warm-up; broker: librdkafka mock cluster in the bench process\n",
        o.partitions, o.seconds
    );
    let mut runs = Vec::new();
    for &rate in &o.rates {
        let (input, output) = (format!("bids{rate}"), format!("bids_out{rate}"));
        cluster.create_topic(&input, o.partitions, 1)?;
        cluster.create_topic(&output, o.partitions, 1)?;
        let r = one_rate(&o, &bootstrap, &input, &output, rate).await?;
        println!(
            "{rate} msgs/s: produced {:.0}/s, server {:.2} CPU-s, {} subscriber rows, {} markers, {} sink messages",
            r.rate,
            r.cpu,
            r.subscriber.len(),
            r.select.len(),
            r.sink.len()
        );
        runs.push((rate, r));
    }
    println!("\n| messages/s | → subscriber p50 / p99 ms | → polling SELECT p50 / p99 ms | → Kafka sink p50 / p99 ms | server CPU % |");
    println!("|---|---|---|---|---|");
    for (rate, r) in runs {
        let f = |d: Vec<Duration>| {
            let (p50, p99) = percentiles(d);
            format!("{p50:.1} / {p99:.1}")
        };
        println!(
            "| {rate} | {} | {} | {} | {:.0} |",
            f(r.subscriber),
            f(r.select),
            f(r.sink),
            100.0 * r.cpu / (o.seconds + 1) as f64
        );
    }
    Ok(())
}

async fn one_rate(
    o: &LatencyOpts,
    bootstrap: &str,
    input: &str,
    output: &str,
    rate: u64,
) -> anyhow::Result<Run> {
    // As a user runs it: every commit synced.
    let server = FreshetServer::start_with(&o.freshet_bin, 256, true).await?;
    let c = server.connect().await?;
    c.batch_execute(&format!(
        "CREATE SOURCE bids (id BIGINT, auction BIGINT, bidder BIGINT, price BIGINT,
            channel VARCHAR, url VARCHAR, sent BIGINT)
          WITH (connector = 'kafka', topic = '{input}', properties.bootstrap.server = '{bootstrap}')
          FORMAT PLAIN ENCODE JSON;
         CREATE MATERIALIZED VIEW bidv AS SELECT id, auction, price, sent FROM bids;"
    ))
    .await?;
    let on = |part: &str| o.only.split(',').any(|p| p == part);
    if on("sink") {
        c.batch_execute(&format!("CREATE SINK out FROM bidv WITH (connector = 'kafka', topic = '{output}',
           properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE JSON (force_append_only = 'true');"
        ))
        .await?;
        crate::sinks::wait_running(&c, "out").await?;
    }

    let start = Instant::now();
    let measured_from = now_us() + 1_000_000;
    let end = start + Duration::from_secs(o.seconds + 1);
    let stop = Arc::new(AtomicBool::new(false));

    // (a) the subscriber: a thread and runtime of its own, so that nothing the bench does
    // elsewhere delays reading its rows.
    let subscribing = on("subscriber");
    let port = server.port();
    let subscriber = std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
        if !subscribing {
            return Ok(Vec::new());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(subscribe(port, end + Duration::from_secs(2), measured_from))
    });

    // (b) the sink's topic
    let sinking = on("sink");
    let sink = {
        let (bootstrap, output, stop) =
            (bootstrap.to_owned(), output.to_owned(), Arc::clone(&stop));
        let partitions = o.partitions;
        std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
            let consumer = crate::probe::consumer_from_start(&bootstrap, &output, partitions)?;
            let mut lat = Vec::new();
            while sinking && !stop.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                    let arrived = now_us();
                    let v: serde_json::Value =
                        serde_json::from_slice(m.payload().unwrap_or_default())?;
                    let id = v.get("id").and_then(serde_json::Value::as_i64).unwrap_or(0);
                    let sent = v
                        .get("sent")
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(0);
                    if id < MARKER && sent >= measured_from {
                        lat.push(Duration::from_micros((arrived - sent).max(0) as u64));
                    }
                }
            }
            Ok(lat)
        })
    };

    // The bids, at `rate`, round-robin over the partitions.
    let producer: Arc<ThreadedProducer<DefaultProducerContext>> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("queue.buffering.max.messages", "1000000")
            .create()?,
    );
    let partitions = o.partitions;
    let bids = {
        let (p, input) = (Arc::clone(&producer), input.to_owned());
        std::thread::spawn(move || {
            let mut n = 0i64;
            while Instant::now() < end {
                let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                send(
                    &p,
                    &input,
                    (n % partitions as i64) as i32,
                    &bid(n, now_us()),
                );
                n += 1;
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
    };

    // (c) markers polled by a point SELECT
    let cpu0 = procstat::cpu_seconds(server.pid())?;
    let stmt = c.prepare("SELECT count(*) FROM bidv WHERE id = $1").await?;
    let mut select = Vec::new();
    tokio::time::sleep_until((start + Duration::from_secs(1)).into()).await;
    let mut k = 0i64;
    while on("select") && Instant::now() + Duration::from_millis(100) < end {
        k += 1;
        let id = MARKER + k;
        let t0 = Instant::now();
        send(
            &producer,
            input,
            (k % partitions as i64) as i32,
            &bid(id, now_us()),
        );
        select.push(crate::probe::until_visible(&c, &stmt, id, t0).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let produced = bids
        .join()
        .map_err(|_| anyhow::anyhow!("producer panicked"))?;
    let cpu = procstat::cpu_seconds(server.pid())? - cpu0;
    if !on("select") {
        tokio::time::sleep_until(end.into()).await;
    }
    let subscriber = subscriber
        .join()
        .map_err(|_| anyhow::anyhow!("subscriber panicked"))??;
    stop.store(true, Ordering::Relaxed);
    let sink = sink
        .join()
        .map_err(|_| anyhow::anyhow!("sink reader panicked"))??;
    server.stop();
    Ok(Run {
        rate: produced,
        subscriber,
        select,
        sink,
        cpu,
    })
}

/// Reads `COPY (SUBSCRIBE bidv …)` until `until`; the latency of each bid sent from
/// `measured_from` on.
async fn subscribe(port: u16, until: Instant, measured_from: i64) -> anyhow::Result<Vec<Duration>> {
    let dsn = format!("host=127.0.0.1 port={port} dbname=freshet user=bench");
    let sub = crate::server::connect_until(&dsn, Instant::now() + Duration::from_secs(10)).await?;
    let stream = sub
        .copy_out("COPY (SUBSCRIBE bidv WITH (SNAPSHOT = false)) TO STDOUT")
        .await?;
    futures::pin_mut!(stream);
    let mut lat = Vec::new();
    while let Ok(Some(chunk)) = tokio::time::timeout_at(until.into(), stream.next()).await {
        let arrived = now_us();
        for line in chunk?.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            // freshet_epoch, freshet_diff, id, auction, price, sent
            let mut f = std::str::from_utf8(line)?.split('\t');
            let id: i64 = f.nth(2).unwrap_or("0").parse()?;
            let sent: i64 = f.nth(2).unwrap_or("0").parse()?;
            if id < MARKER && sent >= measured_from {
                lat.push(Duration::from_micros((arrived - sent).max(0) as u64));
            }
        }
    }
    Ok(lat)
}
