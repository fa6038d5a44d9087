//! `freshet-bench nexmark`: the Nexmark queries over Kafka + JSON, each measured alone and
//! checked against PostgreSQL.
//!
//! The generator ([`gen`]) makes `--events` events (persons, auctions, bids 1:3:46) with event
//! time moving `1/--event-rate` seconds per event. PostgreSQL loads them once into tables and
//! computes each query from scratch; then, per query, a fresh server gets the three sources
//! (`person`, `auction`, `bid` topics of librdkafka's mock cluster in this process, with a
//! watermark on `date_time`) and the query's materialized view, and the events are produced
//! while the view maintains itself (at most `--backlog` unread: the mock broker forgets older
//! messages). Reported per query: events per server CPU-second from the first event to FLUSH
//! having seen the last, wall time, peak RSS, the data directory's size at the end, the view's
//! rows, and whether they equal PostgreSQL's (numbers compared to 9 significant digits).
//! A query freshet refuses is listed with its error. Exit status 1 when any result differs.
//!
//! Loopback only; it ends only the processes it started.

pub mod gen;
mod growth;
pub mod queries;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::SinkExt;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::pg::Cluster;
use crate::procstat::{cpu_seconds, dir_bytes, rss_bytes};
use crate::server::FreshetServer;
use gen::Config;
use queries::Query;

#[derive(clap::Parser, Clone)]
pub struct NexmarkOpts {
    /// The server binary (a release build).
    #[arg(long, default_value = "target/release/freshet", env = "FRESHET_BIN")]
    freshet_bin: PathBuf,
    /// Events per query run.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Only these queries (comma-separated; default every one).
    #[arg(long, value_delimiter = ',')]
    queries: Vec<String>,
    /// Events per second of event time.
    #[arg(long, default_value_t = 10_000)]
    event_rate: u64,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Events produced but not yet read by the server, at most.
    #[arg(long, default_value_t = 40_000)]
    backlog: u64,
    /// The server's memory budget (`--memory-mb`), MB.
    #[arg(long, default_value_t = 1024)]
    memory_mb: u64,
    /// PostgreSQL's binaries; the check is skipped when they are missing.
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// Measure only: no PostgreSQL check.
    #[arg(long)]
    no_check: bool,
    /// Runs of each query, each on a fresh server: the report gives the median run's figures
    /// (by events per CPU-second) and every run's rate; each run is checked.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Instead of the queries: the state of a tumbling-window view after this many events,
    /// next to its state after a tenth of them.
    #[arg(long)]
    state_growth: Option<u64>,
}

/// 2026-01-01 00:00:00 UTC, in microseconds.
const BASE_US: i64 = 1_767_225_600_000_000;

/// What one query's runs found: the median run, every run's events per CPU-second.
struct Outcome {
    name: &'static str,
    run: Result<Run, String>,
    rates: Vec<f64>,
    check: Check,
}

struct Run {
    cpu: f64,
    wall: f64,
    peak_rss: u64,
    state_bytes: u64,
    rows: Vec<String>,
}

enum Check {
    Skipped,
    Equal,
    Differs(String),
}

pub async fn run(o: NexmarkOpts) -> anyhow::Result<()> {
    let cfg = Config {
        base_us: BASE_US,
        step_us: (1_000_000 / o.event_rate.max(1)).max(1) as i64,
    };
    if let Some(n) = o.state_growth {
        let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1)?;
        for t in ["person", "auction", "bid"] {
            cluster.create_topic(&format!("growth-{t}"), o.partitions, 1)?;
        }
        return growth::run(&o, &cfg, &cluster.bootstrap_servers(), n).await;
    }
    let selected: Vec<Query> = queries::all()
        .into_iter()
        .filter(|q| o.queries.is_empty() || o.queries.iter().any(|n| n == q.name))
        .collect();
    anyhow::ensure!(!selected.is_empty(), "no such query: {:?}", o.queries);
    let check = !o.no_check && o.pg_bin.join("initdb").exists();
    let pg = if check {
        eprintln!("PostgreSQL loads {} events …", o.events);
        let cluster = Cluster::start_with(&o.pg_bin, false)?;
        let client = cluster.connect().await?;
        load_postgres(&client, &cfg, o.events).await?;
        Some((cluster, client))
    } else {
        None
    };
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1)?;
    let bootstrap = cluster.bootstrap_servers();
    let mut outcomes = Vec::new();
    for q in &selected {
        eprintln!("{} …", q.name);
        let expected = match &pg {
            Some((_, client)) => Some(
                rows(client, q.postgres)
                    .await
                    .map_err(|e| format!("PostgreSQL: {e:#}")),
            ),
            None => None,
        };
        let mut runs = Vec::new();
        let mut check = Check::Skipped;
        for n in 0..o.runs.max(1) {
            let prefix = format!("{}-{n}-", q.name);
            for t in ["person", "auction", "bid"] {
                cluster.create_topic(&format!("{prefix}{t}"), o.partitions, 1)?;
            }
            let run = match measure(&o, &cfg, &bootstrap, q, &prefix).await {
                Ok(run) => run,
                Err(e) => {
                    runs.clear();
                    check = Check::Differs(format!("{e:#}"));
                    break;
                }
            };
            check = match (&check, &expected) {
                (Check::Differs(_), _) => check,
                (_, Some(Ok(expected))) => compare(&run.rows, expected),
                (_, Some(Err(e))) => Check::Differs(e.clone()),
                (_, None) => Check::Skipped,
            };
            runs.push(run);
        }
        let rates: Vec<f64> = runs.iter().map(|r| o.events as f64 / r.cpu.max(1e-6)).collect();
        // The median run by rate (the lower middle one of an even number).
        runs.sort_by(|a, b| b.cpu.total_cmp(&a.cpu));
        let run = match runs.len() {
            0 => Err(match &check {
                Check::Differs(e) => e.clone(),
                _ => "no run".to_string(),
            }),
            n => Ok(runs.swap_remove((n - 1) / 2)),
        };
        if run.is_err() {
            check = Check::Skipped;
        }
        outcomes.push(Outcome {
            name: q.name,
            run,
            rates,
            check,
        });
    }
    if let Some((cluster, _)) = pg {
        cluster.stop();
    }
    report(&o, &outcomes);
    if outcomes
        .iter()
        .any(|r| matches!(r.check, Check::Differs(_)))
    {
        std::process::exit(1);
    }
    Ok(())
}

fn report(o: &NexmarkOpts, outcomes: &[Outcome]) {
    let mb = |b: u64| b as f64 / 1048576.0;
    println!(
        "Nexmark over Kafka + JSON: {} events per query ({} events/s of event time, {} partitions)\n",
        o.events, o.event_rate, o.partitions
    );
    let runs = if o.runs > 1 {
        format!(" (median of {})", o.runs)
    } else {
        String::new()
    };
    println!("| query | events / server CPU-s{runs} | every run | server CPU s | wall s | peak RSS MB | state MB | rows | PostgreSQL |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in outcomes {
        let check = match &r.check {
            Check::Skipped => "not checked".to_string(),
            Check::Equal => "equal".to_string(),
            Check::Differs(d) => format!("DIFFERS: {d}"),
        };
        let every = r
            .rates
            .iter()
            .map(|e| format!("{:.0}k", e / 1000.0))
            .collect::<Vec<_>>()
            .join(", ");
        match &r.run {
            Ok(m) => println!(
                "| {} | {:.0} | {every} | {:.2} | {:.1} | {:.0} | {:.1} | {} | {check} |",
                r.name,
                o.events as f64 / m.cpu.max(1e-6),
                m.cpu,
                m.wall,
                mb(m.peak_rss),
                mb(m.state_bytes),
                m.rows.len()
            ),
            Err(e) => println!(
                "| {} | refused | | | | | | | {} |",
                r.name,
                e.replace('\n', " ").replace('|', "/")
            ),
        }
    }
}

/// The events, COPYed into PostgreSQL's tables, and the windowed forms built.
async fn load_postgres(client: &Client, cfg: &Config, events: u64) -> anyhow::Result<()> {
    client.batch_execute(queries::TABLES).await?;
    const CHUNK: u64 = 100_000;
    let mut start = 0;
    while start < events {
        let end = (start + CHUNK).min(events);
        let mut by_table: BTreeMap<&str, String> = BTreeMap::new();
        for n in start..end {
            let (table, row) = cfg.event(n).copy_row();
            by_table.entry(table).or_default().push_str(&row);
        }
        for (table, data) in by_table {
            let sink = client.copy_in(&format!("COPY {table} FROM STDIN")).await?;
            futures::pin_mut!(sink);
            sink.send(bytes::Bytes::from(data)).await?;
            sink.finish().await?;
        }
        start = end;
    }
    client.batch_execute(queries::PG_WINDOWS).await?;
    // PostgreSQL quiet before freshet is measured: no autovacuum of the new tables and no
    // checkpoint writing them out on the other core meanwhile.
    client.batch_execute("VACUUM (FREEZE, ANALYZE)").await?;
    client.batch_execute("CHECKPOINT").await?;
    Ok(())
}

fn producer(bootstrap: &str) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "2097151")
        .create()?)
}

async fn measure(
    o: &NexmarkOpts,
    cfg: &Config,
    bootstrap: &str,
    q: &Query,
    prefix: &str,
) -> anyhow::Result<Run> {
    // What earlier runs and PostgreSQL's load left in the page cache is written out first:
    // the kernel's writeback would otherwise share the two cores with the run measured.
    let _ = std::process::Command::new("sync").status();
    let server = FreshetServer::start(&o.freshet_bin, o.memory_mb).await?;
    let result = measure_on(&server, o, cfg, bootstrap, q, prefix).await;
    server.stop();
    result
}

async fn measure_on(
    server: &FreshetServer,
    o: &NexmarkOpts,
    cfg: &Config,
    bootstrap: &str,
    q: &Query,
    prefix: &str,
) -> anyhow::Result<Run> {
    let c = server.connect().await?;
    c.batch_execute(
        &queries::SOURCES
            .replace("{prefix}", prefix)
            .replace("{bootstrap}", bootstrap),
    )
    .await?;
    c.batch_execute(&format!(
        "CREATE MATERIALIZED VIEW nexmark_{} AS {}",
        q.name, q.freshet
    ))
    .await?;
    let p = producer(bootstrap)?;
    let cpu0 = cpu_seconds(server.pid())?;
    let start = Instant::now();
    let mut peak = 0u64;
    let topics = Topics {
        prefix,
        partitions: o.partitions,
        backlog: o.backlog,
    };
    stream(&c, &p, cfg, &topics, 0..o.events, &mut || {
        peak = peak.max(rss_bytes(server.pid()).map(|(_, hwm)| hwm).unwrap_or(0));
    })
    .await?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid())? - cpu0;
    peak = peak.max(rss_bytes(server.pid()).map(|(_, hwm)| hwm).unwrap_or(0));
    let read = crate::probe::messages_read(&c).await?;
    anyhow::ensure!(
        read == o.events,
        "the server read {read} of {} events",
        o.events
    );
    let errors: i64 = c
        .query_one(
            "SELECT CAST((SELECT count(*) FROM freshet_internal.source_errors) \
             + (SELECT count(*) FROM freshet_internal.view_errors) AS BIGINT)",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(errors == 0, "{errors} source or view errors");
    let rows = rows(&c, &format!("SELECT * FROM nexmark_{}", q.name)).await?;
    Ok(Run {
        cpu,
        wall,
        peak_rss: peak,
        state_bytes: dir_bytes(&server.data_dir()),
        rows,
    })
}

/// Where events go: `{prefix}person|auction|bid`, spread over `partitions`.
struct Topics<'a> {
    prefix: &'a str,
    partitions: i32,
    /// Events produced but not yet read by the server, at most.
    backlog: u64,
}

/// Produces `events` while the server reads them (at most `backlog` unread), calling `tick`
/// between rounds; returns once the server has read them all (FLUSH).
async fn stream(
    c: &Client,
    p: &ThreadedProducer<DefaultProducerContext>,
    cfg: &Config,
    to: &Topics<'_>,
    events: std::ops::Range<u64>,
    tick: &mut dyn FnMut(),
) -> anyhow::Result<()> {
    let names: Vec<(&str, String)> = ["person", "auction", "bid"]
        .into_iter()
        .map(|t| (t, format!("{}{t}", to.prefix)))
        .collect();
    let before = crate::probe::messages_read(c).await?;
    let mut produced = events.start;
    while produced < events.end {
        let read = crate::probe::messages_read(c).await?.saturating_sub(before);
        let unread = (produced - events.start).saturating_sub(read);
        if unread < to.backlog / 2 {
            let next = (produced + to.backlog / 2).min(events.end);
            for n in produced..next {
                let (topic, json) = cfg.event(n).json();
                let topic = names
                    .iter()
                    .find_map(|(t, name)| (*t == topic).then_some(name.as_str()))
                    .expect("one of the three topics");
                crate::probe::send(
                    p,
                    BaseRecord::<(), str>::to(topic)
                        .payload(&json)
                        .partition((n % to.partitions as u64) as i32),
                );
            }
            produced = next;
        } else {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tick();
    }
    p.flush(Duration::from_secs(60))?;
    c.batch_execute("FLUSH").await?;
    tick();
    Ok(())
}

/// A query's rows as text, normalized and sorted.
async fn rows(c: &Client, sql: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for m in c.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(r) = m {
            let fields: Vec<String> = (0..r.len())
                .map(|i| r.get(i).map_or_else(|| "NULL".to_string(), normalize))
                .collect();
            out.push(fields.join(" | "));
        }
    }
    out.sort();
    Ok(out)
}

/// A number to 9 significant digits (integers as they are), anything else unchanged.
fn normalize(v: &str) -> String {
    let numeric = v
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && v.bytes().any(|b| b.is_ascii_digit());
    match v.parse::<f64>() {
        Ok(x) if numeric => {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{}", x as i64)
            } else {
                format!("{x:.8e}")
            }
        }
        _ => v.to_string(),
    }
}

fn compare(got: &[String], want: &[String]) -> Check {
    if got == want {
        return Check::Equal;
    }
    let (mut extra, mut missing) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < got.len() || j < want.len() {
        match (got.get(i), want.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                extra.push(a);
                i += 1;
            }
            (Some(a), None) => {
                extra.push(a);
                i += 1;
            }
            (_, Some(b)) => {
                missing.push(b);
                j += 1;
            }
            (None, None) => break,
        }
    }
    Check::Differs(format!(
        "{} rows vs {}; {} only in freshet (first: {:?}), {} only in PostgreSQL (first: {:?})",
        got.len(),
        want.len(),
        extra.len(),
        extra.first(),
        missing.len(),
        missing.first()
    ))
}
