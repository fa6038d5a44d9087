//! `freshet-bench`: measures the freshet server binary from the outside, over TCP, as users
//! run it.
//!
//! `freshet-bench views` loads N rows in COPY statements of `--batch` rows into a fresh server
//! per scenario and reports, from the server process's CPU time (/proc), the cost of ingest
//! alone and the extra cost of maintaining (a) a filter+project view, (b) GROUP BY with
//! count/sum/min/max, (c) a two-table join feeding an aggregate — as rows per server
//! CPU-second of maintenance. Then (d) the latency from a 1-row UPDATE to a SELECT on the view
//! showing it, on a `--latency-rows` base, next to PostgreSQL doing the same with `REFRESH
//! MATERIALIZED VIEW CONCURRENTLY` and with a statement-level trigger. It also reports peak
//! RSS, RSS samples while the state grows, and the state's size on disk.
//!
//! Loopback only; it ends only the processes it started.

mod auth;
mod latency;
mod nexmark;
mod pg;
mod pgbench;
mod probe;
mod procstat;
mod reads;
mod server;
mod sinks;
mod tpcb;
mod tpch;
mod tweets;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio_postgres::Client;

use crate::server::FreshetServer;

#[derive(Parser)]
#[command(name = "freshet-bench", about = "Benchmarks of the freshet server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// View maintenance throughput, latency and memory.
    Views(ViewsOpts),
    /// Kafka source throughput and freshness with realistic tweets.
    Tweets(tweets::TweetsOpts),
    /// pgbench's TPC-B-like transactions, freshet next to PostgreSQL, fsync on both.
    Tpcb(tpcb::TpcbOpts),
    /// Connection set-up and point reads with trust and SCRAM logins, next to PostgreSQL.
    Auth(auth::AuthOpts),
    /// Point reads by key on a table and a materialized view (pgbench), next to PostgreSQL.
    Reads(reads::ReadsOpts),
    /// What Parquet and Kafka sinks cost per row, and insert → Kafka sink message latency.
    Sinks(sinks::SinksOpts),
    /// End-to-end freshness from a Kafka source to a subscriber, a polling SELECT and a Kafka sink.
    Latency(latency::LatencyOpts),
    /// The Nexmark queries over Kafka + JSON, each alone, checked against PostgreSQL.
    Nexmark(nexmark::NexmarkOpts),
    /// The 22 TPC-H queries as views: backfill and refresh batches, next to PostgreSQL.
    Tpch(tpch::TpchOpts),
}

#[derive(Parser, Clone)]
pub struct ViewsOpts {
    /// The server binary (a release build).
    #[arg(long, default_value = "target/release/freshet", env = "FRESHET_BIN")]
    freshet_bin: PathBuf,
    /// Rows loaded per scenario.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Rows per COPY statement.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// Distinct groups of the GROUP BY and join scenarios.
    #[arg(long, default_value_t = 100_000)]
    groups: u64,
    /// The server's memory budget (`--memory-mb`), MB (small, so the state outgrows it).
    #[arg(long, default_value_t = 128)]
    memory_mb: u64,
    /// Base rows for the latency comparison.
    #[arg(long, default_value_t = 1_000_000)]
    latency_rows: u64,
    /// 1-row updates measured for latency.
    #[arg(long, default_value_t = 500)]
    updates: usize,
    /// REFRESH MATERIALIZED VIEW CONCURRENTLY runs measured in PostgreSQL.
    #[arg(long, default_value_t = 10)]
    refreshes: usize,
    /// PostgreSQL's binaries; the comparison is skipped when they are missing.
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// Only these scenarios (comma-separated: ingest,a,b,c,latency,postgres).
    #[arg(long, default_value = "ingest,a,b,c,latency,postgres")]
    only: String,
    /// Runs of each load scenario, in rounds (ingest, a, b, c, then again), so that the
    /// machine's speed drifting over minutes reaches every scenario alike; the table shows
    /// each scenario's median run by server CPU, and every run's CPU is listed below it.
    #[arg(long, default_value_t = 1)]
    reps: usize,
}

/// A scenario's schema and view.
struct Scenario {
    name: &'static str,
    setup: Vec<String>,
    table: &'static str,
    view: Option<String>,
}

fn scenarios(o: &ViewsOpts) -> Vec<Scenario> {
    let table = "CREATE TABLE t (id BIGINT PRIMARY KEY, g BIGINT, v BIGINT, s TEXT)".to_owned();
    vec![
        Scenario { name: "ingest", setup: vec![table.clone()], table: "t", view: None },
        Scenario {
            name: "a",
            setup: vec![table.clone()],
            table: "t",
            view: Some("CREATE MATERIALIZED VIEW va AS SELECT id, v * 2 AS v2, upper(s) AS s FROM t WHERE v % 10 < 5".into()),
        },
        Scenario {
            name: "b",
            setup: vec![table.clone()],
            table: "t",
            view: Some("CREATE MATERIALIZED VIEW vb AS SELECT g, count(*) AS c, sum(v) AS sv, min(v) AS mn, max(v) AS mx FROM t GROUP BY g".into()),
        },
        Scenario {
            name: "c",
            setup: vec![
                table,
                "CREATE TABLE d (g BIGINT PRIMARY KEY, region TEXT)".into(),
                format!("INSERT INTO d SELECT value, 'r' || CAST(value % 100 AS TEXT) FROM generate_series(0, {}) AS x(value)", o.groups - 1),
            ],
            table: "t",
            view: Some("CREATE MATERIALIZED VIEW vc AS SELECT d.region, count(*) AS c, sum(t.v) AS sv FROM t JOIN d ON t.g = d.g GROUP BY d.region".into()),
        },
    ]
}

/// The `i`-th generated row: id, g (spread over `groups`), v, s — as a COPY text line.
/// `v` (0..1000) is drawn independently of `g`, so a group's rows carry many distinct values
/// (MIN/MAX keep one multiset entry per distinct value).
fn push_row(out: &mut Vec<u8>, i: u64, groups: u64) {
    use std::io::Write;
    let g = i.wrapping_mul(2_654_435_761) % groups;
    // Not a function of `i % groups` (as g is): the top bits of a multiplicative hash.
    let v = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 1000;
    let _ = writeln!(out, "{i}\t{g}\t{v}\ts{}", i % 100);
}

/// Loads rows `from..to` in COPY statements of `batch` rows; calls `tick` after each.
async fn load(
    client: &Client,
    table: &str,
    from: u64,
    to: u64,
    o: &ViewsOpts,
    mut tick: impl FnMut(u64),
) -> anyhow::Result<()> {
    use futures::SinkExt;
    let mut i = from;
    let mut buf = Vec::with_capacity(o.batch as usize * 32);
    while i < to {
        let end = (i + o.batch).min(to);
        buf.clear();
        for r in i..end {
            push_row(&mut buf, r, o.groups);
        }
        let sink = client.copy_in(&format!("COPY {table} FROM STDIN")).await?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::copy_from_slice(&buf)).await?;
        sink.finish().await?;
        i = end;
        tick(i);
    }
    Ok(())
}

struct LoadResult {
    name: &'static str,
    cpu: f64,
    wall: Duration,
    peak_rss: u64,
    rss_samples: Vec<(u64, u64)>,
    state_bytes: u64,
    /// The server's `freshet_internal.metrics` about RocksDB's memory, at the end.
    rocksdb_memory: Vec<(String, i64)>,
}

async fn run_scenario(s: &Scenario, o: &ViewsOpts) -> anyhow::Result<LoadResult> {
    let server = FreshetServer::start(&o.freshet_bin, o.memory_mb).await?;
    let client = server.connect().await?;
    for stmt in &s.setup {
        client.batch_execute(stmt).await?;
    }
    if let Some(v) = &s.view {
        client.batch_execute(v).await?;
    }
    let pid = server.pid();
    let cpu0 = procstat::cpu_seconds(pid)?;
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let step = (o.rows / 10).max(o.batch);
    let mut next_sample = step;
    load(&client, s.table, 0, o.rows, o, |done| {
        if done >= next_sample {
            next_sample += step;
            if let Ok((rss, _)) = procstat::rss_bytes(pid) {
                samples.push((done, rss));
            }
        }
    })
    .await?;
    client.batch_execute("FLUSH").await?;
    let wall = t0.elapsed();
    let cpu = procstat::cpu_seconds(pid)? - cpu0;
    let (_, peak) = procstat::rss_bytes(pid)?;
    let state_bytes = procstat::dir_bytes(&server.data_dir());
    let rocksdb_memory = client
        .query(
            "SELECT name, value FROM freshet_internal.metrics WHERE name LIKE 'rocksdb%' ORDER BY name",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if s.name == "b" {
        // sanity: the view holds every row
        let row = client.query_one("SELECT sum(c) FROM vb", &[]).await?;
        let n: Option<i64> = row.get(0);
        anyhow::ensure!(
            n == Some(o.rows as i64),
            "view vb counts {n:?} rows, expected {}",
            o.rows
        );
    }
    drop(client);
    server.stop();
    Ok(LoadResult {
        name: s.name,
        cpu,
        wall,
        peak_rss: peak,
        rss_samples: samples,
        state_bytes,
        rocksdb_memory,
    })
}

/// p50 and p99 of `d`, in milliseconds.
fn percentiles(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let at = |q: f64| {
        d.get(((d.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |x| x.as_secs_f64() * 1e3)
    };
    (at(0.5), at(0.99))
}

/// freshet: 1-row UPDATE, then SELECT on the view until it shows the change.
async fn freshet_latency(o: &ViewsOpts) -> anyhow::Result<(f64, f64)> {
    let server = FreshetServer::start(&o.freshet_bin, o.memory_mb).await?;
    let client = server.connect().await?;
    client
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, g BIGINT, v BIGINT, s TEXT)")
        .await?;
    client.batch_execute("CREATE MATERIALIZED VIEW vb AS SELECT g, count(*) AS c, sum(v) AS sv, min(v) AS mn, max(v) AS mx FROM t GROUP BY g").await?;
    load(&client, "t", 0, o.latency_rows, o, |_| {}).await?;
    let update = client
        .prepare("UPDATE t SET v = v + 1000 WHERE id = $1")
        .await?;
    let read = client.prepare("SELECT sv FROM vb WHERE g = $1").await?;
    let mut lat = Vec::with_capacity(o.updates);
    for k in 0..o.updates as u64 {
        let id = (k * 7_919) % o.latency_rows;
        let g = id.wrapping_mul(2_654_435_761) % o.groups;
        let before: i64 = client
            .query_one(&read, &[&(g as i64)])
            .await?
            .get::<_, Option<i64>>(0)
            .unwrap_or(0);
        let t0 = Instant::now();
        client.execute(&update, &[&(id as i64)]).await?;
        loop {
            let now: i64 = client
                .query_one(&read, &[&(g as i64)])
                .await?
                .get::<_, Option<i64>>(0)
                .unwrap_or(0);
            if now == before + 1000 {
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "update of id {id} never showed in the view"
            );
        }
        lat.push(t0.elapsed());
    }
    server.stop();
    Ok(percentiles(lat))
}

fn mb(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

async fn views(o: ViewsOpts) -> anyhow::Result<()> {
    let only: Vec<&str> = o.only.split(',').map(str::trim).collect();
    println!(
        "# freshet-bench views: {} rows in COPY batches of {}, {} groups, memory budget {} MB\n",
        o.rows, o.batch, o.groups, o.memory_mb
    );
    let selected: Vec<Scenario> = scenarios(&o)
        .into_iter()
        .filter(|s| only.contains(&s.name))
        .collect();
    let mut runs: Vec<Vec<LoadResult>> = selected.iter().map(|_| Vec::new()).collect();
    for round in 0..o.reps.max(1) {
        for (s, runs) in selected.iter().zip(&mut runs) {
            eprintln!("scenario {} (run {}) …", s.name, round + 1);
            let r = run_scenario(s, &o).await?;
            eprintln!("  cpu {:.1}s wall {:.1}s", r.cpu, r.wall.as_secs_f64());
            runs.push(r);
        }
    }
    let all_cpu: Vec<(&str, Vec<f64>)> = runs
        .iter()
        .filter_map(|r| Some((r.first()?.name, r.iter().map(|r| r.cpu).collect())))
        .collect();
    // Each scenario's median run (the lower middle one of an even count).
    let results: Vec<LoadResult> = runs
        .into_iter()
        .filter_map(|mut r| {
            r.sort_by(|a, b| a.cpu.total_cmp(&b.cpu));
            let mid = (r.len().max(1) - 1) / 2;
            r.into_iter().nth(mid)
        })
        .collect();
    let ingest = results.iter().find(|r| r.name == "ingest").map(|r| r.cpu);
    if !results.is_empty() {
        println!("| scenario | server CPU s | wall s | maintenance CPU s | rows per maintenance CPU-s | peak RSS MB | state on disk MB |");
        println!("|---|---|---|---|---|---|---|");
        for r in &results {
            let (maint, rate) = match (ingest, r.name) {
                (_, "ingest") => (
                    "—".to_owned(),
                    format!("ingest: {:.0} rows per CPU-s", o.rows as f64 / r.cpu),
                ),
                (Some(i), _) => {
                    let m = (r.cpu - i).max(1e-3);
                    (format!("{m:.1}"), format!("{:.0}", o.rows as f64 / m))
                }
                (None, _) => ("(no ingest run)".into(), "—".into()),
            };
            println!(
                "| {} | {:.1} | {:.1} | {} | {} | {:.0} | {:.0} |",
                r.name,
                r.cpu,
                r.wall.as_secs_f64(),
                maint,
                rate,
                mb(r.peak_rss),
                mb(r.state_bytes)
            );
        }
        println!();
        if o.reps > 1 {
            println!(
                "Median of {} runs per scenario; every run's server CPU s:",
                o.reps
            );
            for (name, cpu) in &all_cpu {
                let cpu: Vec<String> = cpu.iter().map(|c| format!("{c:.1}")).collect();
                println!("- {name}: {}", cpu.join(", "));
            }
            println!();
        }
        for r in results.iter().filter(|r| r.name == "b") {
            let samples: Vec<String> = r
                .rss_samples
                .iter()
                .map(|(n, rss)| format!("{}M rows: {:.0} MB", *n as f64 / 1e6, mb(*rss)))
                .collect();
            println!(
                "RSS while (b)'s state grows to {:.0} MB ({:.0}× the memory budget): {}\n",
                mb(r.state_bytes),
                mb(r.state_bytes) / o.memory_mb as f64,
                samples.join(", ")
            );
            let memory: Vec<String> = r
                .rocksdb_memory
                .iter()
                .map(|(name, v)| match name.strip_suffix("_bytes") {
                    Some(n) => format!("{n} {:.1} MB", mb(*v as u64)),
                    None => format!("{name} {v}"),
                })
                .collect();
            println!("RocksDB at the end of (b): {}\n", memory.join(", "));
        }
    }
    if only.contains(&"latency") {
        eprintln!("latency …");
        let (p50, p99) = freshet_latency(&o).await?;
        println!("(d) freshet, 1-row UPDATE → visible in view (b) over {} rows: p50 {p50:.2} ms, p99 {p99:.2} ms ({} updates)\n", o.latency_rows, o.updates);
    }
    if only.contains(&"postgres") {
        if o.pg_bin.join("initdb").exists() {
            eprintln!("postgres …");
            pg::compare(&o).await?;
        } else {
            println!("PostgreSQL comparison skipped: no {}", o.pg_bin.display());
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Views(o) => views(o).await,
        Cmd::Tweets(o) => tweets::run(o).await,
        Cmd::Tpcb(o) => tpcb::run(o).await,
        Cmd::Auth(o) => auth::run(o).await,
        Cmd::Reads(o) => reads::run(o).await,
        Cmd::Sinks(o) => sinks::run(o).await,
        Cmd::Latency(o) => latency::run(o).await,
        Cmd::Nexmark(o) => nexmark::run(o).await,
        Cmd::Tpch(o) => tpch::run(o).await,
    }
}
