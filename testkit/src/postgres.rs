//! The PostgreSQL oracle and baseline: a throwaway cluster of Debian's binaries in a temporary
//! directory, on a free loopback port, stopped (immediate) when dropped. Run as root, the
//! tools run as the `postgres` user (initdb refuses root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context};

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// fsync and synchronous commit on (PostgreSQL's defaults); off otherwise.
    pub durable: bool,
    /// Authentication of TCP connections (`trust`, `scram-sha-256`, …); local ones are trusted.
    pub host_auth: &'static str,
    /// The `postgres` user's password (needed by password authentication).
    pub password: Option<String>,
    /// More `-c name=value` settings.
    pub settings: Vec<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            durable: false,
            host_auth: "trust",
            password: None,
            settings: Vec::new(),
        }
    }
}

/// A running cluster.
pub struct Postgres {
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

impl Postgres {
    /// initdb and pg_ctl start from `bin` (e.g. `/usr/lib/postgresql/15/bin`).
    pub fn start(bin: &Path, options: &PgOptions) -> anyhow::Result<Postgres> {
        let dir = tempfile::Builder::new()
            .prefix("freshet-pg-")
            .tempdir()
            .context("a temporary directory for PostgreSQL")?;
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { geteuid() } == 0;
        let pg = Postgres {
            port: free_port()?,
            dir,
            bin: bin.to_owned(),
            as_postgres,
        };
        pg.give_to_postgres(pg.dir.path())?;
        let data = pg.dir.path().join("data");
        let mut initdb = pg.command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth-local", "trust", "--auth-host", options.host_auth])
            .args(["--no-sync", "-E", "UTF8", "--locale=C"]);
        if let Some(pw) = &options.password {
            let file = pg.dir.path().join("pw");
            std::fs::write(&file, pw)?;
            pg.give_to_postgres(&file)?;
            initdb.arg(format!("--pwfile={}", file.display()));
        }
        ensure!(initdb.stdout(Stdio::null()).status()?.success(), "initdb failed");
        let durability = if options.durable { "on" } else { "off" };
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={durability} -c synchronous_commit={durability}",
            pg.port,
            pg.dir.path().display()
        );
        for s in &options.settings {
            opts.push_str(" -c ");
            opts.push_str(s);
        }
        let ok = pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-w", "-l"])
            .arg(pg.dir.path().join("log"))
            .arg("-o")
            .arg(opts)
            .arg("start")
            .stdout(Stdio::null())
            .status()?
            .success();
        ensure!(ok, "pg_ctl start failed (log in {})", pg.dir.path().join("log").display());
        Ok(pg)
    }

    /// A command running one of the cluster's tools (as `postgres` when we are root).
    pub fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq connection string for `user` on the `postgres` database.
    pub fn dsn(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname=postgres user={user}",
            self.port
        )
    }

    /// Stops the cluster now (also done when dropped).
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn give_to_postgres(&self, path: &Path) -> anyhow::Result<()> {
        if self.as_postgres {
            let ok = Command::new("chown").arg("postgres").arg(path).status()?.success();
            ensure!(ok, "chown postgres {}", path.display());
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port free now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

extern "C" {
    fn geteuid() -> u32;
}
