//! The same work in PostgreSQL: a throwaway cluster (Debian's binaries, fsync off, as the
//! freshet side runs without fsync), `REFRESH MATERIALIZED VIEW CONCURRENTLY` after a 1-row
//! change, and statement-level triggers with transition tables maintaining the counts.

use std::path::Path;
use std::time::{Duration, Instant};

use freshet_testkit::{PgOptions, Postgres};
use tokio_postgres::Client;

use crate::server::connect_until;
use crate::{load, percentiles, procstat, ViewsOpts};

pub(crate) struct Cluster {
    pg: Postgres,
}

impl Cluster {
    pub(crate) fn port(&self) -> u16 {
        self.pg.port()
    }

    fn start(bin: &Path) -> anyhow::Result<Cluster> {
        Self::start_with(bin, false)
    }

    /// A cluster; `durable`: fsync and synchronous commit on (PostgreSQL's defaults).
    pub(crate) fn start_with(bin: &Path, durable: bool) -> anyhow::Result<Cluster> {
        let options = PgOptions {
            durable,
            settings: vec!["shared_buffers=256MB".into(), "max_connections=200".into()],
            ..PgOptions::default()
        };
        Ok(Cluster {
            pg: Postgres::start(bin, &options)?,
        })
    }

    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        connect_until(&self.pg.dsn("postgres"), Instant::now() + Duration::from_secs(60)).await
    }

    pub(crate) fn stop(&self) {
        self.pg.stop();
    }
}

const TRIGGERS: &str = r#"
CREATE TABLE vt (g BIGINT PRIMARY KEY, c BIGINT NOT NULL, sv NUMERIC NOT NULL);
CREATE FUNCTION vt_add() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO vt SELECT g, count(*), sum(v) FROM new_rows GROUP BY g
  ON CONFLICT (g) DO UPDATE SET c = vt.c + EXCLUDED.c, sv = vt.sv + EXCLUDED.sv;
  RETURN NULL; END $$;
CREATE FUNCTION vt_sub() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  UPDATE vt SET c = vt.c - d.c, sv = vt.sv - d.sv
  FROM (SELECT g, count(*) AS c, sum(v) AS sv FROM old_rows GROUP BY g) d WHERE vt.g = d.g;
  RETURN NULL; END $$;
CREATE FUNCTION vt_upd() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  UPDATE vt SET c = vt.c - d.c, sv = vt.sv - d.sv
  FROM (SELECT g, count(*) AS c, sum(v) AS sv FROM old_rows GROUP BY g) d WHERE vt.g = d.g;
  INSERT INTO vt SELECT g, count(*), sum(v) FROM new_rows GROUP BY g
  ON CONFLICT (g) DO UPDATE SET c = vt.c + EXCLUDED.c, sv = vt.sv + EXCLUDED.sv;
  RETURN NULL; END $$;
CREATE TRIGGER t_ins AFTER INSERT ON t REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vt_add();
CREATE TRIGGER t_del AFTER DELETE ON t REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vt_sub();
CREATE TRIGGER t_upd AFTER UPDATE ON t REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vt_upd();
"#;

const TABLE: &str = "CREATE TABLE t (id BIGINT PRIMARY KEY, g BIGINT, v BIGINT, s TEXT)";
const VIEW: &str =
    "SELECT g, count(*) AS c, sum(v) AS sv, min(v) AS mn, max(v) AS mx FROM t GROUP BY g";

async fn backend_cpu(client: &Client) -> anyhow::Result<f64> {
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    procstat::cpu_seconds(pid as u32)
}

/// Loads `rows` into `t` of a fresh database; returns the backend's CPU seconds for it.
async fn load_cpu(
    cluster: &Cluster,
    db: &str,
    extra: &str,
    o: &ViewsOpts,
) -> anyhow::Result<(Client, f64)> {
    let admin = cluster.connect().await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    let dsn = format!(
        "host=127.0.0.1 port={} dbname={db} user=postgres",
        cluster.port()
    );
    let client = connect_until(&dsn, Instant::now() + Duration::from_secs(30)).await?;
    client.batch_execute(TABLE).await?;
    client.batch_execute(extra).await?;
    let cpu0 = backend_cpu(&client).await?;
    load(&client, "t", 0, o.latency_rows, o, |_| {}).await?;
    let cpu = backend_cpu(&client).await? - cpu0;
    Ok((client, cpu))
}

pub async fn compare(o: &ViewsOpts) -> anyhow::Result<()> {
    let cluster = Cluster::start(&o.pg_bin)?;
    let result = run(&cluster, o).await;
    cluster.stop();
    result
}

async fn run(cluster: &Cluster, o: &ViewsOpts) -> anyhow::Result<()> {
    let n = o.latency_rows;
    // Plain load, then the materialized view refreshed after each 1-row change.
    let (plain, plain_cpu) = load_cpu(cluster, "plain", "", o).await?;
    plain
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW vb AS {VIEW}; CREATE UNIQUE INDEX ON vb (g); ANALYZE t"
        ))
        .await?;
    let mut refresh = Vec::new();
    for k in 0..o.refreshes as u64 {
        let id = (k * 7_919) % n;
        let t0 = Instant::now();
        plain
            .execute("UPDATE t SET v = v + 1000 WHERE id = $1", &[&(id as i64)])
            .await?;
        plain
            .batch_execute("REFRESH MATERIALIZED VIEW CONCURRENTLY vb")
            .await?;
        refresh.push(t0.elapsed());
    }
    let (r50, r99) = percentiles(refresh);
    // Statement-level triggers maintaining count and sum per group.
    let (trig, trig_cpu) = load_cpu(cluster, "triggers", TRIGGERS, o).await?;
    let mut lat = Vec::new();
    for k in 0..o.updates as u64 {
        let id = (k * 7_919) % n;
        let t0 = Instant::now();
        trig.execute("UPDATE t SET v = v + 1000 WHERE id = $1", &[&(id as i64)])
            .await?;
        lat.push(t0.elapsed());
    }
    let (t50, t99) = percentiles(lat);
    let check: i64 = trig
        .query_one("SELECT sum(c)::bigint FROM vt", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        check == n as i64,
        "trigger-maintained counts sum to {check}, expected {n}"
    );
    println!("PostgreSQL 15 (same machine, fsync off), base of {n} rows loaded with COPY batches of {}:\n", o.batch);
    println!("| | value |");
    println!("|---|---|");
    println!(
        "| ingest, backend CPU s (no view) | {plain_cpu:.1} ({:.0} rows per CPU-s) |",
        n as f64 / plain_cpu
    );
    println!("| ingest with statement triggers maintaining count/sum per group, backend CPU s | {trig_cpu:.1} |");
    let maint = (trig_cpu - plain_cpu).max(1e-3);
    println!(
        "| trigger maintenance: rows per CPU-s | {:.0} |",
        n as f64 / maint
    );
    println!("| 1-row UPDATE + REFRESH MATERIALIZED VIEW CONCURRENTLY, p50 / p99 ms | {r50:.1} / {r99:.1} ({} runs) |", o.refreshes);
    println!(
        "| 1-row UPDATE with triggers, p50 / p99 ms | {t50:.2} / {t99:.2} ({} updates) |",
        o.updates
    );
    println!();
    Ok(())
}
