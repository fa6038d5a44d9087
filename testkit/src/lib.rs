//! Dev-only: the freshet binary started as tests, `freshet-slt` and `freshet-bench` start it —
//! on loopback, on a fresh or given data directory, its port read from the file the server
//! writes once it listens (`--port-file`), so no port is ever guessed. The process is ended
//! by its PID (ours) when dropped. [`postgres`] starts the PostgreSQL cluster the benchmarks
//! compare with.

pub mod postgres;

pub use postgres::{free_port, PgOptions, Postgres};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What to start: the binary, its data directory and extra arguments.
pub struct Launch {
    bin: PathBuf,
    data_dir: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    quiet: bool,
    sync_commits: bool,
}

impl Launch {
    /// `bin` on a fresh temporary data directory, commits not synced, its log on stderr.
    pub fn new(bin: impl AsRef<Path>) -> Launch {
        Launch {
            bin: bin.as_ref().to_path_buf(),
            data_dir: None,
            args: vec![],
            env: vec![],
            quiet: false,
            sync_commits: false,
        }
    }

    /// On this data directory (kept when the server ends) instead of a fresh one.
    pub fn data_dir(mut self, dir: impl AsRef<Path>) -> Launch {
        self.data_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Commits synced to disk (`--sync-commits true`), as a production server runs.
    pub fn sync_commits(mut self, on: bool) -> Launch {
        self.sync_commits = on;
        self
    }

    /// Extra command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Without its log (stderr to /dev/null).
    pub fn quiet(mut self) -> Launch {
        self.quiet = true;
        self
    }

    /// Starts the server and waits until it listens.
    pub fn start(self) -> anyhow::Result<Server> {
        let temp = match self.data_dir {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix("freshet-")
                    .tempdir()
                    .context("a temporary data directory")?,
            ),
        };
        let data_dir = match (&self.data_dir, &temp) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.path().join("data"),
            (None, None) => unreachable!("a temporary directory when none is given"),
        };
        let port_file = data_dir.with_extension("port");
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .arg("--port-file")
            .arg(&port_file)
            .args([
                "--sync-commits",
                if self.sync_commits { "true" } else { "false" },
            ])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(if self.quiet {
                Stdio::null()
            } else {
                Stdio::inherit()
            });
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let mut server = Server {
            child,
            port: 0,
            data_dir,
            _temp: temp,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                server.port = port;
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("{} exited before listening: {status}", self.bin.display());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not start listening within {START_TIMEOUT:?}",
                    self.bin.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running server; killed (by its PID) when dropped.
pub struct Server {
    child: Child,
    port: u16,
    data_dir: PathBuf,
    /// The fresh data directory's parent, removed when the server is dropped.
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A libpq connection string for `user`.
    pub fn dsn(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=freshet",
            self.port
        )
    }

    /// Ends the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
