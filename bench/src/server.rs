//! A freshet server process started (and stopped, by PID) by the bench.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

pub struct FreshetServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Connects to `dsn`, retrying until `deadline`.
pub async fn connect_until(dsn: &str, deadline: Instant) -> anyhow::Result<Client> {
    loop {
        match tokio_postgres::connect(dsn, NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                return Ok(client);
            }
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

impl FreshetServer {
    /// Starts `bin` on a fresh data directory, without fsync (as the PostgreSQL side runs).
    pub async fn start(bin: &Path, block_cache_mb: u64) -> anyhow::Result<FreshetServer> {
        Self::start_with(bin, block_cache_mb, false).await
    }

    /// Starts `bin` on a fresh data directory; `durable`: fsync at commit (`--sync-commits`).
    pub async fn start_with(
        bin: &Path,
        block_cache_mb: u64,
        durable: bool,
    ) -> anyhow::Result<FreshetServer> {
        let dir = tempfile::Builder::new()
            .prefix("freshet-bench-")
            .tempdir()?;
        let port = free_port()?;
        let child = Command::new(bin)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--sync-commits")
            .arg(durable.to_string())
            .arg("--block-cache-mb")
            .arg(block_cache_mb.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", bin.display()))?;
        let server = FreshetServer { child, port, dir };
        drop(server.connect().await?);
        Ok(server)
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        let dsn = format!(
            "host=127.0.0.1 port={} dbname=freshet user=bench",
            self.port
        );
        connect_until(&dsn, Instant::now() + Duration::from_secs(60)).await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server (SIGKILL to our own child) and removes its data.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
