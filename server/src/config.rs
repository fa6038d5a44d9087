//! Command-line and environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// freshet: a streaming SQL database that speaks the PostgreSQL wire protocol.
///
/// Connect with any PostgreSQL client, e.g. `psql -h 127.0.0.1 -p 6543 freshet`.
/// On a loopback address clients are trusted by default; elsewhere they log in with
/// SCRAM-SHA-256 as a role (`--auth`).
#[derive(Debug, Clone, Parser)]
#[command(name = "freshet", version, about, long_about)]
pub struct ServerOpts {
    /// Address to accept PostgreSQL connections on.
    #[arg(long, env = "FRESHET_LISTEN", default_value = "127.0.0.1:6543")]
    pub listen: SocketAddr,

    /// Directory holding the RocksDB store (catalog and table data); created if missing.
    #[arg(long, env = "FRESHET_DATA_DIR", default_value = "./freshet-data")]
    pub data_dir: PathBuf,

    /// Fsync the write-ahead log on every commit. Turning it off keeps data safe across process
    /// crashes but not power loss.
    #[arg(long, env = "FRESHET_SYNC_COMMITS", default_value_t = true, action = clap::ArgAction::Set)]
    pub sync_commits: bool,

    /// Memory for state, in MiB: RocksDB's block cache (data, index and filter blocks) and
    /// memtables, and the operator caches of every view, share it — a quarter for the
    /// operator caches, the rest for the block cache with the memtables charged to it
    /// (`freshet_internal.memory` shows each part). Statements' memory is apart
    /// (`--query-memory-mb`, `--query-memory-total-mb`).
    #[arg(long, env = "FRESHET_MEMORY_MB", default_value_t = 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(16..))]
    pub memory_mb: usize,

    /// Contents logs of aggregate views, in MiB, all views together: epochs log their changed
    /// groups in one sequential entry, written to the groups' own entries once this much is
    /// logged or before a reader needs them. 0 writes every changed group in its epoch. The
    /// logs are kept in memory (a memtable of 1.25 times this) as well as in the write-ahead
    /// log; at startup at most this much is read back.
    #[arg(long, env = "FRESHET_CONTENTS_LOG_MB", default_value_t = 128)]
    pub contents_log_mb: usize,

    /// Let clients pass any librdkafka property through a source's `properties.*` options,
    /// including ones that load code or read files on this machine. Off: only connection,
    /// security and tuning properties are accepted (42501 otherwise).
    #[arg(long, env = "FRESHET_KAFKA_ALLOW_ANY_PROPERTY", default_value_t = false, action = clap::ArgAction::Set)]
    pub kafka_allow_any_property: bool,

    /// A directory whose files sources may name in `properties.*.location` options
    /// (certificates, keys, CA bundles, keytabs). Without it such options are refused.
    #[arg(long, env = "FRESHET_KAFKA_FILES_DIR")]
    pub kafka_files_dir: Option<PathBuf>,

    /// Changed rows one subscriber (SUBSCRIBE) may have waiting to be read; a subscriber that
    /// falls further behind is ended with an error (53400) instead of holding more memory.
    #[arg(long, env = "FRESHET_SUBSCRIBER_QUEUE_ROWS", default_value_t = 262_144)]
    pub subscriber_queue_rows: usize,

    /// How long materialized views keep each epoch's changes, so that a subscriber can resume
    /// `AS OF` an epoch after a disconnect or a restart (`'10m'`, `'1h'`; `0` keeps none).
    /// A view's own `WITH (retain_changes = …)` overrides it.
    #[arg(long, env = "FRESHET_RETAIN_CHANGES", default_value = "0", value_parser = parse_retention)]
    pub retain_changes: std::time::Duration,

    /// Memory one statement may use for sorting, grouping, joining and aggregating, in MiB.
    /// Operators that can spill write to `<data-dir>/spill` past it; others fail with 53200.
    #[arg(long, env = "FRESHET_QUERY_MEMORY_MB", default_value_t = 1024)]
    pub query_memory_mb: usize,

    /// Memory all running statements together may use, in MiB: a statement that would take
    /// more spills where it can, or fails with 53200, while the others go on.
    #[arg(long, env = "FRESHET_QUERY_MEMORY_TOTAL_MB", default_value_t = 4096)]
    pub query_memory_total_mb: usize,

    /// The largest protocol message a client may send, in MiB (a query's text, a Bind's
    /// parameters, a COPY data chunk). A larger one ends the connection with 54000 before
    /// its body is read.
    #[arg(long, env = "FRESHET_MAX_MESSAGE_MB", default_value_t = 64)]
    pub max_message_mb: usize,

    /// Protocol messages of 1 MiB or more being received, all connections together, in MiB.
    /// A client starting one past it is disconnected with 53400.
    #[arg(long, env = "FRESHET_MAX_BUFFERED_MESSAGES_MB", default_value_t = 256)]
    pub max_buffered_messages_mb: usize,

    /// PEM certificate chain for TLS (with `--tls-key`): clients may then connect with
    /// `sslmode=require` / `verify-full`.
    #[arg(long, env = "FRESHET_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "FRESHET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// With TLS configured, refuse connections from other hosts that do not use it (28000).
    #[arg(long, env = "FRESHET_TLS_REQUIRED_REMOTE", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_required_remote: bool,

    /// How clients log in: `trust` (allowed only on a loopback `--listen` address: any client
    /// connects as the role it names) or `scram` (SCRAM-SHA-256 with a role's password).
    /// Default: `trust` on a loopback address, `scram` otherwise.
    #[arg(long, env = "FRESHET_AUTH", value_enum)]
    pub auth: Option<crate::pg::auth::AuthMode>,

    /// The superuser created at first start (when the catalog has no roles).
    #[arg(long, env = "FRESHET_SUPERUSER", default_value = "freshet")]
    pub superuser: String,

    /// The password of `--superuser`, set at first start or while it has none. Prefer the
    /// environment variable: command lines are visible to other users of the machine.
    #[arg(long, env = "FRESHET_SUPERUSER_PASSWORD", hide_env_values = true)]
    pub superuser_password: Option<String>,

    /// Failed logins one client address may make per minute before it is refused (28000)
    /// for the rest of the minute; 0 for no bound.
    #[arg(long, env = "FRESHET_MAX_AUTH_FAILURES", default_value_t = 10)]
    pub max_auth_failures: u32,

    /// Client connections served at once; one more is answered with 53300 and closed.
    #[arg(long, env = "FRESHET_MAX_CONNECTIONS", default_value_t = 100)]
    pub max_connections: usize,

    /// Write the bound address to this file once listening (for tests that use port 0).
    #[arg(long, env = "FRESHET_PORT_FILE")]
    pub port_file: Option<PathBuf>,
}

impl ServerOpts {
    /// Bytes of `--memory-mb` for the operator caches of all views.
    pub fn operator_cache_bytes(&self) -> usize {
        (self.memory_mb << 20) / 4
    }

    /// Bytes of `--memory-mb` RocksDB's block cache and memtables share.
    pub fn rocksdb_cache_bytes(&self) -> usize {
        (self.memory_mb << 20) - self.operator_cache_bytes()
    }

    /// The authentication mode: `--auth`, or what the listen address implies.
    pub fn auth_mode(&self) -> anyhow::Result<crate::pg::auth::AuthMode> {
        use crate::pg::auth::AuthMode;
        let loopback = self.listen.ip().is_loopback();
        match self.auth {
            Some(AuthMode::Trust) if !loopback => anyhow::bail!(
                "--auth trust is allowed only with a loopback --listen address (this one is {})",
                self.listen
            ),
            Some(mode) => Ok(mode),
            None if loopback => Ok(AuthMode::Trust),
            None => Ok(AuthMode::Scram),
        }
    }
}

fn parse_retention(v: &str) -> Result<std::time::Duration, String> {
    freshet_sql::subscribe::parse_duration(v).map_err(|e| e.message)
}
