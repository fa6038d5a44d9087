//! Running Debian's `pgbench` with a custom script against either server, and reading its
//! figures: transactions per second, per-transaction latency percentiles (from its log),
//! retries, and the server's CPU per transaction (from /proc, for a server we started).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{percentiles, procstat};

/// One pgbench invocation's settings.
pub struct Pgbench<'a> {
    pub pg_bin: &'a Path,
    pub script: &'a str,
    /// `simple` or `prepared`.
    pub mode: &'a str,
    pub seconds: u64,
    /// A `-D name=value` definition for the script.
    pub define: String,
}

/// One pgbench run's figures.
pub struct Run {
    pub tps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub retries: u64,
    pub cpu_per_txn_ms: Option<f64>,
}

impl Pgbench<'_> {
    /// Runs with `clients` against the server on `port` (`user`, `db`); `pid`: the server's
    /// process, whose CPU time is measured.
    pub fn run(
        &self,
        port: u16,
        user: &str,
        db: &str,
        clients: u64,
        pid: Option<u32>,
    ) -> anyhow::Result<Run> {
        let dir = tempfile::Builder::new().prefix("freshet-pgbench-").tempdir()?;
        let script = dir.path().join("script.sql");
        std::fs::write(&script, self.script)?;
        let cpu_before = pid.map(procstat::cpu_seconds).transpose()?;
        let out = Command::new(self.pg_bin.join("pgbench"))
            .args(["-n", "-M", self.mode, "-h", "127.0.0.1"])
            .arg("-p")
            .arg(port.to_string())
            .args(["-U", user])
            .arg("-f")
            .arg(&script)
            .arg("-c")
            .arg(clients.to_string())
            .arg("-j")
            .arg(clients.min(8).to_string())
            .arg("-T")
            .arg(self.seconds.to_string())
            .arg("-D")
            .arg(&self.define)
            .args(["--max-tries", "1000", "-l", "--log-prefix"])
            .arg(dir.path().join("log"))
            .arg(db)
            .current_dir(dir.path())
            .output()?;
        let cpu_after = pid.map(procstat::cpu_seconds).transpose()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success(),
            "pgbench failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |prefix: &str| -> Option<f64> {
            stdout.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(prefix)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            })
        };
        let tps = field("tps = ").ok_or_else(|| anyhow::anyhow!("no tps in: {stdout}"))?;
        let processed = field("number of transactions actually processed: ").unwrap_or(0.0);
        let retries = field("number of transactions retried: ").unwrap_or(0.0) as u64;
        let mut latencies = Vec::new();
        for entry in std::fs::read_dir(dir.path())? {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("log"))
            {
                latencies.extend(log_latencies(&path)?);
            }
        }
        let (p50_ms, p99_ms) = percentiles(latencies);
        Ok(Run {
            tps,
            p50_ms,
            p99_ms,
            retries,
            cpu_per_txn_ms: match (cpu_before, cpu_after) {
                (Some(b), Some(a)) if processed > 0.0 => Some((a - b) * 1000.0 / processed),
                _ => None,
            },
        })
    }
}

/// Per-transaction latencies from a pgbench log: the third field is the time in µs.
fn log_latencies(path: &Path) -> anyhow::Result<Vec<Duration>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .map(Duration::from_micros)
        .collect())
}
