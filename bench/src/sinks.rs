//! `freshet-bench sinks`: what sinks cost and how fresh their output is.
//!
//! Throughput: the same rows (INSERT … SELECT batches into a table under a projection view)
//! go into a server without a sink, with a Parquet file sink, and with a Kafka sink (PLAIN
//! JSON, librdkafka's mock cluster in the bench process); the server's CPU time until the sink
//! has committed everything, minus the run without a sink, is what the sink cost — reported as
//! rows per sink CPU-second. The scenarios alternate over `--runs` rounds (this VM drifts).
//!
//! Latency: one row a time at `--rates`, each stamped with the wall clock; a consumer of the
//! Kafka sink's topic records when each arrives (committed by the sink, read by a consumer);
//! p50/p99 of insert → message, after one second of warm-up.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::Message;
use tokio_postgres::Client;

use crate::server::FreshetServer;
use crate::{percentiles, procstat};

#[derive(clap::Parser, Clone)]
pub struct SinksOpts {
    /// The server binary (a release build).
    #[arg(long, default_value = "target/release/freshet", env = "FRESHET_BIN")]
    freshet_bin: PathBuf,
    /// Rows per throughput run.
    #[arg(long, default_value_t = 400_000)]
    rows: u64,
    /// Rows per INSERT.
    #[arg(long, default_value_t = 2_000)]
    batch: u64,
    /// Rounds of the three throughput scenarios.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Rows per second of the latency runs.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    rates: Vec<u64>,
    /// Seconds per latency run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

const PARTITIONS: i32 = 4;

#[derive(Clone, Copy, PartialEq)]
enum Sink {
    None,
    Parquet,
    Kafka,
}

pub async fn run(o: SinksOpts) -> anyhow::Result<()> {
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1)?;
    let bootstrap = cluster.bootstrap_servers();
    println!("sinks: {} rows per run in INSERTs of {}, {} rounds; broker: librdkafka mock cluster in the bench process\n", o.rows, o.batch, o.runs);
    let mut cpu = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..o.runs {
        for (i, sink) in [Sink::None, Sink::Parquet, Sink::Kafka]
            .into_iter()
            .enumerate()
        {
            let topic = format!("thr{round}-{i}");
            cluster.create_topic(&topic, PARTITIONS, 1)?;
            let s = throughput(&o, sink, &bootstrap, &topic).await?;
            println!("round {round} {}: {s:.2} server CPU-s", name(sink));
            cpu[i].push(s);
        }
    }
    println!("\n| sink | server CPU-s (runs) | sink CPU-s | rows per sink CPU-second |");
    println!("|---|---|---|---|");
    let base = median(&cpu[0]);
    for (i, sink) in [Sink::None, Sink::Parquet, Sink::Kafka]
        .into_iter()
        .enumerate()
    {
        let runs: Vec<String> = cpu[i].iter().map(|c| format!("{c:.2}")).collect();
        if sink == Sink::None {
            println!("| none | {} | — | — |", runs.join(" / "));
            continue;
        }
        let extra = median(&cpu[i]) - base;
        println!(
            "| {} | {} | {extra:.2} | {:.0} |",
            name(sink),
            runs.join(" / "),
            o.rows as f64 / extra.max(1e-3)
        );
    }
    println!("\n| rate (rows/s) | rows | insert → Kafka sink message p50 / p99 (ms) |");
    println!("|---|---|---|");
    for &rate in &o.rates {
        let topic = format!("lat{rate}");
        cluster.create_topic(&topic, PARTITIONS, 1)?;
        let (n, p50, p99) = latency(&o, &bootstrap, &topic, rate).await?;
        println!("| {rate} | {n} | {p50:.1} / {p99:.1} |");
    }
    Ok(())
}

fn name(s: Sink) -> &'static str {
    match s {
        Sink::None => "none",
        Sink::Parquet => "Parquet file",
        Sink::Kafka => "Kafka (PLAIN JSON)",
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Server CPU seconds to take `o.rows` rows in and, with a sink, write them all out.
async fn throughput(
    o: &SinksOpts,
    sink: Sink,
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<f64> {
    let server = FreshetServer::start(&o.freshet_bin, 256).await?;
    let out_dir = tempfile::tempdir()?;
    let c = server.connect().await?;
    c.batch_execute(
        "CREATE TABLE ev (id BIGINT PRIMARY KEY, v INT, s TEXT);
         CREATE MATERIALIZED VIEW evv AS SELECT id, v, s FROM ev;",
    )
    .await?;
    match sink {
        Sink::None => {}
        Sink::Parquet => {
            c.batch_execute(&format!(
                "CREATE SINK out FROM evv WITH (connector = 'file', path = '{}', force_append_only = 'true', \
                 rollover_rows = 100000, rollover_seconds = 1)",
                out_dir.path().display()
            ))
            .await?
        }
        Sink::Kafka => {
            c.batch_execute(&format!(
                "CREATE SINK out FROM evv WITH (connector = 'kafka', topic = '{topic}', \
                 properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE JSON (force_append_only = 'true')"
            ))
            .await?
        }
    }
    let before = procstat::cpu_seconds(server.pid())?;
    let mut id = 0;
    while id < o.rows {
        let end = (id + o.batch).min(o.rows) - 1;
        c.batch_execute(&format!(
            "INSERT INTO ev SELECT g, g % 1000, 'row ' || g FROM generate_series({id}, {end}) AS s(g)"
        ))
        .await?;
        id = end + 1;
    }
    if sink != Sink::None {
        wait_caught_up(&c).await?;
    }
    let cpu = procstat::cpu_seconds(server.pid())? - before;
    server.stop();
    Ok(cpu)
}

/// Waits until the sink has committed the latest epoch.
async fn wait_caught_up(c: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let row = c
            .query_one(
                "SELECT lag_epochs FROM freshet_internal.sink_progress WHERE sink = 'out'",
                &[],
            )
            .await?;
        let lag: i64 = row.get(0);
        if lag == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the sink did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until sink `name` is connected and running.
pub async fn wait_running(c: &Client, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = c
            .query_one(
                "SELECT status FROM freshet_internal.sink_progress WHERE sink = $1",
                &[&name],
            )
            .await?;
        if row.get::<_, String>(0) == "running" {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the sink did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Rows inserted one at a time at `rate`, each carrying its insert time; the Kafka sink's
/// messages read as they arrive. Returns (rows seen, p50 ms, p99 ms).
async fn latency(
    o: &SinksOpts,
    bootstrap: &str,
    topic: &str,
    rate: u64,
) -> anyhow::Result<(usize, f64, f64)> {
    let server = FreshetServer::start(&o.freshet_bin, 256).await?;
    let c = server.connect().await?;
    c.batch_execute(&format!(
        "CREATE TABLE ev (id BIGINT PRIMARY KEY, sent BIGINT);
         CREATE MATERIALIZED VIEW evv AS SELECT id, sent FROM ev;
         CREATE SINK out FROM evv WITH (connector = 'kafka', topic = '{topic}',
           properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE JSON (force_append_only = 'true');"
    ))
    .await?;
    // Once the sink is connected: its start-up is not what is measured.
    wait_running(&c, "out").await?;
    // One second of warm-up, not counted: the sink's first messages wait for the producer's
    // first round trips to the partitions' leaders (about half a second).
    let warm_up = rate as usize;
    let total = warm_up + (rate * o.seconds) as usize;
    let (bootstrap, topic2) = (bootstrap.to_owned(), topic.to_owned());
    let reader = std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
        let consumer = crate::probe::consumer_from_start(&bootstrap, &topic2, PARTITIONS)?;
        let mut lat = Vec::with_capacity(total);
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen < total && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let arrived = now_us();
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default())?;
                let id = v.get("id").and_then(serde_json::Value::as_i64).unwrap_or(0);
                if let Some(sent) = v.get("sent").and_then(serde_json::Value::as_i64) {
                    if id >= warm_up as i64 {
                        lat.push(Duration::from_micros((arrived - sent).max(0) as u64));
                    }
                }
                seen += 1;
            }
        }
        Ok(lat)
    });
    let start = Instant::now();
    let insert = c.prepare("INSERT INTO ev VALUES ($1, $2)").await?;
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        c.execute(&insert, &[&(i as i64), &now_us()]).await?;
    }
    let lat = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    server.stop();
    let n = lat.len();
    let (p50, p99) = percentiles(lat);
    Ok((n, p50, p99))
}
