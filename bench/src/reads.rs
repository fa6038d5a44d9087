//! `freshet-bench reads`: what applications reading live data see — pgbench point reads by
//! key (`SELECT v FROM rel WHERE k = :k`), prepared and simple protocol, at several client
//! counts, on a table and on a materialized view over it, freshet next to PostgreSQL 15 (its
//! materialized view with a unique index on the key). Reports reads per second, latency
//! percentiles and freshet's server CPU per read.

use std::path::PathBuf;

use clap::Parser;
use tokio_postgres::Client;

use crate::pg::Cluster;
use crate::pgbench::{Pgbench, Run};
use crate::server::FreshetServer;

#[derive(Parser, Clone)]
pub struct ReadsOpts {
    /// The server binary (a release build).
    #[arg(long, default_value = "target/release/freshet", env = "FRESHET_BIN")]
    freshet_bin: PathBuf,
    /// PostgreSQL's binaries (pgbench, and the side-by-side server).
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// Rows in the table (and the view).
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// Client counts, comma-separated.
    #[arg(long, default_value = "1,8")]
    clients: String,
    /// pgbench protocols, comma-separated.
    #[arg(long, default_value = "prepared,simple")]
    modes: String,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

const RELATIONS: [&str; 2] = ["kv", "kv_view"];

async fn load(client: &Client, rows: u64, postgres: bool) -> anyhow::Result<()> {
    client
        .batch_execute("CREATE TABLE kv (k INT PRIMARY KEY, v TEXT)")
        .await?;
    client
        .batch_execute(&format!(
            "INSERT INTO kv SELECT x, 'value ' || x FROM generate_series(1, {rows}) AS t(x)"
        ))
        .await?;
    client
        .batch_execute("CREATE MATERIALIZED VIEW kv_view AS SELECT k, v FROM kv")
        .await?;
    if postgres {
        client
            .batch_execute("CREATE UNIQUE INDEX ON kv_view (k)")
            .await?;
        client.batch_execute("VACUUM ANALYZE").await?;
    }
    Ok(())
}

/// Every (relation, mode, clients) run against the server on `port`.
fn runs(
    o: &ReadsOpts,
    port: u16,
    user: &str,
    db: &str,
    pid: Option<u32>,
) -> anyhow::Result<Vec<(String, Run)>> {
    let mut out = Vec::new();
    for rel in RELATIONS {
        let script = format!("\\set k random(1, :rows)\nSELECT v FROM {rel} WHERE k = :k;\n");
        for mode in o.modes.split(',') {
            for clients in o.clients.split(',') {
                let clients: u64 = clients.trim().parse()?;
                let r = Pgbench {
                    pg_bin: &o.pg_bin,
                    script: &script,
                    mode: mode.trim(),
                    seconds: o.seconds,
                    define: format!("rows={}", o.rows),
                }
                .run(port, user, db, clients, pid)?;
                out.push((format!("{rel} | {} | {clients}", mode.trim()), r));
            }
        }
    }
    Ok(out)
}

pub async fn run(o: ReadsOpts) -> anyhow::Result<()> {
    println!(
        "Point reads by key (pgbench), {} rows, {} s per run\n",
        o.rows, o.seconds
    );
    let pg = Cluster::start_with(&o.pg_bin, true)?;
    let result = async {
        load(&pg.connect().await?, o.rows, true).await?;
        runs(&o, pg.port(), "postgres", "postgres", None)
    }
    .await;
    pg.stop();
    let pg_runs = result?;
    let server = FreshetServer::start_with(&o.freshet_bin, 256, true).await?;
    let result = async {
        load(&server.connect().await?, o.rows, false).await?;
        runs(&o, server.port(), "bench", "freshet", Some(server.pid()))
    }
    .await;
    server.stop();
    let ours = result?;
    println!("| relation | mode | clients | PostgreSQL reads/s | freshet reads/s | ratio | p50 ms PG / freshet | p99 ms PG / freshet | freshet CPU ms per read |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for ((what, p), (_, f)) in pg_runs.iter().zip(&ours) {
        let cpu = f
            .cpu_per_txn_ms
            .map(|c| format!("{c:.3}"))
            .unwrap_or_else(|| "—".into());
        println!(
            "| {what} | {:.0} | {:.0} | {:.2} | {:.3} / {:.3} | {:.3} / {:.3} | {cpu} |",
            p.tps,
            f.tps,
            f.tps / p.tps,
            p.p50_ms,
            f.p50_ms,
            p.p99_ms,
            f.p99_ms
        );
    }
    println!();
    Ok(())
}
