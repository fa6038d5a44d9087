//! `freshet-bench auth`: what logins cost. For freshet with `--auth trust` and `--auth scram`,
//! and PostgreSQL with `trust` and `scram-sha-256` host authentication: connection set-up
//! time (TCP connect, startup, authentication, first ReadyForQuery) over `--connections`
//! fresh connections, and point reads (`SELECT v FROM kv WHERE k = $1`, prepared) on one
//! reused connection, as reads per server CPU-second and latency percentiles.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use freshet_testkit::{Launch, PgOptions, Postgres};
use crate::{percentiles, procstat};

#[derive(clap::Parser, Clone)]
pub struct AuthOpts {
    /// The server binary (a release build).
    #[arg(long, default_value = "target/release/freshet", env = "FRESHET_BIN")]
    freshet_bin: PathBuf,
    /// Debian's PostgreSQL binaries.
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// Fresh connections timed per server.
    #[arg(long, default_value_t = 300)]
    connections: usize,
    /// Point reads on one reused connection per server.
    #[arg(long, default_value_t = 20_000)]
    reads: usize,
}

const PASSWORD: &str = "bench password";
const KEYS: i32 = 10_000;

struct Measured {
    label: String,
    connect_p50_ms: f64,
    connect_p99_ms: f64,
    reads_per_cpu_s: f64,
    read_p50_ms: f64,
    read_p99_ms: f64,
}

pub async fn run(o: AuthOpts) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for scram in [false, true] {
        out.push(freshet(&o, scram).await?);
    }
    for scram in [false, true] {
        out.push(postgres(&o, scram).await?);
    }
    println!("\n| server | connection set-up p50 / p99 (ms) | point reads per server CPU-s | read p50 / p99 (ms) |");
    println!("|---|---|---|---|");
    for m in &out {
        println!(
            "| {} | {:.2} / {:.2} | {:.0} | {:.3} / {:.3} |",
            m.label, m.connect_p50_ms, m.connect_p99_ms, m.reads_per_cpu_s, m.read_p50_ms, m.read_p99_ms
        );
    }
    Ok(())
}

async fn connect(dsn: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(dsn, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn connect_retrying(dsn: &str) -> anyhow::Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match connect(dsn).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Loads `kv`, then times `o.connections` fresh connections and `o.reads` point reads on one.
/// `pid`: the process serving the reads; `None` for PostgreSQL's backend of the connection.
async fn measure(o: &AuthOpts, label: String, dsn: &str, pid: Option<u32>) -> anyhow::Result<Measured> {
    let setup = connect_retrying(dsn).await?;
    setup
        .batch_execute("DROP TABLE IF EXISTS kv; CREATE TABLE kv (k INT PRIMARY KEY, v INT)")
        .await?;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let values: Vec<String> = chunk.iter().map(|k| format!("({k}, {})", k * 7)).collect();
        setup
            .batch_execute(&format!("INSERT INTO kv VALUES {}", values.join(",")))
            .await?;
    }
    drop(setup);
    let mut connects = Vec::new();
    for _ in 0..o.connections {
        let t = Instant::now();
        let c = connect(dsn).await?;
        connects.push(t.elapsed());
        drop(c);
    }
    let (c50, c99) = percentiles(connects);
    let client = connect(dsn).await?;
    let pid = match pid {
        Some(p) => p,
        None => client.query_one("SELECT pg_backend_pid()", &[]).await?.get::<_, i32>(0) as u32,
    };
    let stmt = client.prepare("SELECT v FROM kv WHERE k = $1").await?;
    let cpu0 = procstat::cpu_seconds(pid)?;
    let mut reads = Vec::with_capacity(o.reads);
    for i in 0..o.reads {
        let k = (i as i32 * 7919) % KEYS;
        let t = Instant::now();
        let row = client.query_one(&stmt, &[&k]).await?;
        reads.push(t.elapsed());
        anyhow::ensure!(row.get::<_, i32>(0) == k * 7, "wrong value for key {k}");
    }
    let cpu = procstat::cpu_seconds(pid)? - cpu0;
    let n = reads.len() as f64;
    let (r50, r99) = percentiles(reads);
    Ok(Measured {
        label,
        connect_p50_ms: c50,
        connect_p99_ms: c99,
        reads_per_cpu_s: n / cpu.max(1e-9),
        read_p50_ms: r50,
        read_p99_ms: r99,
    })
}

async fn freshet(o: &AuthOpts, scram: bool) -> anyhow::Result<Measured> {
    let mode = if scram { "scram" } else { "trust" };
    let server = Launch::new(&o.freshet_bin)
        .args(["--auth", mode])
        .env("FRESHET_SUPERUSER_PASSWORD", PASSWORD)
        .quiet()
        .start()?;
    let dsn = format!("{} password='{PASSWORD}'", server.dsn("freshet"));
    measure(o, format!("freshet, {mode}"), &dsn, Some(server.pid())).await
}

async fn postgres(o: &AuthOpts, scram: bool) -> anyhow::Result<Measured> {
    let host_auth = if scram { "scram-sha-256" } else { "trust" };
    let options = PgOptions {
        host_auth,
        password: Some(PASSWORD.to_owned()),
        ..PgOptions::default()
    };
    let pg = Postgres::start(&o.pg_bin, &options)?;
    let dsn = format!("{} password='{PASSWORD}'", pg.dsn("postgres"));
    // Reads are served by the connection's own backend process.
    measure(o, format!("PostgreSQL, {host_auth}"), &dsn, None).await
}
