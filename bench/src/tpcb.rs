//! `freshet-bench tpcb`: pgbench's TPC-B-like transaction (its five statements in BEGIN/END)
//! against freshet and PostgreSQL in the same run, both with fsync at commit, at several
//! client counts; then against freshet again with a materialized view over the accounts
//! maintained. Reports transactions per second, commit latency percentiles (from pgbench's
//! per-transaction log), serialization-failure retries and the server's CPU per transaction.
//!
//! freshet detects write conflicts at COMMIT (first committer wins): transactions that touch
//! the same branch row retry (pgbench `--max-tries`), so the scale should exceed the clients.

use std::path::PathBuf;

use clap::Parser;
use tokio_postgres::Client;

use crate::pg::Cluster;
use crate::pgbench::{Pgbench, Run};
use crate::server::FreshetServer;

#[derive(Parser, Clone)]
pub struct TpcbOpts {
    /// The server binary (a release build).
    #[arg(long, default_value = "target/release/freshet", env = "FRESHET_BIN")]
    freshet_bin: PathBuf,
    /// PostgreSQL's binaries (pgbench, and the side-by-side server).
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// pgbench scale: branches; 10 tellers and 100,000 accounts each.
    #[arg(long, default_value_t = 10)]
    scale: u64,
    /// Client counts, comma-separated.
    #[arg(long, default_value = "1,8,32")]
    clients: String,
    /// Seconds per run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

const SCRIPT: &str = r"\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
";

const VIEW: &str = "CREATE MATERIALIZED VIEW branch_balance AS \
    SELECT bid, sum(abalance) AS balance FROM pgbench_accounts GROUP BY bid";

/// Creates and fills the pgbench tables (as `pgbench -i` would, in statements both systems take).
async fn load(client: &Client, scale: u64) -> anyhow::Result<()> {
    for sql in [
        "CREATE TABLE pgbench_branches (bid INT PRIMARY KEY, bbalance INT, filler CHAR(88))",
        "CREATE TABLE pgbench_tellers (tid INT PRIMARY KEY, bid INT, tbalance INT, filler CHAR(84))",
        "CREATE TABLE pgbench_accounts (aid INT PRIMARY KEY, bid INT, abalance INT, filler CHAR(84))",
        "CREATE TABLE pgbench_history (tid INT, bid INT, aid INT, delta INT, mtime TIMESTAMP, filler CHAR(22))",
    ] {
        client.batch_execute(sql).await?;
    }
    client
        .batch_execute(&format!(
            "INSERT INTO pgbench_branches SELECT x, 0, '' FROM generate_series(1, {scale}) AS t(x)"
        ))
        .await?;
    client
        .batch_execute(&format!(
            "INSERT INTO pgbench_tellers SELECT x, (x - 1) / 10 + 1, 0, '' \
             FROM generate_series(1, {}) AS t(x)",
            scale * 10
        ))
        .await?;
    let accounts = scale * 100_000;
    let chunk = 100_000;
    let mut first = 1;
    while first <= accounts {
        let last = (first + chunk - 1).min(accounts);
        client
            .batch_execute(&format!(
                "INSERT INTO pgbench_accounts SELECT x, (x - 1) / 100000 + 1, 0, '' \
                 FROM generate_series({first}, {last}) AS t(x)"
            ))
            .await?;
        first = last + 1;
    }
    Ok(())
}

/// Runs the TPC-B-like script with `clients` against the server on `port` (`user`, `db`).
fn pgbench(
    o: &TpcbOpts,
    port: u16,
    user: &str,
    db: &str,
    clients: u64,
    pid: Option<u32>,
) -> anyhow::Result<Run> {
    Pgbench {
        pg_bin: &o.pg_bin,
        script: SCRIPT,
        mode: "simple",
        seconds: o.seconds,
        define: format!("scale={}", o.scale),
    }
    .run(port, user, db, clients, pid)
}

fn row(system: &str, clients: u64, r: &Run) {
    let cpu = r
        .cpu_per_txn_ms
        .map(|c| format!("{c:.2}"))
        .unwrap_or_else(|| "—".into());
    println!(
        "| {system} | {clients} | {:.0} | {:.2} | {:.2} | {} | {cpu} |",
        r.tps, r.p50_ms, r.p99_ms, r.retries
    );
}

pub async fn run(o: TpcbOpts) -> anyhow::Result<()> {
    let clients: Vec<u64> = o
        .clients
        .split(',')
        .map(|c| c.trim().parse())
        .collect::<Result<_, _>>()?;
    println!(
        "TPC-B-like (pgbench's five statements in BEGIN/END), scale {}, {} s per run, fsync at commit on both\n",
        o.scale, o.seconds
    );
    println!("| system | clients | TPS | p50 ms | p99 ms | retried | server CPU ms per txn |");
    println!("|---|---|---|---|---|---|---|");
    // PostgreSQL first, then freshet without and with the view, each on a fresh load.
    let pg = Cluster::start_with(&o.pg_bin, true)?;
    let result = async {
        load(&pg.connect().await?, o.scale).await?;
        let mut out = Vec::new();
        for &c in &clients {
            out.push((c, pgbench(&o, pg.port(), "postgres", "postgres", c, None)?));
        }
        anyhow::Ok(out)
    }
    .await;
    pg.stop();
    let pg_runs = result?;
    for (c, r) in &pg_runs {
        row("PostgreSQL 15", *c, r);
    }
    for with_view in [false, true] {
        let server = FreshetServer::start_with(&o.freshet_bin, 256, true).await?;
        let result = async {
            let client = server.connect().await?;
            load(&client, o.scale).await?;
            if with_view {
                client.batch_execute(VIEW).await?;
            }
            let mut out = Vec::new();
            for &c in &clients {
                let r = pgbench(&o, server.port(), "bench", "freshet", c, Some(server.pid()))?;
                out.push((c, r));
            }
            if with_view {
                // The view must equal the table's own sums.
                let view = client
                    .query_one("SELECT sum(balance)::BIGINT FROM branch_balance", &[])
                    .await?;
                let table = client
                    .query_one("SELECT sum(abalance)::BIGINT FROM pgbench_accounts", &[])
                    .await?;
                anyhow::ensure!(
                    view.get::<_, Option<i64>>(0) == table.get::<_, Option<i64>>(0),
                    "view and table disagree"
                );
            }
            anyhow::Ok(out)
        }
        .await;
        server.stop();
        let system = if with_view {
            "freshet + view"
        } else {
            "freshet"
        };
        for (c, r) in result? {
            row(system, c, &r);
            if let Some((_, p)) = pg_runs.iter().find(|(pc, _)| *pc == c) {
                eprintln!(
                    "{system} at {c} clients: {:.2}× PostgreSQL's TPS",
                    r.tps / p.tps
                );
            }
        }
    }
    println!();
    Ok(())
}
