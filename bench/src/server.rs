//! A freshet server process started (and stopped, by PID) by the bench.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use freshet_testkit::{Launch, Server};

use tokio_postgres::{Client, NoTls};

pub struct FreshetServer {
    server: Server,
    bin: PathBuf,
    memory_mb: u64,
    /// A killed predecessor on the same data directory, kept so that its temporary
    /// directory lives as long as this server.
    _crashed: Option<Box<FreshetServer>>,
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
    pub async fn start(bin: &Path, memory_mb: u64) -> anyhow::Result<FreshetServer> {
        Self::start_with(bin, memory_mb, false).await
    }

    /// Starts `bin` on a fresh data directory; `durable`: fsync at commit (`--sync-commits`).
    pub async fn start_with(
        bin: &Path,
        memory_mb: u64,
        durable: bool,
    ) -> anyhow::Result<FreshetServer> {
        let server = Launch::new(bin)
            .sync_commits(durable)
            .args(["--memory-mb".to_string(), memory_mb.to_string()])
            .quiet()
            .start()?;
        let server = FreshetServer {
            server,
            bin: bin.to_owned(),
            memory_mb,
            _crashed: None,
        };
        drop(server.connect().await?);
        Ok(server)
    }

    /// Kills the server (SIGKILL, as a crash would) and starts it again on its data.
    pub async fn crash_and_restart(mut self) -> anyhow::Result<FreshetServer> {
        self.server.kill();
        let server = Launch::new(&self.bin)
            .data_dir(self.server.data_dir())
            .args([
                "--memory-mb".to_string(),
                self.memory_mb.to_string(),
            ])
            .quiet()
            .start()?;
        let server = FreshetServer {
            server,
            bin: self.bin.clone(),
            memory_mb: self.memory_mb,
            _crashed: Some(Box::new(self)),
        };
        drop(server.connect().await?);
        Ok(server)
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect_until(
            &self.server.dsn("bench"),
            Instant::now() + Duration::from_secs(60),
        )
        .await
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.server.data_dir().to_path_buf()
    }

    /// Stops the server (SIGKILL to our own child) and removes its data.
    pub fn stop(self) {
        drop(self.server);
    }
}
