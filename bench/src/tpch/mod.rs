//! `freshet-bench tpch`: the 22 TPC-H queries as materialized views, freshet next to PostgreSQL
//! in one run. Both load the same generated data (`tpchgen`); freshet creates each view
//! (its backfill) where PostgreSQL computes it (`CREATE MATERIALIZED VIEW`); then each refresh
//! batch (one transaction: new orders, deleted orders, repriced lineitems) runs on both, and
//! PostgreSQL recomputes every view (`REFRESH MATERIALIZED VIEW`) while freshet maintains them.
//! Every view's contents are compared with PostgreSQL's after the backfill and after every
//! batch (and, with `--kill`, after a `kill -9` and restart of freshet); any difference makes
//! the run fail.

mod data;
mod queries;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::pg::Cluster;
use crate::procstat;
use crate::server::FreshetServer;

#[derive(Parser, Clone)]
pub struct TpchOpts {
    /// The server binary (a release build).
    #[arg(long, default_value = "target/release/freshet", env = "FRESHET_BIN")]
    freshet_bin: PathBuf,
    /// PostgreSQL's binaries (the side-by-side server and oracle).
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// TPC-H scale factor.
    #[arg(long, default_value_t = 0.1)]
    sf: f64,
    /// Refresh batches.
    #[arg(long, default_value_t = 3)]
    batches: usize,
    /// The queries made views, comma-separated numbers (all 22 when empty).
    #[arg(long, default_value = "")]
    queries: String,
    /// The server's memory budget (`--memory-mb`), MB.
    #[arg(long, default_value_t = 1024)]
    memory_mb: u64,
    /// After the last batch, kill -9 freshet, restart it on its data and compare again.
    #[arg(long)]
    kill: bool,
}

/// Seconds of one step on each side.
struct Step {
    name: String,
    freshet: Duration,
    freshet_cpu: f64,
    postgres: Duration,
}

pub async fn run(o: TpchOpts) -> anyhow::Result<()> {
    let queries: Vec<queries::Query> = match o.queries.trim() {
        "" => queries::all(o.sf),
        list => list
            .split(',')
            .map(|n| Ok(queries::query(n.trim().parse()?, o.sf)))
            .collect::<anyhow::Result<_>>()?,
    };
    let mut freshet = FreshetServer::start(&o.freshet_bin, o.memory_mb).await?;
    let pg = Cluster::start_with(&o.pg_bin, false)?;
    let (fc, pc) = (freshet.connect().await?, pg.connect().await?);
    let mut steps = Vec::new();
    let mut differences = Differences::default();
    // freshet's time in each statement of the batches, summed over the batches.
    let mut statements: Vec<(&str, Duration)> = Vec::new();

    eprintln!("loading SF {} …", o.sf);
    let rows = timed(&freshet, &mut steps, "load", data::load(&fc, o.sf), async {
        data::load(&pc, o.sf).await?;
        pc.batch_execute("ANALYZE").await?;
        Ok(())
    })
    .await?;
    eprintln!("{rows} rows; creating views …");
    for q in &queries {
        for view in &q.views {
            // freshet has no plain (non-materialized) views yet: it maintains Q15's too.
            let materialized = view.replacen("create view", "create materialized view", 1);
            fc.batch_execute(&materialized).await?;
            pc.batch_execute(view).await?;
        }
        let create = format!("CREATE MATERIALIZED VIEW {} AS {}", q.name(), q.select);
        timed(
            &freshet,
            &mut steps,
            &q.name(),
            fc.batch_execute(&create),
            async { Ok(pc.batch_execute(&create).await?) },
        )
        .await?;
    }
    compare(&fc, &pc, &queries, "backfill", &mut differences).await?;
    for b in 0..o.batches {
        eprintln!("batch {} …", b + 1);
        let batch = data::Batch::new(b, o.sf);
        let name = format!("batch {}", b + 1);
        let times = timed(&freshet, &mut steps, &name, batch.run(&fc), async {
            batch.run(&pc).await?;
            for q in &queries {
                pc.batch_execute(&format!("REFRESH MATERIALIZED VIEW {}", q.name()))
                    .await?;
            }
            Ok(())
        })
        .await?;
        for (i, (statement, t)) in times.into_iter().enumerate() {
            match statements.get_mut(i) {
                Some((_, sum)) => *sum += t,
                None => statements.push((statement, t)),
            }
        }
        compare(&fc, &pc, &queries, &name, &mut differences).await?;
    }
    let (_, peak_rss) = procstat::rss_bytes(freshet.pid())?;
    let memory = memory_parts(&fc).await?;
    let state = procstat::dir_bytes(&freshet.data_dir());
    if o.kill {
        drop(fc);
        freshet = freshet.crash_and_restart().await?;
        let fc = freshet.connect().await?;
        compare(&fc, &pc, &queries, "kill -9", &mut differences).await?;
    }
    report(&o, &steps, &differences.rows, rows, peak_rss, state);
    println!("freshet's memory after the last batch (`freshet_internal.memory`, MB used / budget): {memory}.");
    if o.batches > 0 {
        let each: Vec<String> = statements
            .iter()
            .map(|(s, t)| format!("{s} {:.3}", t.as_secs_f64() / o.batches as f64))
            .collect();
        println!(
            "freshet's batch by statement (mean s): {}.",
            each.join(", ")
        );
    }
    pg.stop();
    freshet.stop();
    if !differences.scales.is_empty() {
        let names: Vec<&str> = differences.scales.iter().map(String::as_str).collect();
        println!(
            "Equal to PostgreSQL's but for decimal places: {} (PostgreSQL's avg and numeric \
             division choose a scale per value; freshet's numeric has one per column).",
            names.join(", ")
        );
    }
    let values = differences.values;
    if !values.is_empty() {
        anyhow::bail!(
            "{} views differ from PostgreSQL:\n{}",
            values.len(),
            values.join("\n")
        );
    }
    println!("Every view holds PostgreSQL's values after the backfill and after every batch.");
    Ok(())
}

/// Runs `on_freshet` and then `on_postgres`, recording each one's wall time (and freshet's CPU).
async fn timed<T>(
    freshet: &FreshetServer,
    steps: &mut Vec<Step>,
    name: &str,
    on_freshet: impl std::future::Future<Output = Result<T, impl Into<anyhow::Error>>>,
    on_postgres: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<T> {
    let cpu = procstat::cpu_seconds(freshet.pid())?;
    let start = Instant::now();
    let out = on_freshet
        .await
        .map_err(|e| e.into().context(format!("freshet: {name}")))?;
    let freshet_wall = start.elapsed();
    let freshet_cpu = procstat::cpu_seconds(freshet.pid())? - cpu;
    let start = Instant::now();
    on_postgres
        .await
        .map_err(|e| e.context(format!("PostgreSQL: {name}")))?;
    steps.push(Step {
        name: name.to_owned(),
        freshet: freshet_wall,
        freshet_cpu,
        postgres: start.elapsed(),
    });
    Ok(out)
}

/// How the views compared with PostgreSQL's.
#[derive(Default)]
struct Differences {
    /// One line per view whose contents differ.
    values: Vec<String>,
    /// Views equal but for the number of decimal places of some numeric values.
    scales: std::collections::BTreeSet<String>,
    /// Each view's rows at the last comparison.
    rows: std::collections::HashMap<String, usize>,
}

/// Compares every view's contents on the two servers.
async fn compare(
    fc: &Client,
    pc: &Client,
    queries: &[queries::Query],
    when: &str,
    differences: &mut Differences,
) -> anyhow::Result<()> {
    for q in queries {
        let name = q.name();
        let (ours, theirs) = (contents(fc, &name).await?, contents(pc, &name).await?);
        differences.rows.insert(name.clone(), theirs.len());
        if ours != theirs && same_but_scale(&ours, &theirs) {
            differences.scales.insert(name);
        } else if ours != theirs {
            let out = &mut differences.values;
            let extra: Vec<_> = ours
                .iter()
                .filter(|r| !theirs.contains(r))
                .take(2)
                .collect();
            let missing: Vec<_> = theirs
                .iter()
                .filter(|r| !ours.contains(r))
                .take(2)
                .collect();
            out.push(format!(
                "{name} after {when}: {} rows, PostgreSQL {}; ours only {extra:?}; PostgreSQL's only {missing:?}",
                ours.len(),
                theirs.len()
            ));
        }
    }
    Ok(())
}

type Rows = Vec<Vec<Option<String>>>;

/// Whether the rows are equal where each numeric value is rounded to the fewer decimal
/// places of the two.
fn same_but_scale(ours: &Rows, theirs: &Rows) -> bool {
    ours.len() == theirs.len()
        && ours.iter().zip(theirs).all(|(a, b)| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| match (x, y) {
                    (Some(x), Some(y)) if x != y => same_number(x, y),
                    _ => x == y,
                })
        })
}

fn same_number(x: &str, y: &str) -> bool {
    let scale = |s: &str| s.split_once('.').map_or(0, |(_, f)| f.len());
    let (Ok(a), Ok(b)) = (x.parse::<f64>(), y.parse::<f64>()) else {
        return false;
    };
    let unit = 10f64.powi(-(scale(x).min(scale(y)) as i32));
    (a - b).abs() <= unit * 0.5 + a.abs().max(b.abs()) * 1e-15
}

/// A view's rows as text, sorted.
async fn contents(c: &Client, view: &str) -> anyhow::Result<Rows> {
    let mut rows: Rows = c
        .simple_query(&format!("SELECT * FROM {view}"))
        .await?
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect();
    rows.sort();
    Ok(rows)
}

fn report(
    o: &TpchOpts,
    steps: &[Step],
    view_rows: &std::collections::HashMap<String, usize>,
    rows: u64,
    peak_rss: u64,
    state: u64,
) {
    println!(
        "\nTPC-H SF {} ({rows} rows), {} views, memory budget {} MB\n",
        o.sf,
        steps.len().saturating_sub(1 + o.batches),
        o.memory_mb
    );
    println!("| step | freshet s | freshet CPU s | PostgreSQL s | freshet / PostgreSQL | rows |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut views = (Duration::ZERO, 0.0, Duration::ZERO);
    for s in steps {
        let rows = view_rows
            .get(&s.name)
            .map(usize::to_string)
            .unwrap_or_default();
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.2}× | {rows} |",
            s.name,
            s.freshet.as_secs_f64(),
            s.freshet_cpu,
            s.postgres.as_secs_f64(),
            s.freshet.as_secs_f64() / s.postgres.as_secs_f64().max(1e-6)
        );
        if s.name.starts_with('q') {
            views.0 += s.freshet;
            views.1 += s.freshet_cpu;
            views.2 += s.postgres;
        }
    }
    println!(
        "| all views | {:.3} | {:.3} | {:.3} | {:.2}× | |",
        views.0.as_secs_f64(),
        views.1,
        views.2.as_secs_f64(),
        views.0.as_secs_f64() / views.2.as_secs_f64().max(1e-6)
    );
    println!(
        "\nPostgreSQL's batch time includes REFRESH MATERIALIZED VIEW of every view. \
         freshet peak RSS {:.0} MB ({:.2}× its memory budget), state on disk {:.0} MB.",
        peak_rss as f64 / 1e6,
        peak_rss as f64 / (o.memory_mb << 20) as f64,
        state as f64 / 1e6
    );
}

/// `freshet_internal.memory` as `name used/budget` in MB.
async fn memory_parts(fc: &Client) -> anyhow::Result<String> {
    let rows = fc
        .query(
            "SELECT name, used_bytes, budget_bytes FROM freshet_internal.memory",
            &[],
        )
        .await?;
    let mb = |b: i64| format!("{:.0}", b as f64 / (1 << 20) as f64);
    Ok(rows
        .iter()
        .map(|r| {
            let budget: Option<i64> = r.get(2);
            format!(
                "{} {}{}",
                r.get::<_, String>(0),
                mb(r.get(1)),
                budget.map(|b| format!("/{}", mb(b))).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", "))
}
