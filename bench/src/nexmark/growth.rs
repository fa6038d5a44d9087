//! `freshet-bench nexmark --state-growth N`: whether a windowed view's state stays bounded.
//! One server, the Nexmark sources and a 10-second tumbling count of bids; the view's operator
//! state (`freshet_internal.view_state`) and the data directory are measured after N/10 events
//! and after N: the windows below the watermark are deleted, so the operator state should stay
//! that of the open windows while ten times more windows pass.

use tokio_postgres::Client;

use super::gen::Config;
use super::{producer, queries, stream, NexmarkOpts, Topics};
use crate::procstat::{dir_bytes, dir_kinds};
use crate::server::FreshetServer;

const VIEW: &str = "CREATE MATERIALIZED VIEW growth AS SELECT window_start, count(*) AS n, \
    max(price) AS hi FROM TUMBLE(bid, date_time, INTERVAL '10 seconds') GROUP BY window_start";

struct State {
    events: u64,
    entries: i64,
    bytes: i64,
    dir: u64,
    kinds: [(&'static str, u64); 4],
}

async fn state(c: &Client, server: &FreshetServer, events: u64) -> anyhow::Result<State> {
    let row = c
        .query_one(
            "SELECT operator_entries, operator_bytes FROM freshet_internal.view_state \
             WHERE view = 'growth'",
            &[],
        )
        .await?;
    Ok(State {
        events,
        entries: row.get(0),
        bytes: row.get(1),
        dir: dir_bytes(&server.data_dir()),
        kinds: dir_kinds(&server.data_dir()),
    })
}

pub async fn run(o: &NexmarkOpts, cfg: &Config, bootstrap: &str, n: u64) -> anyhow::Result<()> {
    let server = FreshetServer::start(&o.freshet_bin, o.memory_mb).await?;
    let result = measure(&server, o, cfg, bootstrap, n).await;
    server.stop();
    let (small, large) = result?;
    let mb = |b: u64| b as f64 / 1048576.0;
    println!("State of a 10-second tumbling count of bids (1 window = {} events):\n", 10 * o.event_rate);
    let kinds: Vec<&str> = small.kinds.iter().map(|k| k.0).collect();
    println!(
        "| events | operator entries | operator MB | data directory MB | {} (MB) |",
        kinds.join(" | ")
    );
    println!("|---|---|---|---|{}", "---|".repeat(kinds.len()));
    for s in [&small, &large] {
        let kinds: Vec<String> = s.kinds.iter().map(|k| format!("{:.1}", mb(k.1))).collect();
        println!(
            "| {} | {} | {:.2} | {:.1} | {} |",
            s.events,
            s.entries,
            mb(s.bytes.max(0) as u64),
            mb(s.dir),
            kinds.join(" | ")
        );
    }
    let ratio = large.bytes as f64 / small.bytes.max(1) as f64;
    println!(
        "\noperator state after {} events / after {}: {ratio:.2}× ({})",
        large.events,
        small.events,
        if ratio <= 2.0 { "bounded" } else { "GROWS" }
    );
    anyhow::ensure!(ratio <= 2.0, "the windowed view's state grew {ratio:.2}×");
    Ok(())
}

async fn measure(
    server: &FreshetServer,
    o: &NexmarkOpts,
    cfg: &Config,
    bootstrap: &str,
    n: u64,
) -> anyhow::Result<(State, State)> {
    let c = server.connect().await?;
    let prefix = "growth-";
    c.batch_execute(
        &queries::SOURCES
            .replace("{prefix}", prefix)
            .replace("{bootstrap}", bootstrap),
    )
    .await?;
    c.batch_execute(VIEW).await?;
    let p = producer(bootstrap)?;
    let to = Topics {
        prefix,
        partitions: o.partitions,
        backlog: o.backlog,
    };
    stream(&c, &p, cfg, &to, 0..n / 10, &mut || {}).await?;
    let small = state(&c, server, n / 10).await?;
    stream(&c, &p, cfg, &to, n / 10..n, &mut || {}).await?;
    let large = state(&c, server, n).await?;
    // Every bid counted once: 46 of every 50 events.
    let counted: i64 = c
        .query_one("SELECT CAST(sum(n) AS BIGINT) FROM growth", &[])
        .await?
        .get(0);
    let bids = (0..n).filter(|i| i % 50 >= 4).count() as i64;
    anyhow::ensure!(counted == bids, "the view counted {counted} of {bids} bids");
    Ok((small, large))
}
